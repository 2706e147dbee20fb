//! The life of an exchange on the streams: frames in, BEGIN (which kind of exchange it is),
//! request DATA within the window, END, teardown, and streams a full ring refused.

use super::*;

impl SwitchNukleus {
    pub(super) fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = SlotIds::slot(f.stream_id());
        let reply = frame::is_reply(f.stream_id());
        if f.type_id() == frame::BEGIN && !reply {
            self.on_begin(input, slot, f);
            // A request without a body carries FIN on its BEGIN instead of a separate END.
            let opened =
                matches!(self.exchanges[input].get(slot), Some(Some(x)) if x.id == f.stream_id());
            if f.flags() & frame::FLAG_FIN != 0 && opened {
                self.on_end(input, slot);
            }
            return;
        }
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.id != f.stream_id() | 1 {
            return;
        }
        match (f.type_id(), reply) {
            (frame::WINDOW, true) => {
                x.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark(input, slot);
            }
            (frame::DATA, false) => {
                if let Err(e) = x.recv.on_data(f.reserved()) {
                    tracing::warn!(core = self.core, error = %e, "peer broke the input window");
                    self.teardown(input, slot, true, true);
                    return;
                }
                let padding = (f.reserved() as u64).saturating_sub(f.payload().len() as u64);
                x.recv.release(padding);
                x.held += f.payload().len() as u64;
                self.on_data(input, slot, f);
                self.mark(input, slot);
            }
            (frame::FLUSH, false) if f.extension() == b"ping" => {
                if let Role::Receiver(r) = &x.role {
                    if r.online {
                        let _ = self.engine.handle_relet(&r.node, self.now_ms);
                    }
                }
            }
            (frame::END, false) => self.on_end(input, slot),
            (frame::ABORT, false) => {
                x.request_ended = true;
                self.teardown(input, slot, false, true);
            }
            (frame::RESET, true) => {
                x.reply_ended = true;
                self.teardown(input, slot, true, false);
            }
            _ => {}
        }
    }

    /// Ends an exchange abnormally: RESET our input (if `reset`) and ABORT our reply (if
    /// `abort`) unless already ended; a receiving connection goes offline.
    pub(super) fn teardown(&mut self, input: usize, slot: usize, reset: bool, abort: bool) {
        self.receiver_gone(input, slot);
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        if reset && !x.request_ended {
            let _ = tx.reset(&header(x.id, timestamp), &[]);
        }
        if abort && !x.reply_ended {
            let _ = tx.abort(&header(x.id ^ 1, timestamp), &[]);
        }
        self.exchanges[input][slot] = None;
    }

    /// A full ring refused a frame of stream `id` to output `output`: that exchange is torn
    /// down on both of its streams (the ring defers what does not fit) and counted. A mesh
    /// record refused stays in its outbox and goes out later: nothing is lost there.
    pub(super) fn on_refused(&mut self, output: usize, id: u64) {
        if self.outputs[output].role.is_mesh() {
            return;
        }
        let slot = SlotIds::slot(id);
        match self.exchanges[output].get(slot) {
            Some(Some(x)) if x.id == id | 1 => {}
            _ => return,
        }
        tracing::warn!(core = self.core, peer = %self.outputs[output].peer, "stream buffer full: closing the exchange whose frame it refused");
        self.refused_resets += 1;
        self.teardown(output, slot, true, true);
    }

    /// The exchange's receiving connection is gone: take the node offline (once).
    pub(super) fn receiver_gone(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if let Role::Receiver(r) = &mut x.role {
            self.conns.remove(&r.conn);
            if r.online {
                r.online = false;
                self.engine.handle_connection_closed(r.conn);
            }
        }
    }

    pub(super) fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let ws = self.is_ws[input];
        self.requests += 1;
        let mut x = Exchange {
            id,
            ws,
            recv: RecvWindow::new(self.config.window),
            // http pre-grants the reply window in its BEGIN (ws grants with WINDOW frames).
            send: SendWindow::default(),
            held: 0,
            request_ended: false,
            reply_begun: false,
            reply_ended: false,
            out: VecDeque::new(),
            out_sent: 0,
            out_bytes: 0,
            end_with: None,
            role: Role::Done,
            dirty: false,
            awaiting: VecDeque::new(),
        };
        x.send.on_window(f.acknowledge(), f.maximum(), 0);
        let extension = f.extension();
        let head_bytes = if ws {
            extension
                .split_first()
                .and_then(|(&n, rest)| rest.get(n as usize..))
        } else {
            Some(extension)
        };
        let Some(head) = head_bytes.and_then(RequestHead::parse) else {
            tracing::error!(
                core = self.core,
                "malformed BEGIN extension: refusing stream"
            );
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&header(id, self.timestamp), &[]);
            let _ = tx.abort(&header(id ^ 1, self.timestamp), &[]);
            return;
        };
        self.scratch.clear();
        if ws {
            self.begin_ws(&mut x, &head);
        } else {
            self.begin_http(&mut x, &head);
        }
        let tx = &mut self.outputs[input].tx;
        if !x.reply_begun {
            // REST: the reply begins at END; nothing to send yet.
        } else {
            let _ = tx.begin(&header(id ^ 1, self.timestamp), 0, &self.scratch);
        }
        let (acknowledge, maximum) = x.recv.announce();
        let _ = tx.window(
            &Header {
                stream_id: id,
                timestamp: self.timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            },
            0,
        );
        if let Role::Receiver(r) = &x.role {
            self.conns.insert(r.conn, (input, slot));
        }
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
        self.start_opening_watch(input, slot);
        self.mark(input, slot);
    }

    pub(super) fn on_data(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let max_request = self.config.max_request_bytes;
        let max_message = self.config.max_message_bytes;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let payload = f.payload();
        match &mut x.role {
            Role::Rest(rest) => {
                if !rest.too_large && rest.body.len() + payload.len() > max_request {
                    rest.too_large = true;
                    rest.body = Vec::new();
                }
                if !rest.too_large {
                    copy::extend(&mut rest.body, payload);
                }
                // The body is copied out of the ring: acknowledge it at once.
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Done => {
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Receiver(r) if !r.ws || !r.online => {
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Receiver(r) => {
                if f.flags() & FLAG_INIT != 0 {
                    r.message.clear();
                    r.message_kind = f.extension().first().copied().unwrap_or(WS_TEXT);
                }
                if r.message.len() + payload.len() > max_message {
                    let reason = format!("message larger than {max_message} bytes");
                    x.end_with = Some(close_ext(close_code::TOO_BIG, &reason));
                    r.message = Vec::new();
                    x.recv.release(payload.len() as u64);
                    x.held -= payload.len() as u64;
                    self.receiver_gone(input, slot);
                    return;
                }
                if f.flags() & (FLAG_INIT | FLAG_FIN) == FLAG_INIT | FLAG_FIN {
                    // A message in one frame is read where it lies, in the stream.
                    self.on_message(input, slot, payload);
                    return;
                }
                copy::extend(&mut r.message, payload);
                if f.flags() & FLAG_FIN != 0 {
                    let message = std::mem::take(&mut r.message);
                    self.on_message(input, slot, &message);
                    if let Some(Some(Exchange {
                        role: Role::Receiver(r),
                        ..
                    })) = self.exchanges[input].get_mut(slot)
                    {
                        if r.message.capacity() == 0 {
                            r.message = message;
                            r.message.clear();
                        }
                    }
                }
            }
        }
    }
}
