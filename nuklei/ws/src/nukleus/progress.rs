//! Per-connection progress at the end of a poll: frames parsed and forwarded, close
//! handshakes, timeouts, bytes to the client within its window, the end of a connection.

use super::*;

impl WsNukleus {
    // ----- per-connection progress --------------------------------------------------------

    /// Decodes buffered client bytes as far as the application's window and the output
    /// buffer allow.
    pub(super) fn process(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.accept.is_some() {
            return; // not accepted yet: client bytes wait
        }
        let mut pos = 0;
        let mut failure = None;
        let mut close = None;
        loop {
            let len = c.inbuf.len();
            if c.session.is_done() || c.closing || c.in_ended {
                pos = len;
                break;
            }
            if c.out.len() >= OUT_HIGH_WATER {
                break;
            }
            let forwarding = c.app.as_ref().is_some_and(|a| !a.initial_ended) && !c.close_sent;
            let avail = len - pos;
            // The application's stream: how much one DATA frame of it carries.
            let app = c
                .app
                .as_ref()
                .filter(|_| forwarding)
                .map(|a| (a, self.outputs[a.output].tx.max_payload() - 64));
            let limit = app.map_or(avail, |(a, room)| a.send.writable(room));
            if avail > 0 && limit == 0 {
                break; // resumed by the application's WINDOW
            }
            // A message in one frame that the application's window and one DATA frame can
            // take whole waits until all of it is here, so that it goes on in one piece (the
            // application then reads it where it lies instead of reassembling it). Bounded
            // by half of each window, so waiting can never stall a window.
            if let (Some(want), Some((a, room))) = (c.session.whole_message_ahead(), app) {
                let want = want as usize;
                if want <= room
                    && want <= a.send.maximum as usize / 2
                    && want <= c.recv.maximum as usize / 2
                    && (avail < want || limit < want)
                {
                    break;
                }
            }
            let end = pos + avail.min(limit);
            let (n, event) = c.session.receive(&mut c.inbuf[pos..end]);
            let ev = match event {
                None => None,
                Some(Event::MessageStart(kind)) => Some(Ev::Start(kind)),
                Some(Event::MessageData(piece)) => Some(Ev::Data(piece.len())),
                Some(Event::MessageEnd) => Some(Ev::End),
                Some(Event::Ping(payload)) => {
                    let mut copy = [0u8; MAX_CONTROL_PAYLOAD];
                    copy[..payload.len()].copy_from_slice(payload);
                    Some(Ev::Ping(copy, payload.len()))
                }
                Some(Event::Pong(_)) => Some(Ev::Pong),
                Some(Event::Close { code, .. }) => Some(Ev::Close(code)),
                Some(Event::Failed(f)) => Some(Ev::Failed(f)),
            };
            pos += n;
            let Some(ev) = ev else {
                if pos >= len {
                    break;
                }
                continue;
            };
            match ev {
                Ev::Start(kind) => {
                    c.message_kind = kind;
                    c.message_init = true;
                    c.message_fin_sent = false;
                }
                Ev::Data(piece) => {
                    let fin = c.session.message_ends_here();
                    if let (Some(a), true) = (c.app.as_mut(), forwarding) {
                        let flags = if c.message_init { FLAG_INIT } else { 0 }
                            | if fin { FLAG_FIN } else { 0 };
                        let h = Header {
                            stream_id: a.id,
                            timestamp,
                            sequence: a.send.sequence,
                            ..Header::default()
                        };
                        let reserved = a.send.consume(piece);
                        let tx = &mut self.outputs[a.output].tx;
                        let ext = app::kind_ext(c.message_kind);
                        if tx
                            .data(&h, flags, reserved, ext, &c.inbuf[pos - piece..pos])
                            .is_err()
                        {
                            a.send.sequence -= reserved as u64;
                            failure = Some(close_code::INTERNAL_ERROR);
                            break;
                        }
                    }
                    c.message_init = false;
                    c.message_fin_sent = fin;
                }
                Ev::End => {
                    if !c.message_fin_sent {
                        if let (Some(a), true) = (c.app.as_mut(), forwarding) {
                            let flags = if c.message_init { FLAG_INIT } else { 0 } | FLAG_FIN;
                            let h = Header {
                                stream_id: a.id,
                                timestamp,
                                sequence: a.send.sequence,
                                ..Header::default()
                            };
                            let reserved = a.send.consume(0);
                            let ext = app::kind_ext(c.message_kind);
                            let _ = self.outputs[a.output]
                                .tx
                                .data(&h, flags, reserved, ext, &[]);
                        }
                    }
                    c.message_init = false;
                    c.message_fin_sent = false;
                }
                Ev::Ping(payload, len) => {
                    if !c.close_sent {
                        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
                        let n = encode_pong(&payload[..len], &mut frame)
                            .expect("pings carry at most 125 bytes");
                        c.out.extend_from_slice(&frame[..n]);
                    }
                    if let (Some(a), true) = (c.app.as_ref(), forwarding) {
                        let h = Header {
                            stream_id: a.id,
                            timestamp,
                            sequence: a.send.sequence,
                            ..Header::default()
                        };
                        let _ = self.outputs[a.output].tx.flush(&h, app::PING);
                    }
                }
                Ev::Pong => {}
                Ev::Close(code) => {
                    close = Some(code);
                    pos = len;
                    break;
                }
                Ev::Failed(f) => {
                    tracing::debug!(core = self.core, failure = %f, "client broke the protocol");
                    self.failures += 1;
                    if !c.close_sent {
                        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
                        let n = encode_close(Some(f.close_code()), f.reason(), &mut frame);
                        c.out.extend_from_slice(&frame[..n]);
                        c.close_sent = true;
                    }
                    failure = Some(0);
                    pos = len;
                    break;
                }
            }
        }
        let c = &mut self.conns[slot];
        c.recv.release(pos as u64);
        c.inbuf.drain(..pos);
        if let Some(code) = failure {
            if code != 0 {
                self.server_close(slot, code, "server error");
            }
            // Fail the connection: drop it once the close frame is out.
            self.abort_app(slot);
            let c = &mut self.conns[slot];
            if !c.closing {
                c.closing = true;
                self.arm(slot);
            }
        } else if let Some(code) = close {
            self.on_client_close(slot, code);
        }
    }

