//! The lines nukleus: a toy protocol behind tcp that sends every line a client writes back to
//! it. The README's worked example of adding a kind ("Adding a protocol nukleus").
//!
//! Each connection is an exchange that the network kind (tcp) opens: its initial stream
//! carries the client's bytes, the reply stream (`id ^ 1`) ours. Client bytes are accepted
//! within the window granted on the initial stream and acknowledged only once their echo was
//! written within the window tcp grants on the reply, so a client that does not read stalls
//! its own writes and memory stays bounded. A line longer than `max_line` bytes ends the
//! connection with an error line. END from the client: the rest is echoed, then END.

use streams::frame::{self, Frame};
use streams::{
    plumbing, split_links, Header, Nukleus, Output, PeerLink, PeerStreams, PollContext, RecvWindow,
    RingReader, SendWindow,
};

#[derive(Debug, Clone)]
pub struct LinesConfig {
    /// Bytes a client may have in flight (the window on its initial stream).
    pub window: u32,
    /// The longest line echoed; a longer one ends the connection.
    pub max_line: usize,
}

impl Default for LinesConfig {
    fn default() -> Self {
        LinesConfig {
            window: 65536,
            max_line: 4096,
        }
    }
}

struct Connection {
    input: usize,
    /// The network's initial stream; ours is `id ^ 1`.
    id: u64,
    recv: RecvWindow,
    send: SendWindow,
    /// Received bytes not echoed yet.
    pending: Vec<u8>,
    input_ended: bool,
    reply_ended: bool,
}

pub struct LinesNukleus {
    config: LinesConfig,
    core: usize,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    connections: Vec<Option<Connection>>,
    by_peer: PeerStreams,
    timestamp: u64,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
}

impl LinesNukleus {
    pub fn new(config: LinesConfig, core: usize, links: Vec<PeerLink>) -> LinesNukleus {
        let (inputs, outputs) = split_links(links);
        LinesNukleus {
            config,
            core,
            by_peer: PeerStreams::new(inputs.len()),
            inputs,
            outputs,
            connections: Vec::new(),
            timestamp: 0,
            refused_resets: 0,
        }
    }

    fn header(&self, stream_id: u64) -> Header {
        Header::at(stream_id, self.timestamp)
    }

    fn slot_of(&self, input: usize, id: u64) -> Option<usize> {
        let slot = self.by_peer.get(input, id)?;
        let c = self.connections.get(slot)?.as_ref()?;
        (c.id == id | 1 && c.input == input).then_some(slot)
    }

    fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let id = f.stream_id();
        if f.type_id() == frame::BEGIN && !frame::is_reply(id) {
            self.open(input, id);
            return;
        }
        let Some(slot) = self.slot_of(input, id) else {
            return;
        };
        match f.type_id() {
            frame::DATA => self.on_data(slot, f),
            frame::END => {
                if let Some(c) = self.connections[slot].as_mut() {
                    c.input_ended = true;
                }
                self.progress(slot);
            }
            frame::WINDOW => {
                if let Some(c) = self.connections[slot].as_mut() {
                    c.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                }
                self.progress(slot);
            }
            // The client went away: ABORT of its stream (we abort our reply) or RESET of
            // ours (we reset its stream).
            frame::ABORT => self.close(slot, true, false),
            frame::RESET => self.close(slot, false, true),
            _ => {}
        }
    }

    fn open(&mut self, input: usize, id: u64) {
        let slot = self
            .connections
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
        self.connections[slot] = Some(Connection {
            input,
            id,
            recv: RecvWindow::new(self.config.window),
            send: SendWindow::default(),
            pending: Vec::new(),
            input_ended: false,
            reply_ended: false,
        });
        self.by_peer.insert(input, id, slot);
        let reply = self.header(id ^ 1);
        let _ = self.outputs[input].tx.begin(&reply, id, &[]);
        self.progress(slot);
    }

    fn on_data(&mut self, slot: usize, f: Frame<'_>) {
        let Some(c) = self.connections[slot].as_mut() else {
            return;
        };
        if c.recv.on_data(f.reserved()).is_err() {
            tracing::error!(core = self.core, "network peer broke the window: closing");
            self.close(slot, true, true);
            return;
        }
        c.recv
            .release(u64::from(f.reserved()) - f.payload().len() as u64);
        c.pending.extend_from_slice(f.payload());
        self.progress(slot);
    }

    /// Echoes what can be echoed, grants the client room for more, ends the reply when done.
    fn progress(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let max_line = self.config.max_line;
        let Some(c) = self.connections[slot].as_mut() else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        // Whole lines go back; at the end of the input, the last partial line too.
        let complete = match c.pending.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None if c.input_ended => c.pending.len(),
            None => 0,
        };
        let too_long = complete == 0 && c.pending.len() > max_line;
        const TOO_LONG: &[u8] = b"error: line too long\n";
        let want = if too_long { TOO_LONG.len() } else { complete };
        let n = match c.send.writable(want) {
            _ if c.reply_ended => 0,
            // The error line goes in one piece or waits for room.
            n if too_long && n < want => 0,
            n => n,
        };
        if n > 0 {
            let header = Header {
                stream_id: c.id ^ 1,
                timestamp,
                sequence: c.send.sequence,
                ..Header::default()
            };
            let reserved = c.send.consume(n);
            let echo = if too_long { TOO_LONG } else { &c.pending[..n] };
            if tx.data(&header, 0, reserved, &[], &echo[..n]).is_ok() && !too_long {
                c.pending.drain(..n);
                c.recv.release(n as u64);
            }
        }
        let done = if too_long {
            n == want
        } else {
            c.input_ended && c.pending.is_empty()
        };
        if done && !c.reply_ended {
            let header = Header {
                stream_id: c.id ^ 1,
                timestamp,
                sequence: c.send.sequence,
                ..Header::default()
            };
            let _ = tx.end(&header, &[]);
            c.reply_ended = true;
            if !c.input_ended {
                // Nothing more is read: tell the network side to stop sending.
                let _ = tx.reset(&Header::at(c.id, timestamp), &[]);
                c.input_ended = true;
            }
        }
        if !c.input_ended && c.recv.window_due() {
            let (acknowledge, maximum) = c.recv.announce();
            let header = Header {
                stream_id: c.id,
                timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            };
            let _ = tx.window(&header, 0);
        }
        if c.reply_ended && c.input_ended {
            self.forget(slot);
        }
    }

    /// Tears an exchange down: ABORT our reply (unless it ended) if `abort_reply`, RESET the
    /// client's stream (unless it ended) if `reset_input`.
    fn close(&mut self, slot: usize, abort_reply: bool, reset_input: bool) {
        let timestamp = self.timestamp;
        let Some(c) = self.connections[slot].as_mut() else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        if abort_reply && !c.reply_ended {
            let _ = tx.abort(&Header::at(c.id ^ 1, timestamp), &[]);
        }
        if reset_input && !c.input_ended {
            let _ = tx.reset(&Header::at(c.id, timestamp), &[]);
        }
        self.forget(slot);
    }

    fn forget(&mut self, slot: usize) {
        if let Some(c) = self.connections[slot].take() {
            self.by_peer.remove(c.input, c.id, slot);
        }
    }
}

impl Nukleus for LinesNukleus {
    fn kind(&self) -> &'static str {
        "lines"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        let mut work = 0;
        let mut inputs = std::mem::take(&mut self.inputs);
        work += plumbing::read_frames(&mut inputs, self.core, |input, f| self.on_frame(input, f));
        self.inputs = inputs;
        for (input, id) in plumbing::refused(&mut self.outputs) {
            // A full ring refused one of the connection's frames: close it on both streams.
            if let Some(slot) = self.slot_of(input, id) {
                self.refused_resets += 1;
                self.close(slot, true, true);
            }
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        let open = self.connections.iter().filter(|c| c.is_some()).count();
        out.push(("connections", open as u64));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }
}
