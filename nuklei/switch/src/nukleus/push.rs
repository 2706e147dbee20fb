//! The push drain at the end of a poll: a node's queued pushes go out on its receiving
//! connection as one WebSocket message or SSE event per window's worth; replies are sent
//! within the window, input acknowledged, the reply ended when done.

use super::*;

impl SwitchNukleus {
    /// End of poll for one exchange: drain pushes into the reply, send within the window,
    /// acknowledge input, end the reply when done.
    pub(super) fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let window = self.config.window;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        x.dirty = false;
        let tx = &mut self.outputs[input].tx;
        let room = tx.max_payload() - 64;
        let ext_kind = [WS_TEXT];
        // A cluster member's batches start with the epoch; none leave once the lease ended.
        let lead = self.gate.push_lead();
        let pushes_allowed = self.pushes_allowed;
        let mut stalled = false;
        loop {
            if x.out.is_empty() && x.reply_begun && !x.reply_ended && x.end_with.is_none() {
                if let Role::Receiver(r) = &x.role {
                    // A batch (at least 1 KiB of pushes, as below) that fits in the window
                    // and in one frame goes straight from the node's queue into the stream.
                    // It is cut to one frame's room: a longer queue leaves as several whole
                    // messages, never through `out` in pieces (which cost a copy here and
                    // a reassembly in the client).
                    let (prefix, suffix): (&[u8], &[u8]) = if r.ws {
                        (b"", b"")
                    } else {
                        (b"data: ", b"\n\n")
                    };
                    let framing = prefix.len() + suffix.len() + lead.len() + 1;
                    let credit = x.send.writable(MAX_BATCH);
                    let batch = (pushes_allowed && r.online && credit > 0)
                        .then(|| {
                            self.engine
                                .batch(r.idx, credit.min(room - framing).max(1024))
                        })
                        .flatten()
                        .filter(|b| b.frame_len() + framing <= credit.min(room));
                    if let Some(batch) = batch {
                        let n = batch.frame_len_with(lead) + prefix.len() + suffix.len();
                        let h = Header {
                            stream_id: x.id ^ 1,
                            timestamp,
                            sequence: x.send.sequence,
                            ..Header::default()
                        };
                        let reserved = x.send.consume(n);
                        let (flags, extension): (u32, &[u8]) = if x.ws {
                            (FLAG_INIT | FLAG_FIN, &ext_kind)
                        } else {
                            (0, &[])
                        };
                        let Ok(dst) = tx.claim_data(&h, flags, reserved, extension, n) else {
                            x.send.sequence -= reserved as u64;
                            stalled = true;
                            break;
                        };
                        let (head, rest) = dst.split_at_mut(prefix.len());
                        let (body, tail) = rest.split_at_mut(batch.frame_len_with(lead));
                        head.copy_from_slice(prefix);
                        batch.write_with(body, lead);
                        tail.copy_from_slice(suffix);
                        let (pushes, bytes) = (batch.pushes, batch.queued_bytes());
                        self.engine.consume(r.idx, pushes, bytes);
                        continue;
                    }
                    // Else (a push larger than the window or a frame): through `out`, in
                    // pieces.
                    let queued = self.engine.queued(r.idx);
                    let credit = x.send.writable(MAX_BATCH);
                    if pushes_allowed && r.online && queued > 0 && credit > 0 {
                        let mut batch = Vec::new();
                        if !r.ws {
                            batch.extend_from_slice(b"data: ");
                        }
                        let open = batch.len();
                        self.engine.drain(r.idx, credit.max(1024), &mut batch);
                        if !lead.is_empty() && batch.get(open) == Some(&b'[') {
                            let mut first = lead.to_vec();
                            first.push(b',');
                            batch.splice(open + 1..open + 1, first);
                        }
                        if !r.ws {
                            batch.extend_from_slice(b"\n\n");
                        }
                        x.out_bytes += batch.len();
                        x.out.push_back(batch);
                    }
                }
            }
            let Some(front) = x.out.front() else { break };
            let left = front.len() - x.out_sent;
            let n = x.send.writable(left.min(room));
            if n == 0 && left > 0 {
                break;
            }
            let mut flags = 0;
            if x.ws {
                if x.out_sent == 0 {
                    flags |= FLAG_INIT;
                }
                if n == left {
                    flags |= FLAG_FIN;
                }
            }
            let h = Header {
                stream_id: x.id ^ 1,
                timestamp,
                sequence: x.send.sequence,
                ..Header::default()
            };
            let reserved = x.send.consume(n);
            let extension: &[u8] = if x.ws { &ext_kind } else { &[] };
            let piece = &front[x.out_sent..x.out_sent + n];
            if tx.data(&h, flags, reserved, extension, piece).is_err() {
                x.send.sequence -= reserved as u64;
                stalled = true;
                break;
            }
            x.out_sent += n;
            if x.out_sent == front.len() {
                x.out_bytes -= front.len();
                x.out.pop_front();
                x.out_sent = 0;
            }
        }
        // Acknowledge input once replies are not piling up (nor calls in flight at other
        // switch instances).
        if x.held > 0 && x.out_bytes < OUT_HIGH_WATER && x.awaiting.len() < MAX_AWAITING {
            x.recv.release(x.held);
            x.held = 0;
        }
        if !x.request_ended && x.recv.window_due() {
            x.recv.maximum = window;
            let (acknowledge, maximum) = x.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: x.id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        if x.out.is_empty() && !x.reply_ended {
            if let Some(extension) = x.end_with.take() {
                // A WebSocket exchange that never began is a refusal: END alone.
                if !x.reply_begun && !x.ws {
                    let _ = tx.begin(&header(x.id ^ 1, timestamp), 0, &[]);
                    x.reply_begun = true;
                }
                let h = Header {
                    stream_id: x.id ^ 1,
                    timestamp,
                    sequence: x.send.sequence,
                    ..Header::default()
                };
                if tx.end(&h, &extension).is_err() {
                    x.end_with = Some(extension);
                    stalled = true;
                } else {
                    x.reply_ended = true;
                }
            }
        }
        if x.reply_ended && x.request_ended {
            self.receiver_gone(input, slot);
            self.exchanges[input][slot] = None;
        } else if stalled {
            // The ring is full: try again next poll.
            x.dirty = true;
            self.dirty.push((input, slot));
        }
    }
}