    pub(super) fn on_client_close(&mut self, slot: usize, code: Option<u16>) {
        let timestamp = self.timestamp;
        let c = &mut self.conns[slot];
        c.close_received = true;
        if let Some(a) = c.app.as_mut() {
            if !a.initial_ended {
                a.initial_ended = true;
                let _ = self.outputs[a.output].tx.end(
                    &Header {
                        stream_id: a.id,
                        timestamp,
                        sequence: a.send.sequence,
                        ..Header::default()
                    },
                    &[],
                );
            }
        }
        let app_open = c.app.as_ref().is_some_and(|a| a.reply != Reply::Ended);
        if c.close_sent {
            // The client answered our close: done.
            c.closing = true;
        } else if app_open {
            // Let the application finish what it is sending; its END answers the close.
            c.pending_close = Some(code);
        } else {
            c.close_sent = true;
            c.closing = true;
            self.queue_close(slot, code, "");
        }
        self.arm(slot);
    }

    pub(super) fn on_timeout(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.deadline = None;
        if c.accept.is_some() {
            self.refuse(
                slot,
                503,
                "the application did not accept the connection in time",
            );
        } else if c.pending_close.is_some() {
            // The application did not end its reply in time: answer the close anyway.
            self.server_close(slot, close_code::NORMAL, "");
            self.abort_app(slot);
        } else if c.closing {
            // The client does not take our last bytes: give up on them.
            self.drop_conn(slot, true);
        } else if c.close_sent {
            // No close from the client in time.
            c.closing = true;
            self.arm(slot);
            self.mark_dirty(slot);
        }
    }

    /// End of poll for one connection: write output within http's window, grant windows,
    /// close the tunnel when done.
    pub(super) fn flush(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        if c.accept.is_none() {
            let sent = tx.data_within(&mut c.send, c.http_id ^ 1, timestamp, &c.out);
            c.out.drain(..sent);
        }
        if !c.in_ended && c.recv.window_due() {
            let (acknowledge, maximum) = c.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: c.http_id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        if let Some(a) = c.app.as_mut() {
            if a.reply != Reply::Ended {
                if c.out.len() < OUT_LOW_WATER || c.close_sent {
                    a.recv.release_all();
                }
                if a.recv.window_due() {
                    let (acknowledge, maximum) = a.recv.announce();
                    let _ = self.outputs[a.output].tx.window(
                        &Header {
                            stream_id: a.id ^ 1,
                            timestamp,
                            acknowledge,
                            maximum,
                            ..Header::default()
                        },
                        0,
                    );
                }
            }
        }
        if c.closing && c.out.is_empty() {
            self.finish(slot);
        }
    }

    /// The close handshake is over (or the connection failed) and every byte is out: end
    /// both directions of the tunnel and of the application stream, forget the connection.
    pub(super) fn finish(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let c = &mut self.conns[slot];
        if let Some(a) = c.app.as_mut() {
            let tx = &mut self.outputs[a.output].tx;
            if !a.initial_ended {
                a.initial_ended = true;
                let h = Header {
                    stream_id: a.id,
                    timestamp,
                    sequence: a.send.sequence,
                    ..Header::default()
                };
                let _ = if c.close_received {
                    tx.end(&h, &[])
                } else {
                    tx.abort(&h, &[])
                };
            }
            if a.reply != Reply::Ended {
                a.reply = Reply::Ended;
                let _ = tx.reset(&Header::at(a.id ^ 1, timestamp), &[]);
            }
        }
        let tx = &mut self.outputs[c.input].tx;
        if !c.in_ended {
            c.in_ended = true;
            let _ = tx.reset(&Header::at(c.http_id, timestamp), &[]);
        }
        if !c.reply_ended {
            c.reply_ended = true;
            let _ = tx.end(
                &Header {
                    stream_id: c.http_id ^ 1,
                    timestamp,
                    sequence: c.send.sequence,
                    ..Header::default()
                },
                &[],
            );
        }
        self.remove(slot);
    }

    pub(super) fn expire_timers(&mut self) {
        while let Some(Reverse((at, slot, http_id))) = self.timers.peek().copied() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            let live = self
                .conns
                .get(slot)
                .is_some_and(|c| c.http_id == http_id && c.deadline == Some(at));
            if live {
                self.on_timeout(slot);
                self.mark_dirty(slot);
            }
        }
    }
}
