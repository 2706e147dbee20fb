//! The http side of a WebSocket: the upgrade (accept, refuse), client bytes in, teardown.

use super::*;

impl WsNukleus {
    // ----- http side ----------------------------------------------------------------------

    pub(super) fn on_http_frame(&mut self, input: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let slot = self
            .by_http
            .get(input, id)
            .filter(|&s| self.conns.get(s).is_some_and(|c| c.http_id == id | 1));
        match (f.type_id(), slot, frame::is_reply(id)) {
            (frame::BEGIN, None, false) => {
                self.on_http_begin(input, f);
                // A request without a body (never an accepted upgrade) carries FIN on its
                // BEGIN instead of a separate END.
                if f.flags() & frame::FLAG_FIN != 0 {
                    let slot = self.by_http.get(input, id);
                    if let Some(slot) =
                        slot.filter(|&s| self.conns.get(s).is_some_and(|c| c.http_id == id))
                    {
                        self.on_http_end(slot);
                    }
                }
            }
            (frame::DATA, Some(slot), false) => self.on_http_data(slot, f),
            (frame::END, Some(slot), false) => self.on_http_end(slot),
            (frame::ABORT, Some(slot), false) => {
                self.conns[slot].in_ended = true;
                self.drop_conn(slot, true);
            }
            (frame::RESET, Some(slot), true) => {
                self.conns[slot].reply_ended = true;
                self.drop_conn(slot, false);
            }
            (frame::WINDOW, Some(slot), true) => {
                self.conns[slot]
                    .send
                    .on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            _ => {}
        }
    }

    /// The request stream from http ended: the client closed its side (or sent no body).
    pub(super) fn on_http_end(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.in_ended = true;
        if !c.close_received && !c.closing {
            // The client went away without a close handshake.
            self.abort_app(slot);
        }
        let c = &mut self.conns[slot];
        if !c.closing {
            c.closing = true;
            self.arm(slot);
        }
        self.mark_dirty(slot);
    }

    /// State for an exchange http opened with `begin`, whose header pre-grants our reply window.
    pub(super) fn new_conn(&mut self, input: usize, begin: &Frame<'_>) -> usize {
        let http_id = begin.stream_id();
        let mut send = SendWindow::default();
        send.on_window(begin.acknowledge(), begin.maximum(), 0);
        let slot = self.conns.insert(Conn {
            input,
            http_id,
            recv: RecvWindow::new(self.config.window),
            send,
            session: Session::new(self.config.limits),
            inbuf: Vec::new(),
            out: Vec::new(),
            app: None,
            message_init: false,
            message_kind: MessageKind::Binary,
            message_fin_sent: false,
            in_ended: false,
            reply_ended: false,
            close_sent: false,
            close_received: false,
            pending_close: None,
            closing: false,
            deadline: None,
            accept: None,
            idle_timed: false,
            last_active: self.now,
        });
        self.by_http.insert(input, http_id, slot);
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        slot
    }

    pub(super) fn on_http_begin(&mut self, input: usize, f: Frame<'_>) {
        let http_id = f.stream_id();
        let Some(request) = RequestHead::parse(f.extension()) else {
            tracing::error!(core = self.core, "malformed request head from http");
            let (reset, abort) = (self.header(http_id), self.header(http_id ^ 1));
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&reset, &[]);
            let _ = tx.abort(&abort, &[]);
            return;
        };
        let slot = self.new_conn(input, &f);
        if self.draining {
            return self.reject(slot, 503, "the server is shutting down", false);
        }
        let route = self
            .route(request.path())
            .map(|r| (r.to.clone(), r.key_segment));
        let Some((kind, key_segment)) = route else {
            return self.reject(slot, 404, "no WebSocket route for this path", false);
        };
        let accepted = match negotiate(
            request.method,
            request.minor_version,
            request.headers(),
            &self.config.protocols,
        ) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(core = self.core, error = %e, "WebSocket handshake refused");
                return self.reject(slot, e.status(), e.reason(), e.status() == 426);
            }
        };
        let output = match key_segment.and_then(|segment| path_key(request.path(), segment)) {
            Some(key) => pick_keyed(&self.outputs, &kind, key),
            None => pick_peer(&self.outputs, &kind, self.core, http_id >> 1),
        };
        let Some(output) = output else {
            return self.reject(slot, 503, "WebSocket route target is not running", false);
        };
        self.conns[slot].idle_timed =
            self.config.idle_timeout.is_some() && !self.config.idle_exempt.contains(&kind);
        self.upgrades += 1;
        // The 101 towards http waits for the application to accept (or refuse with an HTTP
        // status, e.g. 401 for a bad token).
        let protocol = accepted.protocol.map(str::to_owned);
        {
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("Upgrade", b"websocket"),
                ("Connection", b"Upgrade"),
                ("Sec-WebSocket-Accept", &accepted.accept),
            ];
            if let Some(p) = &protocol {
                headers.push(("Sec-WebSocket-Protocol", p.as_bytes()));
            }
            let mut head = Vec::new();
            ext::encode_response(&mut head, 101, headers.into_iter());
            self.conns[slot].accept = Some(head);
        }
        // The application stream.
        self.scratch.clear();
        app::encode_begin(&mut self.scratch, protocol.as_deref(), f.extension());
        let id = self.ids.initial(slot, self.generations[slot]);
        let begin = self.header(id);
        let tx = &mut self.outputs[output].tx;
        if tx.begin(&begin, http_id, &self.scratch).is_err() {
            tracing::error!(core = self.core, "stream buffer to the application is full");
            self.conns[slot].close_sent = true;
            self.queue_close(slot, Some(close_code::INTERNAL_ERROR), "server busy");
            self.conns[slot].closing = true;
            self.arm(slot);
            self.mark_dirty(slot);
            return;
        }
        let mut recv = RecvWindow::new(self.config.window);
        let (acknowledge, maximum) = recv.announce();
        let grant = Header {
            acknowledge,
            maximum,
            ..begin
        };
        let _ = tx.window(
            &Header {
                stream_id: id ^ 1,
                ..grant
            },
            0,
        );
        self.conns[slot].app = Some(App {
            output,
            id,
            send: SendWindow::default(),
            recv,
            initial_ended: false,
            reply: Reply::Awaiting,
            message_open: false,
        });
        self.arm(slot); // the application must accept or refuse within the close timeout
        self.mark_dirty(slot); // grants http its window
    }

    /// The application accepted: the 101 goes out, client bytes flow.
    pub(super) fn accept(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        let Some(head) = c.accept.take() else {
            return;
        };
        c.deadline = None;
        let reply = Header::at(c.http_id ^ 1, self.timestamp);
        let _ = self.outputs[c.input].tx.begin(&reply, c.http_id, &head);
        self.start_idle_clock(slot);
        self.mark_dirty(slot);
    }

    /// The application refused before accepting: the client gets an HTTP error response.
    pub(super) fn refuse(&mut self, slot: usize, status: u16, reason: &str) {
        self.abort_app(slot);
        self.conns[slot].accept = None;
        self.reject(slot, status, reason, false);
    }

    /// Answers a refused upgrade with a complete HTTP response and closes the tunnel.
    pub(super) fn reject(&mut self, slot: usize, status: u16, reason: &str, version_hint: bool) {
        let mut headers = vec![("Content-Type".to_string(), "text/plain".to_string())];
        if version_hint {
            headers.push(("Sec-WebSocket-Version".into(), "13".into()));
        }
        if status == 401 {
            // RFC 9110 §11.6.1: a 401 names the scheme (the application refused a credential).
            headers.push(("WWW-Authenticate".into(), "Bearer".into()));
        }
        let mut body = reason.as_bytes().to_vec();
        body.push(b'\n');
        self.reject_with(
            slot,
            &app::RefusalResponse {
                status,
                headers,
                body,
            },
        );
    }

    /// Answers a refused upgrade with `answer` (ws adds `Content-Length`) and closes the
    /// tunnel.
    pub(super) fn reject_with(&mut self, slot: usize, answer: &app::RefusalResponse) {
        self.rejected += 1;
        let c = &mut self.conns[slot];
        c.out.extend_from_slice(&answer.body);
        let mut length = itoa::Buffer::new();
        let length = length.format(c.out.len());
        self.scratch.clear();
        let mut headers: Vec<(&str, &[u8])> = answer
            .headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        headers.push(("Content-Length", length.as_bytes()));
        ext::encode_response(&mut self.scratch, answer.status, headers.into_iter());
        let http_id = c.http_id;
        let input = c.input;
        c.in_ended = true;
        c.close_sent = true;
        c.closing = true;
        let (reply, reset) = (self.header(http_id ^ 1), self.header(http_id));
        let tx = &mut self.outputs[input].tx;
        let _ = tx.begin(&reply, http_id, &self.scratch);
        let _ = tx.reset(&reset, &[]);
        self.arm(slot);
        self.mark_dirty(slot);
    }

    pub(super) fn on_http_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.conns[slot];
        if let Err(e) = c.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, error = %e, "http broke the window: dropping connection");
            self.drop_conn(slot, true);
            return;
        }
        let payload = f.payload();
        c.last_active = self.now;
        c.recv.release(f.reserved() as u64 - payload.len() as u64);
        if c.session.is_done() || c.in_ended {
            c.recv.release(payload.len() as u64);
        } else {
            copy::extend(&mut c.inbuf, payload);
        }
        self.mark_dirty(slot);
    }

    /// Appends a close frame for the client.
    pub(super) fn queue_close(&mut self, slot: usize, code: Option<u16>, reason: &str) {
        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_close(code, reason, &mut frame);
        self.conns[slot].out.extend_from_slice(&frame[..n]);
    }

    /// The server starts the close handshake (application END/ABORT, refused stream).
    pub(super) fn server_close(&mut self, slot: usize, code: u16, reason: &str) {
        let c = &mut self.conns[slot];
        if let Some(echo) = c.pending_close.take() {
            // The client already closed: answer with its code.
            c.close_sent = true;
            c.closing = true;
            self.queue_close(slot, echo, "");
            self.arm(slot);
        } else if !c.close_sent && !c.closing {
            c.close_sent = true;
            self.queue_close(slot, Some(code), reason);
            self.arm(slot); // wait for the client's close
        }
        self.mark_dirty(slot);
    }

    /// Tells the application the connection is gone (ABORT / RESET as needed).
    pub(super) fn abort_app(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(a) = self.conns[slot].app.as_mut() else {
            return;
        };
        let tx = &mut self.outputs[a.output].tx;
        if !a.initial_ended {
            a.initial_ended = true;
            let _ = tx.abort(
                &Header {
                    stream_id: a.id,
                    timestamp,
                    sequence: a.send.sequence,
                    ..Header::default()
                },
                &[],
            );
        }
        if a.reply != Reply::Ended {
            a.reply = Reply::Ended;
            let _ = tx.reset(&Header::at(a.id ^ 1, timestamp), &[]);
        }
    }

    /// Tears a connection down at once (http aborted or reset it, or broke the protocol).
    pub(super) fn drop_conn(&mut self, slot: usize, abort_reply: bool) {
        self.abort_app(slot);
        let c = &self.conns[slot];
        let (input, http_id) = (c.input, c.http_id);
        let (in_ended, reply_ended) = (c.in_ended, c.reply_ended);
        let (reset, abort) = (self.header(http_id), self.header(http_id ^ 1));
        let tx = &mut self.outputs[input].tx;
        if abort_reply && !reply_ended {
            let _ = tx.abort(&abort, &[]);
        }
        if !in_ended {
            let _ = tx.reset(&reset, &[]);
        }
        self.remove(slot);
    }

    pub(super) fn remove(&mut self, slot: usize) {
        let c = self.conns.remove(slot);
        self.by_http.remove(c.input, c.http_id, slot);
    }
}
