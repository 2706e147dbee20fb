//! The application side of the http nukleus: every request is an exchange with the application
//! its route names — a BEGIN carrying the request head, DATA for the body, END — answered on
//! the reply stream with the response head, DATA and END, which the connection's `h1` state
//! machine writes in request order.

use streams::frame::{self, Frame};
use streams::{pick_keyed, pick_peer, Header, RecvWindow, SendWindow, SlotIds};

use crate::h1::Sent;
use crate::request::{Body, Parsed, Rejection};
use crate::{ext, Exchange, HttpNukleus};

impl HttpNukleus {
    /// A request head was read on connection `slot`: open its exchange with the application
    /// its route names, or answer it here (404, 503). Its BEGIN extension is in `scratch`,
    /// or the request cache's when `repeat` (`Read::Repeat`).
    ///
    /// A repeated head is often one of a pipelined burst of the same request: the heads right
    /// after it in `rest` that repeat it too are opened here as well, each as its own exchange
    /// with the same route, application and extension, without reading each again through
    /// `h1::Connection::read_cached` — as long as that would read them (the connection reads
    /// on: a plain request, no body, no upgrade, no close; below `max_pipelined`). Returns the
    /// bytes of `rest` taken that way.
    pub(crate) fn start_exchange(
        &mut self,
        slot: usize,
        parsed: Parsed,
        key: Option<u64>,
        repeat: bool,
        rest: &[u8],
    ) -> usize {
        self.requests += 1;
        let Some(route) = parsed.route else {
            self.reject(
                slot,
                Rejection {
                    status: 404,
                    reason: "no route for this path",
                },
            );
            return 0;
        };
        let c = &mut self.connections[slot];
        let net_id = c.net_id;
        let kind = self.config.routes[route].to.as_str();
        let app = match key {
            Some(key) => pick_keyed(&self.outputs, kind, key),
            None => self.local_targets[route]
                .or_else(|| pick_peer(&self.outputs, kind, self.core, net_id >> 1)),
        };
        let Some(app) = app else {
            self.reject(
                slot,
                Rejection {
                    status: 503,
                    reason: "route target is not running",
                },
            );
            return 0;
        };
        let has_body = !matches!(parsed.body, Body::None);
        // Only a bodiless request to a kind that can switch protocols (a peer that relays a
        // protocol of its own, as ws does: its role says so) may become a tunnel;
        // any other request with `Upgrade` is an ordinary one (the header is passed on).
        let upgrade = parsed.upgrade && !has_body && self.outputs[app].role.relays;
        // While draining, every response closes its connection.
        let close = parsed.close || self.draining;
        let tx = &mut self.outputs[app].tx;
        let identity = &c.identity;
        let cache = self.request_heads.as_ref().filter(|_| repeat);
        let cached = cache.map(|cache| cache.extension());
        if !identity.is_empty() {
            if let Some(cached) = cached {
                self.scratch.clear();
                self.scratch.extend_from_slice(cached);
            }
            ext::append_request_headers(
                &mut self.scratch,
                identity.iter().map(|(n, v)| (*n, v.as_bytes())),
            );
        }
        let extension = match cached {
            Some(cached) if identity.is_empty() => cached,
            _ => &self.scratch[..],
        };
        // An upgrade's request stream stays open: after a 101 it carries the tunnel.
        let no_body = !has_body && !upgrade;
        let flags = if no_body { frame::FLAG_FIN } else { 0 };
        // Repeats of a plain request leave the connection reading heads: they may follow.
        let follow = cache.filter(|_| no_body && !close);
        let max_pipelined = self.config.limits.max_pipelined;
        let mut used = 0;
        // How many of the heads in `rest` repeat this one (at most as many as may be read),
        // found for the burst at once; each is this head, so its `Parsed` is this one's.
        let mut repeats = follow.map_or(0, |cache| {
            let room = max_pipelined.saturating_sub(c.h1.in_flight() + 1);
            cache.repeats(rest, room)
        });
        let refused = loop {
            // The first response in line gets a whole window; pipelined ones behind it a share
            // of max_buffered_bytes, so responses a client does not read stay bounded.
            let window = if c.h1.in_flight() == 0 {
                self.config.window
            } else {
                self.pipelined_window
            };
            // The exchange's slot and stream id; it is stored once its BEGIN is written.
            let (x, generation) = self.exchanges.open();
            let id = self.ids.initial(x, generation);
            let mut recv = RecvWindow::new(window);
            // The BEGIN pre-grants the reply window (its `maximum`), so the application can
            // answer at once, and a request without a body says so with FIN instead of a
            // separate END.
            let (acknowledge, maximum) = recv.announce();
            let begin = Header {
                acknowledge,
                maximum,
                ..Header::at(id, self.timestamp)
            };
            if tx.begin_flags(&begin, flags, net_id, extension).is_err() {
                break true;
            }
            let inserted = self.exchanges.insert(Exchange {
                conn: slot,
                id,
                app,
                send: SendWindow::default(),
                recv,
            });
            debug_assert_eq!(inserted, x, "an insert fills the slot open named");
            c.h1.open(x, &parsed, upgrade, close);
            // What `read_cached` would read next, if the connection reads on: the next
            // repeat, while below `max_pipelined` (counted in `repeats`).
            if repeats == 0 {
                break false;
            }
            repeats -= 1;
            used += parsed.consumed;
            self.requests += 1;
        };
        if refused {
            // The request never reached the application: answer it here (counted like a
            // reset; see `on_refused`).
            self.refused_resets += 1;
            self.reject(
                slot,
                Rejection {
                    status: 503,
                    reason: "server busy: stream buffer full",
                },
            );
        }
        used
    }

