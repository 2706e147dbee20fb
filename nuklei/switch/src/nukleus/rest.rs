//! API calls: REST requests from http and request messages on a WebSocket, routed to the
//! engine (locally or over the mesh) and answered when done.

use super::*;

pub(super) fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

impl SwitchNukleus {
    pub(super) fn begin_http(&mut self, x: &mut Exchange, head: &RequestHead<'_>) {
        let path = head.path();
        let metrics = path.trim_end_matches('/') == "/v1/metrics";
        // Metrics and token reloads are this member's own, master or not.
        let own = metrics || path.trim_end_matches('/') == "/v1/admin/reload";
        if !own && !self.gate.serving() {
            // Every switch call, WaitMsg included, goes to the master.
            x.role = self.refuse_not_master(head.target);
            return;
        }
        if watcher_state::is_watcher_path(path, false) {
            let wants_events = head
                .header("accept")
                .is_some_and(|v| contains_ignore_case(v, b"text/event-stream"));
            let refused = |refusal| {
                Role::Rest(Rest {
                    target: Target::Refused(refusal),
                    body: Vec::new(),
                    too_large: true,
                    token: None,
                })
            };
            x.role = if self.draining {
                self.refused += 1;
                refused(receivers::shutting_down())
            } else if head.method != "GET" {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                self.rest_error(e.status(), e.body())
            } else if !wants_events {
                let body = error_body(
                    "not_acceptable",
                    "a watcher needs `Accept: text/event-stream` (or a WebSocket at /v1/ws/)"
                        .into(),
                );
                self.rest_error(406, body)
            } else {
                match self.open_watcher(x, head, false) {
                    Ok(r) => self.accept_events(x, r),
                    Err(refusal) => {
                        self.refused += 1;
                        refused(refusal)
                    }
                }
            };
            return;
        }
        if let Some(node) = wait_msg_node(path) {
            if self.draining {
                self.refused += 1;
                x.role = Role::Rest(Rest {
                    target: Target::Refused(receivers::shutting_down()),
                    body: Vec::new(),
                    too_large: true,
                    token: None,
                });
                return;
            }
            let wants_events = head
                .header("accept")
                .is_some_and(|v| contains_ignore_case(v, b"text/event-stream"));
            if head.method != "GET" {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                x.role = self.rest_error(e.status(), e.body());
            } else if !wants_events {
                let body = error_body(
                    "not_acceptable",
                    "WaitMsg needs a WebSocket upgrade (at /v1/ws/{node}) or `Accept: text/event-stream`".into(),
                );
                x.role = self.rest_error(406, body);
            } else {
                match self.open_receiver(head, node, false) {
                    Ok(r) => x.role = self.accept_events(x, r),
                    Err((status, body)) => x.role = self.rest_error(status, body),
                }
            }
            return;
        }
        let token = auth::bearer(head.header("authorization"));
        // The member's own admin calls: the metrics and a reload of the tokens.
        let admin = if metrics {
            Some(("GET", Target::Metrics))
        } else if path.trim_end_matches('/') == "/v1/admin/reload" {
            Some(("POST", Target::Reload))
        } else {
            None
        };
        if let Some((method, target)) = admin {
            x.role = if head.method != method {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                self.rest_error(e.status(), e.body())
            } else {
                match self.tokens.check(token, Need::Admin) {
                    Ok(()) => Role::Rest(Rest {
                        target,
                        body: Vec::new(),
                        too_large: false,
                        token: None,
                    }),
                    Err(e) => self.rest_error(e.status(), auth_body(&e)),
                }
            };
            return;
        }
        x.role = match api::route(head.method, head.target) {
            Err(e) => self.rest_error(e.status(), e.body()),
            Ok(route) => {
                let need = route.node().map_or(Need::Any, Need::Node);
                match self.tokens.check(token, need) {
                    Err(e) => self.rest_error(e.status(), auth_body(&e)),
                    Ok(()) => {
                        let too_large = head
                            .header("content-length")
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > self.config.max_request_bytes as u64);
                        Role::Rest(Rest {
                            target: Target::Api(route),
                            body: Vec::new(),
                            too_large,
                            token: token.map(str::to_string),
                        })
                    }
                }
            }
        };
    }

    /// Accepts a receiving connection as an event stream (200, `text/event-stream`, the
    /// session also in `X-Session`) and greets it.
    fn accept_events(&mut self, x: &mut Exchange, r: Receiver) -> Role {
        x.reply_begun = true;
        let session = r.session.to_string();
        ext::encode_response(
            &mut self.scratch,
            200,
            [
                ("Content-Type", &b"text/event-stream"[..]),
                ("Cache-Control", &b"no-cache"[..]),
                ("X-Session", session.as_bytes()),
            ]
            .into_iter(),
        );
        self.greet(x, &r);
        Role::Receiver(r)
    }

    pub(super) fn rest_error(&mut self, status: u16, body: ErrorBody) -> Role {
        self.refused += 1;
        Role::Rest(Rest {
            target: Target::Error(status, body),
            body: Vec::new(),
            too_large: false,
            token: None,
        })
    }

    /// A complete WebSocket message from a node's receiving connection: an API request.
    pub(super) fn on_message(&mut self, input: usize, slot: usize, message: &[u8]) {
        let now = self.now_ms;
        let token = self.next_token;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let Role::Receiver(r) = &mut x.role else {
            return;
        };
        if r.watcher.is_some() {
            // A watcher has no lease: its messages are only its watches.
            let text = String::from_utf8_lossy(message).into_owned();
            self.on_watcher_message(input, slot, &text);
            return;
        }
        // Any message is a heartbeat: a node that shows life is never released before a
        // lease after it (a relet is a field write, see `NodeRegistry::relet`).
        let _ = self.engine.handle_relet(&r.node, now);
        let Ok(text) = std::str::from_utf8(message) else {
            let mut reply = serde_json::to_vec(&api::WsReply {
                id: 0,
                body: api::ResponseBody::Error(
                    ApiError::BadJson("message is not UTF-8 JSON".into()).body(),
                ),
            })
            .unwrap_or_default();
            self.gate.stamp(&mut reply, Instant::now());
            if x.awaiting.is_empty() {
                x.out_bytes += reply.len();
                x.out.push_back(reply);
            } else {
                // Behind replies still in flight: keep request order.
                x.awaiting.push_back((0, Some(reply)));
            }
            return;
        };
        // Replies go out in request order: the call waits in `awaiting` until it completes.
        self.next_token += 1;
        x.awaiting.push_back((token, None));
        let id = x.id;
        self.pending.insert(token, Pending { input, slot, id });
        let grant = crate::auth::TokenGrantOf {
            tokens: &self.tokens,
            token: r.token.as_deref(),
        };
        self.engine.handle_ws(token, &r.node, text, now, &grant);
    }

    /// Delivers the completions of calls (at once in one instance, after mesh replies in a
    /// cluster) to their exchanges.
    pub(super) fn run_done(&mut self) {
        while let Some((token, completion)) = self.engine.poll_done() {
            if let Some(w) = self.watcher_calls.remove(&token) {
                if !self.watcher_done(w, &completion) {
                    continue;
                }
            }
            let Some(p) = self.pending.remove(&token) else {
                continue;
            };
            self.complete(p, token, completion);
        }
    }

    /// The reply of a call: a WebSocket message in request order, or the REST response.
    pub(super) fn complete(&mut self, p: Pending, token: Token, completion: Completion) {
        let Some(Some(x)) = self.exchanges[p.input].get_mut(p.slot) else {
            return;
        };
        if x.id != p.id {
            return;
        }
        // A reply leaves only while the lease it was decided under still runs.
        let holds = self.gate.holds(Instant::now());
        match completion {
            Completion::Ws(_) if !holds => {
                // The connection is closed with "not master" as the gate sees the end.
                x.awaiting.retain(|(t, _)| *t != token);
                return;
            }
            Completion::Ws(reply) => {
                let mut bytes = reply.into_bytes();
                if let Some((epoch, sequence)) = self.gate.stamp(&mut bytes, Instant::now()) {
                    tracing::debug!(target: "switch::serving", epoch, sequence, at_unix_us = unix_us(), "ws reply");
                }
                if let Some(entry) = x.awaiting.iter_mut().find(|(t, _)| *t == token) {
                    entry.1 = Some(bytes);
                } else {
                    x.awaiting.push_back((token, Some(bytes)));
                }
                while x.awaiting.front().is_some_and(|(_, r)| r.is_some()) {
                    if let Some((_, Some(bytes))) = x.awaiting.pop_front() {
                        x.out_bytes += bytes.len();
                        x.out.push_back(bytes);
                    }
                }
            }
            Completion::Rest(_) if !holds => {
                let refusal = self.gate.refusal("");
                self.refused_not_master += 1;
                let refusal = Refusal {
                    status: 503,
                    headers: vec![("Retry-After", "1".into())],
                    body: refusal.body,
                };
                self.respond_refusal(p.input, p.slot, &refusal);
            }
            Completion::Rest(result) => {
                let (status, body) = match result {
                    Ok(b) => (200, serde_json::to_vec(&b).unwrap_or_default()),
                    Err(e) => (
                        e.status(),
                        serde_json::to_vec(&e.body()).unwrap_or_default(),
                    ),
                };
                self.respond(p.input, p.slot, status, b"application/json", body);
            }
            Completion::Metrics {
                metrics,
                requests,
                refused,
            } => {
                let text = metrics_text(&metrics, requests, refused);
                self.respond(p.input, p.slot, 200, b"text/plain; version=0.0.4", text);
            }
        }
        self.mark(p.input, p.slot);
    }

    /// Registers a call of exchange (`input`, `slot`) and returns its token.
    fn call_token(&mut self, input: usize, slot: usize, id: u64) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, Pending { input, slot, id });
        token
    }

    /// A REST request is complete: run it and queue the response.
    pub(super) fn on_request_end(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if !matches!(x.role, Role::Rest(_)) {
            return;
        }
        let Role::Rest(rest) = std::mem::replace(&mut x.role, Role::Done) else {
            return;
        };
        let id = x.id;
        let (status, body) = match rest.target {
            Target::Refused(refusal) => {
                self.respond_refusal(input, slot, &refusal);
                return;
            }
            Target::Error(status, body) => (status, serde_json::to_vec(&body).unwrap_or_default()),
            Target::Metrics => {
                // Every instance's counters, summed (at once in one instance).
                let token = self.call_token(input, slot, id);
                self.engine
                    .handle_metrics(token, self.requests, self.refused);
                return;
            }
            Target::Api(_) if rest.too_large => {
                let body = error_body(
                    "limit_exceeded",
                    format!(
                        "request body is larger than {} bytes",
                        self.config.max_request_bytes
                    ),
                );
                (413, serde_json::to_vec(&body).unwrap_or_default())
            }
            Target::Api(route) => {
                let token = self.call_token(input, slot, id);
                let grant = crate::auth::TokenGrantOf {
                    tokens: &self.tokens,
                    token: rest.token.as_deref(),
                };
                self.engine
                    .handle_rest(token, &route, &rest.body, self.now_ms, &grant);
                return;
            }
            Target::Reload => self.reload_tokens(),
        };
        self.respond(input, slot, status, b"application/json", body);
    }

    /// Sends a REST response: head, `Content-Length` body, end. A JSON body carries the
    /// epoch and its sequence while this cluster member serves.
    pub(super) fn respond(
        &mut self,
        input: usize,
        slot: usize,
        status: u16,
        content_type: &[u8],
        body: Vec<u8>,
    ) {
        self.respond_with(input, slot, status, content_type, &[], body);
    }

    /// [`SwitchNukleus::respond`] with more headers.
    pub(super) fn respond_with(
        &mut self,
        input: usize,
        slot: usize,
        status: u16,
        content_type: &[u8],
        extra: &[(&'static str, String)],
        mut body: Vec<u8>,
    ) {
        if content_type == b"application/json" {
            if let Some((epoch, sequence)) = self.gate.stamp(&mut body, Instant::now()) {
                tracing::debug!(target: "switch::serving", epoch, sequence, status, at_unix_us = unix_us(), "rest reply");
            }
        }
        let mut length = itoa::Buffer::new();
        let length = length.format(body.len());
        self.scratch.clear();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", content_type),
            ("Content-Length", length.as_bytes()),
        ];
        if status == 401 {
            headers.push(("WWW-Authenticate", b"Bearer realm=\"switch\""));
        }
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_bytes())));
        ext::encode_response(&mut self.scratch, status, headers.into_iter());
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let _ = self.outputs[input]
            .tx
            .begin(&header(x.id ^ 1, self.timestamp), 0, &self.scratch);
        x.reply_begun = true;
        if !body.is_empty() {
            x.out_bytes += body.len();
            x.out.push_back(body);
        }
        x.end_with = Some(Vec::new());
    }
}

/// Microseconds since the Unix epoch (the wall clock), for the serving log: comparable
/// between members on one machine, where the tests check that no two masters overlap.
pub(super) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
