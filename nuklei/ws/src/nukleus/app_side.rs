//! The application side: the message stream to the kind the route names, and its replies.

use super::*;

impl WsNukleus {
    // ----- application side ---------------------------------------------------------------

    pub(super) fn on_app_frame(&mut self, input: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let slot = SlotIds::slot(id);
        match self.conns.get(slot).and_then(|c| c.app.as_ref()) {
            Some(a) if a.id == id | 1 && a.output == input => {}
            _ => return,
        }
        let reply = frame::is_reply(id);
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("checked above");
        match (f.type_id(), reply) {
            (frame::WINDOW, false) => {
                a.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            (frame::RESET, false) if c.accept.is_some() => {
                a.initial_ended = true;
                self.refuse(slot, 503, "the application refused the connection");
            }
            (frame::RESET, false) => {
                a.initial_ended = true;
                self.server_close(slot, close_code::INTERNAL_ERROR, "application refused");
                self.abort_app(slot);
            }
            (frame::BEGIN, true) if a.reply == Reply::Awaiting => {
                a.reply = Reply::Open;
                self.accept(slot);
            }
            (frame::END, true) if c.accept.is_some() => {
                a.reply = Reply::Ended;
                if let Some(answer) = app::parse_refusal_response(f.extension()) {
                    self.abort_app(slot);
                    self.conns[slot].accept = None;
                    self.reject_with(slot, &answer);
                } else {
                    let (status, reason) = app::parse_refusal(f.extension());
                    let reason = reason.to_owned();
                    self.refuse(slot, status, &reason);
                }
            }
            (frame::ABORT, true) if c.accept.is_some() => {
                a.reply = Reply::Ended;
                self.refuse(slot, 503, "the application aborted the connection");
            }
            (frame::DATA, true) if a.reply != Reply::Ended => self.on_app_data(slot, f),
            (frame::END, true) if a.reply != Reply::Ended => {
                a.reply = Reply::Ended;
                let (code, reason) = app::parse_close_ext(f.extension());
                let reason = reason.to_owned();
                self.server_close(slot, code, &reason);
            }
            (frame::ABORT, true) if a.reply != Reply::Ended => {
                a.reply = Reply::Ended;
                self.server_close(slot, close_code::INTERNAL_ERROR, "application aborted");
                self.abort_app(slot);
            }
            _ => {}
        }
    }

    pub(super) fn on_app_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("caller checked");
        if let Err(e) = a.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, error = %e, "application broke the window");
            self.server_close(slot, close_code::INTERNAL_ERROR, "application error");
            self.abort_app(slot);
            return;
        }
        self.mark_dirty(slot);
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("caller checked");
        if c.close_sent || c.closing {
            a.recv.release(f.reserved() as u64);
            return;
        }
        c.last_active = self.now;
        let flags = f.flags();
        let payload = f.payload();
        let opcode = if flags & FLAG_INIT != 0 || !a.message_open {
            if a.message_open {
                tracing::error!(
                    core = self.core,
                    "application started a message inside another"
                );
                self.server_close(slot, close_code::INTERNAL_ERROR, "application error");
                self.abort_app(slot);
                return;
            }
            match app::parse_kind(f.extension()) {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            }
        } else {
            OpCode::Continuation
        };
        let fin = flags & FLAG_FIN != 0;
        a.message_open = !fin;
        let mut head = [0u8; MAX_SERVER_HEADER_LEN];
        let n = encode_header(fin, opcode, payload.len() as u64, &mut head);
        // Nothing queued before it, and http's window and one frame take it whole: the frame
        // goes straight into http's stream instead of through `out`.
        let total = n + payload.len();
        let tx = &mut self.outputs[c.input].tx;
        if c.out.is_empty()
            && total <= tx.max_payload() - frame::DATA_EXTENSION_OFFSET
            && c.send.writable(total) == total
        {
            let h = Header {
                stream_id: c.http_id ^ 1,
                timestamp: self.timestamp,
                sequence: c.send.sequence,
                ..Header::default()
            };
            let reserved = c.send.consume(total);
            if let Ok(dst) = tx.claim_data(&h, 0, reserved, &[], total) {
                dst[..n].copy_from_slice(&head[..n]);
                copy::copy(&mut dst[n..], payload);
                return;
            }
            c.send.sequence -= reserved as u64;
        }
        c.out.extend_from_slice(&head[..n]);
        copy::extend(&mut c.out, payload);
    }
}