    /// A request body turned out bad halfway: abort the request towards the application and
    /// answer the error if the response has not started, else drop the connection.
    pub(crate) fn body_failed(&mut self, x: usize, conn: usize, rejection: Rejection) {
        let unstarted = self.connections[conn].h1.fail_body(x);
        let e = self.exchanges.remove(x);
        let (abort, reset) = (self.header(e.id), self.header(e.id ^ 1));
        let _ = self.outputs[e.app].tx.abort(&abort, &[]);
        let _ = self.outputs[e.app].tx.reset(&reset, &[]);
        if unstarted {
            self.reject(conn, rejection);
        } else {
            self.abort_connection(conn, true);
        }
    }

    /// Answers an error from http itself after the responses already queued, then closes.
    pub(crate) fn reject(&mut self, slot: usize, rejection: Rejection) {
        self.rejected += 1;
        tracing::debug!(
            core = self.core,
            remote = %self.connections[slot].remote,
            status = rejection.status,
            reason = rejection.reason,
            "request rejected"
        );
        let exchanges = &mut self.exchanges;
        self.connections[slot]
            .h1
            .reject(rejection, self.date.value(), self.now, |x| {
                exchanges.discard(x);
            });
        self.mark_dirty(slot);
    }

    /// Ends the request stream of exchange `x` towards its application: END, or ABORT when
    /// the request is incomplete.
    pub(crate) fn end_request(&mut self, x: usize, abort: bool) {
        let e = &mut self.exchanges[x];
        let h = Header {
            stream_id: e.id,
            timestamp: self.timestamp,
            sequence: e.send.sequence,
            ..Header::default()
        };
        let tx = &mut self.outputs[e.app].tx;
        let _ = if abort {
            tx.abort(&h, &[])
        } else {
            tx.end(&h, &[])
        };
    }

    pub(crate) fn on_app_frame(&mut self, input: usize, f: Frame<'_>) {
        let x = SlotIds::slot(f.stream_id());
        match self.exchanges.get(x) {
            Some(e) if e.id == f.stream_id() | 1 && e.app == input => {}
            _ => return,
        }
        let reply = frame::is_reply(f.stream_id());
        match (f.type_id(), reply) {
            (frame::WINDOW, false) => {
                let e = &mut self.exchanges[x];
                e.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                let conn = e.conn;
                if self.connections[conn].h1.receiving() == Some(x) {
                    self.resume(conn);
                    if self.connections.contains(conn) {
                        self.mark_dirty(conn);
                    }
                }
            }
            (frame::RESET, false) => {
                // The application wants no (more) request body.
                let conn = self.exchanges[x].conn;
                let exchanges = &mut self.exchanges;
                self.connections[conn].h1.request_refused(x, self.now, |x| {
                    exchanges.discard(x);
                });
                self.mark_dirty(conn);
            }
            (frame::BEGIN, true) => {
                self.on_response_begin(x, f);
                if f.flags() & frame::FLAG_FIN != 0 && self.in_flight(x, f.stream_id()) {
                    self.on_response_end(x);
                }
            }
            // FIN on the response's BEGIN or DATA ends it without a separate END; a DATA
            // flagged OPEN is the response's BEGIN (its head in the extension) and first
            // DATA in one record.
            (frame::DATA, true) => {
                const WHOLE: u32 = frame::FLAG_OPEN | frame::FLAG_FIN;
                if f.flags() & WHOLE == WHOLE && self.on_response_whole(x, f) {
                    return;
                }
                if f.flags() & frame::FLAG_OPEN != 0 {
                    self.on_response_begin(x, f);
                    if !self.in_flight(x, f.stream_id()) {
                        return;
                    }
                }
                self.on_response_data(x, f);
                if f.flags() & frame::FLAG_FIN != 0 && self.in_flight(x, f.stream_id()) {
                    self.on_response_end(x);
                }
            }
            (frame::END, true) => self.on_response_end(x),
            (frame::ABORT, true) => {
                let conn = self.exchanges[x].conn;
                if self.connections[conn].h1.response_unstarted(x) {
                    self.fail_response(conn, x, "the application aborted the response");
                } else {
                    self.abort_connection(conn, true);
                }
            }
            _ => {}
        }
    }

