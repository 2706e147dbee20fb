//! API calls: REST requests from http and request messages on a WebSocket, routed to the
//! engine (locally or over the mesh) and answered when done.

use super::*;

pub(super) fn auth_body(e: &AuthError) -> ErrorBody {
    error_body(e.code(), e.to_string())
}

pub(super) fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

impl SwitchNukleus {
    pub(super) fn begin_http(&mut self, x: &mut Exchange, head: &RequestHead<'_>) {
        let path = head.path();
        if let Some(node) = wait_msg_node(path) {
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
                    Ok(r) => {
                        x.reply_begun = true;
                        ext::encode_response(
                            &mut self.scratch,
                            200,
                            [
                                ("Content-Type", &b"text/event-stream"[..]),
                                ("Cache-Control", &b"no-cache"[..]),
                            ]
                            .into_iter(),
                        );
                        x.role = Role::Receiver(r);
                    }
                    Err((status, body)) => x.role = self.rest_error(status, body),
                }
            }
            return;
        }
        let token = auth::bearer(head.header("authorization"));
        if head.path().trim_end_matches('/') == "/v1/metrics" {
            x.role = if head.method != "GET" {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                self.rest_error(e.status(), e.body())
            } else {
                match self.tokens.check(token, Need::Admin) {
                    Ok(()) => Role::Rest(Rest {
                        target: Target::Metrics,
                        body: Vec::new(),
                        too_large: false,
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
                        })
                    }
                }
            }
        };
    }

    pub(super) fn rest_error(&mut self, status: u16, body: ErrorBody) -> Role {
        self.refused += 1;
        Role::Rest(Rest {
            target: Target::Error(status, body),
            body: Vec::new(),
            too_large: false,
        })
    }

    /// A complete WebSocket message from a node's receiving connection: an API request.
    pub(super) fn on_message(&mut self, input: usize, slot: usize, message: &[u8]) {
        let now = self.now_ms;
        let lease_ms = self.engine.lease_ms();
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let Role::Receiver(r) = &mut x.role else {
            return;
        };
        // Any message is a heartbeat; relet at most ten times per lease to keep the lease heap
        // small under a flood of requests.
        if now.saturating_sub(r.last_relet) * 10 >= lease_ms {
            let _ = self.engine.relet(&r.node, now);
            r.last_relet = now;
        }
        let reply = match (std::str::from_utf8(message), &mut self.engine) {
            (Ok(text), Engine::Single(switch)) => {
                api::handle_ws(switch, &r.node, text, now, &mut self.events)
            }
            (Ok(text), Engine::Cluster(_)) => {
                let (id, call) = Call::from_ws(&r.node, text);
                self.start_call(input, slot, Some(id), call);
                return;
            }
            (Err(_), _) => serde_json::to_string(&api::WsReply {
                id: 0,
                body: api::ResponseBody::Error(
                    ApiError::BadJson("message is not UTF-8 JSON".into()).body(),
                ),
            })
            .unwrap_or_default(),
        };
        if x.awaiting.is_empty() {
            x.out_bytes += reply.len();
            x.out.push_back(reply.into_bytes());
        } else {
            // Behind replies still in flight: keep request order.
            x.awaiting.push_back((0, Some(reply.into_bytes())));
        }
    }

    /// Starts a call at this instance (cluster mode); its reply goes to the exchange when it
    /// completes, here and now or after mesh replies.
    pub(super) fn start_call(
        &mut self,
        input: usize,
        slot: usize,
        ws_id: Option<u64>,
        call: Result<Call, ApiError>,
    ) {
        let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh) else {
            return;
        };
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let token = mesh.next_token;
        mesh.next_token += 1;
        if ws_id.is_some() {
            x.awaiting.push_back((token, None));
        }
        let id = x.id;
        let immediate = match call {
            Err(e) => Err(e),
            Ok(call) => match Engine::start(instance, token, call, self.now_ms, &mut self.events) {
                Ok(shape) => {
                    mesh.pending.insert(
                        token,
                        Pending {
                            input,
                            slot,
                            id,
                            ws_id,
                            shape,
                        },
                    );
                    return;
                }
                Err(result) => result,
            },
        };
        self.complete(input, slot, id, ws_id, token, immediate);
    }

    /// Delivers the completions of calls in flight (cluster mode).
    pub(super) fn run_done(&mut self) {
        let Engine::Cluster(instance) = &mut self.engine else {
            return;
        };
        let done: Vec<_> = instance.take_done().collect();
        for (token, reply) in done {
            let Some(mesh) = self.mesh.as_mut() else {
                return;
            };
            let Some(p) = mesh.pending.remove(&token) else {
                continue;
            };
            if let (
                Shape::Metrics,
                Ok(Reply::Metrics {
                    metrics,
                    requests,
                    refused,
                }),
            ) = (&p.shape, &reply)
            {
                if matches!(self.exchanges[p.input].get(p.slot), Some(Some(x)) if x.id == p.id) {
                    let text = metrics_text(metrics, *requests, *refused);
                    self.respond(p.input, p.slot, 200, b"text/plain; version=0.0.4", text);
                    self.mark(p.input, p.slot);
                }
                continue;
            }
            let result = crate::engine::response(p.shape, reply);
            self.complete(p.input, p.slot, p.id, p.ws_id, token, result);
        }
    }

    /// The reply of a call: a WebSocket message in request order, or the REST response.
    pub(super) fn complete(
        &mut self,
        input: usize,
        slot: usize,
        id: u64,
        ws_id: Option<u64>,
        token: Token,
        result: Result<ResponseBody, ApiError>,
    ) {
        match ws_id {
            Some(ws_id) => {
                let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                    return;
                };
                if x.id != id {
                    return;
                }
                let reply = api::WsReply {
                    id: ws_id,
                    body: result.unwrap_or_else(|e| ResponseBody::Error(e.body())),
                };
                let bytes = serde_json::to_vec(&reply).unwrap_or_default();
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
                self.mark(input, slot);
            }
            None => {
                if !matches!(self.exchanges[input].get(slot), Some(Some(x)) if x.id == id) {
                    return;
                }
                let (status, body) = match result {
                    Ok(b) => (200, serde_json::to_vec(&b).unwrap_or_default()),
                    Err(e) => (
                        e.status(),
                        serde_json::to_vec(&e.body()).unwrap_or_default(),
                    ),
                };
                self.respond(input, slot, status, b"application/json", body);
                self.mark(input, slot);
            }
        }
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
        let (status, content_type, body): (u16, &[u8], Vec<u8>) = match rest.target {
            Target::Error(status, body) => (
                status,
                b"application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            Target::Metrics => {
                if let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh)
                {
                    // Sum the counters of every instance.
                    let token = mesh.next_token;
                    mesh.next_token += 1;
                    let id = x.id;
                    mesh.pending.insert(
                        token,
                        Pending {
                            input,
                            slot,
                            id,
                            ws_id: None,
                            shape: Shape::Metrics,
                        },
                    );
                    instance.query_metrics(token);
                    return;
                }
                (
                    200,
                    b"text/plain; version=0.0.4",
                    metrics_text(&self.engine.metrics(), self.requests, self.refused),
                )
            }
            Target::Api(_) if rest.too_large => {
                let body = error_body(
                    "limit_exceeded",
                    format!(
                        "request body is larger than {} bytes",
                        self.config.max_request_bytes
                    ),
                );
                (
                    413,
                    b"application/json",
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
            Target::Api(route) => {
                let Engine::Single(switch) = &mut self.engine else {
                    let call = Call::from_rest(&route, &rest.body);
                    self.start_call(input, slot, None, call);
                    return;
                };
                let (status, body) =
                    match api::handle(switch, &route, &rest.body, self.now_ms, &mut self.events) {
                        Ok(b) => (200, serde_json::to_vec(&b).unwrap_or_default()),
                        Err(e) => (
                            e.status(),
                            serde_json::to_vec(&e.body()).unwrap_or_default(),
                        ),
                    };
                (status, b"application/json", body)
            }
        };
        self.respond(input, slot, status, content_type, body);
    }

    /// Sends a REST response: head, `Content-Length` body, end.
    pub(super) fn respond(
        &mut self,
        input: usize,
        slot: usize,
        status: u16,
        content_type: &[u8],
        body: Vec<u8>,
    ) {
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
