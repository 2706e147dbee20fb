//! The network side of the http nukleus: each connection is a stream from tcp or tls. Request
//! bytes go through the connection's `h1` state machine; what it reads becomes exchanges
//! (`application.rs`), what it writes leaves as DATA within the network's window.

use streams::copy;
use streams::frame::{self, Frame};
use streams::{Header, RecvWindow, Remote, SendWindow};

use crate::h1::{self, Expiry, InputEnd, Read};
use crate::request::Rejection;
use crate::{tls_begin_ex, Connection, HttpNukleus, KEEP};

impl HttpNukleus {
    pub(crate) fn on_network_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = match self.by_network.get(input, f.stream_id()) {
            Some(slot)
                if self
                    .connections
                    .get(slot)
                    .is_some_and(|c| c.net_id == f.stream_id() | 1) =>
            {
                Some(slot)
            }
            _ => None,
        };
        match (f.type_id(), slot) {
            (frame::BEGIN, None) if f.stream_id() & 1 == 1 => {
                self.on_network_begin(input, f.stream_id(), f.extension())
            }
            (frame::DATA, Some(slot)) => self.on_network_data(slot, f),
            (frame::END, Some(slot)) => self.on_network_end(slot),
            (frame::ABORT, Some(slot)) | (frame::RESET, Some(slot)) => {
                self.abort_connection(slot, f.type_id() == frame::ABORT)
            }
            (frame::WINDOW, Some(slot)) => {
                self.connections[slot]
                    .send
                    .on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            _ => {}
        }
    }

    fn on_network_begin(&mut self, input: usize, net_id: u64, extension: &[u8]) {
        // A client cannot send these names: httparse rejects a header name with ':'.
        let mut identity = Vec::new();
        let remote = if self.outputs[input].role.carries == streams::Carries::SecureConnection {
            let tls = tls_begin_ex::decode_begin_ex(extension);
            let remote = tls.as_ref().and_then(|ex| ex.remote);
            if let Some(client) = tls.and_then(|ex| ex.client) {
                identity.push((":tls-client-cn", client.common_name));
                identity.extend(client.sans.into_iter().map(|san| (":tls-client-san", san)));
            }
            remote
        } else {
            nukleus_tcp::decode_begin_ex(extension).map(|ex| ex.remote)
        };
        let slot = self.connections.insert(Connection {
            net_id,
            input,
            recv: RecvWindow::new(self.config.window),
            send: SendWindow::default(),
            h1: h1::Connection::new(self.now),
            input_ended: false,
            reply_ended: false,
            identity,
            remote: Remote(remote),
        });
        self.by_network.insert(input, net_id, slot);
        let reply = self.header(net_id ^ 1);
        let _ = self.outputs[input].tx.begin(&reply, net_id, &[]);
        self.mark_dirty(slot); // sends the initial WINDOW
    }