    /// Exchange `x` is still the one of stream `stream_id`.
    fn in_flight(&self, x: usize, stream_id: u64) -> bool {
        self.exchanges.get(x).is_some_and(|e| e.id == stream_id | 1)
    }

    /// The application failed exchange `x` before its response started: the client gets a
    /// 500 with `reason` in its place.
    fn fail_response(&mut self, conn: usize, x: usize, reason: &'static str) {
        let request_open = self.connections[conn].h1.forget(x);
        let e = self.exchanges.remove(x);
        if request_open {
            let _ = self.outputs[e.app]
                .tx
                .abort(&Header::at(e.id, self.timestamp), &[]);
        }
        self.reject(
            conn,
            Rejection {
                status: 500,
                reason,
            },
        );
    }

    fn on_response_begin(&mut self, x: usize, f: Frame<'_>) {
        let conn = self.exchanges[x].conn;
        let c = &mut self.connections[conn];
        let begun =
            c.h1.response_head(x, f.extension(), &mut self.heads, self.date.value());
        let begun = match begun {
            Ok(begun) => begun,
            Err(reason) => {
                tracing::error!(
                    core = self.core,
                    remote = %c.remote,
                    reason,
                    "bad response head from application"
                );
                if c.h1.response_unstarted(x) {
                    self.fail_response(conn, x, reason);
                } else {
                    self.abort_connection(conn, true);
                }
                return;
            }
        };
        if begun.end_request {
            self.end_request(x, false);
        }
        if begun.tunnel && !self.connections[conn].h1.input.is_empty() {
            // Switched: the bytes held since the request are the tunnel's first.
            self.resume(conn);
        }
        if self.connections.contains(conn) {
            self.mark_dirty(conn);
        }
    }

    /// A response whole in one record (DATA flagged OPEN and FIN) in the plain case (see
    /// `h1::Connection::response_whole`): written in one step. Returns false, having changed
    /// nothing, otherwise; a window violation is left to `on_response_data` to report.
    fn on_response_whole(&mut self, x: usize, f: Frame<'_>) -> bool {
        let e = &self.exchanges[x];
        // The exchange is retired with the response: its window needs no update, only the
        // check.
        let mut recv = e.recv;
        if recv.on_data(f.reserved()).is_err() {
            return false;
        }
        let conn = e.conn;
        let exchanges = &mut self.exchanges;
        let whole = self.connections[conn].h1.response_whole(
            x,
            f.extension(),
            f.payload(),
            &self.heads,
            self.now,
            |x| {
                exchanges.discard(x);
            },
        );
        if whole {
            self.mark_dirty(conn);
        }
        whole
    }

    fn on_response_data(&mut self, x: usize, f: Frame<'_>) {
        let e = &mut self.exchanges[x];
        let conn = e.conn;
        if let Err(err) = e.recv.on_data(f.reserved()) {
            let remote = self.connections[conn].remote;
            tracing::error!(core = self.core, %remote, error = %err, "application broke the response window");
            self.abort_connection(conn, true);
            return;
        }
        let payload = f.payload();
        let c = &mut self.connections[conn];
        match c.h1.response_data(x, payload) {
            Err(error) => {
                let remote = c.remote;
                tracing::error!(core = self.core, %remote, %error, "application broke the exchange");
                self.abort_connection(conn, true);
                return;
            }
            Ok(Sent::Direct(n)) => {
                // The first response's bytes go to the network as they are: straight into
                // the stream as far as the window takes them when nothing is queued before.
                let sent = if c.h1.out.is_empty() {
                    let tx = &mut self.outputs[c.input].tx;
                    tx.data_within(&mut c.send, c.net_id ^ 1, self.timestamp, &payload[..n])
                } else {
                    0
                };
                streams::copy::extend(&mut c.h1.out, &payload[sent..n]);
            }
            Ok(Sent::Framed) => {}
        }
        e.recv.release(f.reserved() as u64);
        self.mark_dirty(conn);
    }

    fn on_response_end(&mut self, x: usize) {
        let conn = self.exchanges[x].conn;
        let exchanges = &mut self.exchanges;
        self.connections[conn].h1.response_end(x, self.now, |x| {
            exchanges.discard(x);
        });
        self.mark_dirty(conn);
    }
}