    fn on_network_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.connections[slot];
        if let Err(e) = c.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, remote = %c.remote, error = %e, "network peer broke the window: aborting connection");
            self.abort_connection(slot, true);
            return;
        }
        let payload = f.payload();
        c.recv.release(f.reserved() as u64 - payload.len() as u64);
        c.h1.arrived(self.now);
        if c.h1.input.is_empty() {
            // Common case: read straight from the ring, copy only an incomplete tail.
            let used = self.process(slot, payload);
            let c = &mut self.connections[slot];
            c.recv.release(used as u64);
            if used < payload.len() && !c.h1.input_discarded() {
                copy::extend(&mut c.h1.input, &payload[used..]);
            } else if used < payload.len() {
                c.recv.release((payload.len() - used) as u64);
            }
        } else {
            copy::extend(&mut c.h1.input, payload);
            self.resume(slot);
        }
        if let Some(c) = self.connections.get_mut(slot) {
            c.h1.track_head(self.now);
            self.mark_dirty(slot);
        }
    }

    /// Reads held input again (after new bytes or new credit).
    pub(crate) fn resume(&mut self, slot: usize) {
        let buffer = std::mem::take(&mut self.connections[slot].h1.input);
        let used = self.process(slot, &buffer);
        let mut buffer = buffer;
        buffer.drain(..used);
        if let Some(c) = self.connections.get_mut(slot) {
            c.recv.release(used as u64);
            if c.h1.input_discarded() {
                c.recv.release(buffer.len() as u64);
                buffer.clear();
            }
            streams::memory::release_drained(&mut buffer, KEEP);
            c.h1.input = buffer;
        }
    }

    /// Reads heads and forwards bodies from `bytes`; returns how many bytes were used.
    fn process(&mut self, slot: usize, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let Some(c) = self.connections.get_mut(slot) else {
                return bytes.len();
            };
            let budget = match c.h1.receiving() {
                Some(x) => {
                    let e = &self.exchanges[x];
                    e.send.writable(self.outputs[e.app].tx.max_payload() - 64)
                }
                None => 0,
            };
            let routes = &self.config.routes;
            let key = std::cell::Cell::new(None);
            let route = |path: &str| {
                let route = streams::plumbing::longest_prefix(routes, path);
                key.set(
                    route
                        .and_then(|r| routes[r].key_segment)
                        .and_then(|segment| streams::path_key(path, segment)),
                );
                route
            };
            let read = c.h1.read_cached(
                &bytes[at..],
                budget,
                &self.config.limits,
                route,
                &mut self.scratch,
                self.request_heads.as_mut(),
            );
            match read {
                Read::Wait => return at,
                Read::Discard => return bytes.len(), // nothing after a final request is read
                Read::Head(parsed) => {
                    at += parsed.consumed;
                    self.start_exchange(slot, parsed, key.get(), false, &[]);
                }
                Read::Repeat(parsed) => {
                    at += parsed.consumed;
                    at += self.start_exchange(slot, parsed, key.get(), true, &bytes[at..]);
                }
                Read::Body {
                    tag,
                    used,
                    data,
                    finished,
                } => {
                    let e = &mut self.exchanges[tag];
                    let tx = &mut self.outputs[e.app].tx;
                    if !data.is_empty() {
                        let h = Header {
                            sequence: e.send.sequence,
                            ..Header::at(e.id, self.timestamp)
                        };
                        let reserved = e.send.consume(data.len());
                        let _ = tx.data(&h, 0, reserved, &[], data);
                    }
                    if finished {
                        let h = Header {
                            sequence: e.send.sequence,
                            ..Header::at(e.id, self.timestamp)
                        };
                        let _ = tx.end(&h, &[]);
                        // A response that completed before its request did leaves the line
                        // now, letting the ones behind it out.
                        self.retire(slot);
                    }
                    at += used;
                    // One DATA frame carries at most a record: forward the rest in more.
                    let more = used > 0 && at < bytes.len();
                    if !finished && !more {
                        return at; // needs more input or more credit
                    }
                }
                Read::BadHead(rejection) => {
                    self.reject(slot, rejection);
                    return bytes.len();
                }
                Read::BadBody(x, rejection) => {
                    self.body_failed(x, slot, rejection);
                    return bytes.len();
                }
            }
        }
    }

    pub(crate) fn on_network_end(&mut self, slot: usize) {
        let c = &mut self.connections[slot];
        c.input_ended = true;
        match c.h1.end_input() {
            InputEnd::Abort => {
                // The application is told (its reply reset) and the connection closed.
                self.abort_connection(slot, true);
                return;
            }
            InputEnd::EndRequest { tag, incomplete } => self.end_request(tag, incomplete),
            InputEnd::Idle => {}
        }
        // An exchange whose response was already complete waited only for its request.
        self.retire(slot);
        self.mark_dirty(slot);
    }

    /// Retires the finished exchanges at the front of connection `slot`'s queue.
    pub(crate) fn retire(&mut self, slot: usize) {
        let exchanges = &mut self.exchanges;
        self.connections[slot].h1.retire(self.now, |x| {
            exchanges.discard(x);
        });
    }

    /// Tears down a connection and every exchange on it. `notify_network`: also ABORT our
    /// reply towards the network (not needed when the network reset it).
    pub(crate) fn abort_connection(&mut self, slot: usize, notify_network: bool) {
        let Some(c) = self.connections.try_remove(slot) else {
            return;
        };
        let timestamp = self.timestamp;
        for t in c.h1.transactions() {
            let Some(x) = t.tag() else { continue };
            let e = self.exchanges.remove(x);
            let tx = &mut self.outputs[e.app].tx;
            if !t.request_ended() {
                let _ = tx.abort(&Header::at(e.id, timestamp), &[]);
            }
            if t.writing() != h1::Writing::Done {
                let _ = tx.reset(&Header::at(e.id ^ 1, timestamp), &[]);
            }
        }
        let tx = &mut self.outputs[c.input].tx;
        if notify_network && !c.reply_ended {
            let _ = tx.abort(&Header::at(c.net_id ^ 1, timestamp), &[]);
        }
        if !c.input_ended {
            let _ = tx.reset(&Header::at(c.net_id, timestamp), &[]);
        }
        self.by_network.remove(c.input, c.net_id, slot);
    }

    /// End of poll for one connection: send response bytes within credit, grant windows,
    /// end the reply once a closing connection has nothing left to say.
    pub(crate) fn flush(&mut self, slot: usize) {
        let Some(c) = self.connections.get(slot) else {
            return;
        };
        // Requests held back by the pipelining limit proceed once earlier ones completed.
        if c.h1.may_read(&self.config.limits) {
            self.resume(slot);
        }
        let timestamp = self.timestamp;
        let window = self.config.window;
        let Some(c) = self.connections.get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        let out = &mut c.h1.out;
        let sent = tx.data_within(&mut c.send, c.net_id ^ 1, timestamp, out);
        out.drain(..sent);
        streams::memory::release_drained(out, KEEP);
        if c.recv.window_due() && !c.input_ended {
            let (acknowledge, maximum) = c.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: c.net_id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        // Keep the first response in line flowing while the connection keeps up.
        if let Some(x) = c.h1.front_streaming() {
            let e = &mut self.exchanges[x];
            if e.recv.window_due()
                && c.h1.out.len() + window as usize <= self.config.max_buffered_bytes
            {
                e.recv.maximum = window;
                let (acknowledge, maximum) = e.recv.announce();
                let _ = self.outputs[e.app].tx.window(
                    &Header {
                        stream_id: e.id ^ 1,
                        timestamp,
                        acknowledge,
                        maximum,
                        ..Header::default()
                    },
                    0,
                );
            }
        }
        let c = &mut self.connections[slot];
        if c.h1.finished() && !c.reply_ended {
            let tx = &mut self.outputs[c.input].tx;
            let _ = tx.end(
                &Header {
                    stream_id: c.net_id ^ 1,
                    timestamp,
                    sequence: c.send.sequence,
                    ..Header::default()
                },
                &[],
            );
            c.reply_ended = true;
            if !c.input_ended {
                // Nothing more will be read: tell the network side to stop sending.
                let _ = tx.reset(&Header::at(c.net_id, timestamp), &[]);
                c.input_ended = true;
            }
        }
        let c = &self.connections[slot];
        if c.reply_ended && c.input_ended && c.h1.in_flight() == 0 {
            let c = self.connections.remove(slot);
            self.by_network.remove(c.input, c.net_id, slot);
        }
    }

    /// Closes connections idle beyond `idle_timeout` and answers 408 to request heads not
    /// completed within `request_timeout`. Runs about once a second: O(connections).
    pub(crate) fn expire_idle(&mut self) {
        let (now, idle, request) = (
            self.now,
            self.config.idle_timeout,
            self.config.request_timeout,
        );
        let late: Vec<(usize, Expiry)> = self
            .connections
            .iter()
            .filter_map(|(slot, c)| c.h1.expiry(now, idle, request).map(|due| (slot, due)))
            .collect();
        for (slot, due) in late {
            match due {
                Expiry::SlowHead => self.reject(
                    slot,
                    Rejection {
                        status: 408,
                        reason: "request head not completed in time",
                    },
                ),
                Expiry::Idle => {
                    self.connections[slot].h1.close();
                    self.mark_dirty(slot);
                }
            }
        }
    }
}
