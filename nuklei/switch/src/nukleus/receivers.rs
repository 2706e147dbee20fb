//! Receiving connections: a node's WaitMsg (WebSocket or Server-Sent Events) becomes its
//! receiving connection; the switch's events (pushes pending, close) reach it here.

use super::*;

pub(super) fn close_code_of(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::Replaced => close_code::REPLACED,
        CloseReason::LeaseExpired => close_code::LEASE_EXPIRED,
        CloseReason::SlowConsumer { .. } => close_code::SLOW_CONSUMER,
        CloseReason::TokenRevoked => close_code::TOKEN_REVOKED,
    }
}

pub(super) fn close_name(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Replaced => "replaced",
        CloseReason::LeaseExpired => "lease_expired",
        CloseReason::SlowConsumer { .. } => "slow_consumer",
        CloseReason::TokenRevoked => "token_revoked",
    }
}

/// The node of a WaitMsg path: `/v1/nodes/{node}/messages` or `/v1/ws/{node}`.
pub fn wait_msg_node(path: &str) -> Option<Result<String, ApiError>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let node = match segments.as_slice() {
        [v, "nodes", node, "messages"] if *v == api::VERSION => node,
        [v, "ws", node] if *v == api::VERSION => node,
        _ => return None,
    };
    Some(
        auth::percent_decode(node)
            .ok_or_else(|| ApiError::BadRequest(format!("bad percent-encoding in {node:?}"))),
    )
}

/// The END extension that refuses a WebSocket upgrade with `refusal` (JSON body).
fn ws_refusal(refusal: &Refusal) -> Vec<u8> {
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    headers.extend(refusal.headers.iter().map(|(n, v)| (*n, v.as_str())));
    let mut end = Vec::new();
    nukleus_ws::app::encode_refusal_response(&mut end, refusal.status, &headers, &refusal.body);
    end
}

/// What a WaitMsg gets while the reaktor drains: 503, try again (elsewhere) in a second.
pub(super) fn shutting_down() -> Refusal {
    let body = serde_json::json!({
        "error": {
            "code": "shutting_down",
            "message": "the server is shutting down (graceful stop): connect again, to another member if there is one",
        },
        "leader": null,
        "retry_after_ms": 1000,
    });
    Refusal {
        status: 503,
        headers: vec![("Retry-After", "1".into())],
        body: body.to_string().into_bytes(),
    }
}

impl SwitchNukleus {
    /// Closes every receiving connection: a WebSocket with `code` and `reason`, an event
    /// stream with `event: close` and `detail`. The engine is not told (its table is about to
    /// be dropped or to go with the process); returns how many were closed.
    pub(super) fn close_every_receiver(
        &mut self,
        code: u16,
        reason: &str,
        detail: &serde_json::Value,
    ) -> usize {
        let mut closed = 0;
        for input in 0..self.exchanges.len() {
            for slot in 0..self.exchanges[input].len() {
                let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                    continue;
                };
                let Role::Receiver(r) = &mut x.role else {
                    continue;
                };
                if !r.online {
                    continue;
                }
                r.online = false;
                self.conns.remove(&r.conn);
                closed += 1;
                if r.ws {
                    x.end_with = Some(close_ext(code, reason));
                } else {
                    let event = format!("event: close\ndata: {detail}\n\n").into_bytes();
                    x.out_bytes += event.len();
                    x.out.push_back(event);
                    x.end_with = Some(Vec::new());
                }
                // Replies still waiting on this connection go nowhere: it is closing.
                x.awaiting.clear();
                self.mark(input, slot);
            }
        }
        closed
    }

    /// Graceful stop: every receiving connection is closed (WebSocket 1001, SSE
    /// `event: close` with reason `going_away`) and a WaitMsg from now on is answered 503;
    /// calls in flight are answered as usual.
    pub(super) fn begin_drain(&mut self) {
        self.draining = true;
        let reason = "server shutting down";
        let detail = serde_json::json!({"reason": "going_away", "message": reason});
        let closed = self.close_every_receiver(close_code::GOING_AWAY, reason, &detail);
        tracing::info!(
            core = self.core,
            instance = self.instance,
            receivers_closed = closed,
            "draining: receiving connections closed (1001 / event: close)"
        );
    }

    /// Authenticates a WaitMsg and opens the receiving connection; on success the exchange
    /// becomes a [`Receiver`]. Errors come back as (HTTP status, body).
    pub(super) fn open_receiver(
        &mut self,
        head: &RequestHead<'_>,
        node: Result<String, ApiError>,
        ws: bool,
    ) -> Result<Receiver, (u16, ErrorBody)> {
        let node = node.map_err(|e| (e.status(), e.body()))?;
        let token = auth::bearer(head.header("authorization"))
            .map(str::to_string)
            .or_else(|| auth::query_param(head.query(), "token"));
        self.tokens
            .check(token.as_deref(), Need::Node(&node))
            .map_err(|e| (e.status(), auth_body(&e)))?;
        let address = auth::query_param(head.query(), "address")
            .or_else(|| {
                head.header("x-node-address")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let conn = self.next_conn;
        let session = self
            .engine
            .handle_wait_msg(&node, &address, conn, self.now_ms)
            .map_err(|e| {
                let e = ApiError::from(e);
                (e.status(), e.body())
            })?;
        self.next_conn += 1;
        Ok(Receiver::opened(
            Arc::from(node.as_str()),
            &session,
            conn,
            token,
            ws,
            None,
        ))
    }

    /// The first push of a receiving connection: its session, which REST calls may name so
    /// that a call meant for this connection never lands in a later one,
    /// `[{"type":"session","session":S,"node":N,"lease_ms":L}]` (after the epoch of a
    /// cluster member); a watcher's `[{"type":"session","session":S,"watcher":true}]`.
    pub(super) fn greet(&self, x: &mut Exchange, r: &Receiver) {
        let mut batch = Vec::new();
        if !r.ws {
            batch.extend_from_slice(b"data: ");
        }
        batch.push(b'[');
        let lead = self.gate.push_lead();
        if !lead.is_empty() {
            batch.extend_from_slice(lead);
            batch.push(b',');
        }
        let mut number = itoa::Buffer::new();
        batch.extend_from_slice(br#"{"type":"session","session":"#);
        batch.extend_from_slice(number.format(r.session).as_bytes());
        if r.watcher.is_some() {
            // A watcher that is not a node: no node, no lease.
            batch.extend_from_slice(br#","watcher":true}]"#);
        } else {
            batch.extend_from_slice(br#","node":"#);
            crate::json::write_string(&mut batch, &r.node);
            batch.extend_from_slice(br#","lease_ms":"#);
            batch.extend_from_slice(number.format(self.engine.lease_ms()).as_bytes());
            batch.extend_from_slice(b"}]");
        }
        if !r.ws {
            batch.extend_from_slice(b"\n\n");
        }
        x.out_bytes += batch.len();
        x.out.push_back(batch);
    }

    pub(super) fn begin_ws(&mut self, x: &mut Exchange, head: &RequestHead<'_>) {
        if self.draining || !self.gate.serving() {
            // Not the master: the upgrade is answered 307 (to the master) or 503, with the
            // JSON leader hint, and never switches protocols; draining: 503.
            let mut refusal = if self.draining {
                self.refused += 1;
                shutting_down()
            } else {
                self.refused_not_master += 1;
                self.gate.refusal(head.target)
            };
            // An upgrade is redirected to the master's WebSocket URL (ws:// or wss://), which
            // WebSocket clients follow as they are.
            for (name, value) in &mut refusal.headers {
                if *name == "Location" {
                    if let Some(rest) = value.strip_prefix("http") {
                        *value = format!("ws{rest}");
                    }
                }
            }
            x.end_with = Some(ws_refusal(&refusal));
            return;
        }
        if watcher_state::is_watcher_path(head.path(), true) {
            match self.open_watcher(x, head, true) {
                Ok(r) => {
                    x.reply_begun = true;
                    self.greet(x, &r);
                    x.role = Role::Receiver(r);
                }
                Err(refusal) => {
                    self.refused += 1;
                    x.end_with = Some(ws_refusal(&refusal));
                }
            }
            return;
        }
        let node = match wait_msg_node(head.path()) {
            Some(node) => node,
            None => Err(ApiError::NotFound(head.path().to_string())),
        };
        match self.open_receiver(head, node, true) {
            Ok(r) => {
                // The reply BEGIN accepts the upgrade: ws sends the 101 now.
                x.reply_begun = true;
                self.greet(x, &r);
                x.role = Role::Receiver(r);
            }
            Err((status, body)) => {
                // Refused before accepting: END without BEGIN, and the client gets this HTTP
                // status (401, 403, ...) instead of a 101.
                self.refused += 1;
                let mut refusal = Vec::new();
                nukleus_ws::app::encode_refusal(&mut refusal, status, &body.error.message);
                x.end_with = Some(refusal);
            }
        }
    }

    /// Runs the switch's outputs: schedule drains, close replaced/expired/slow connections.
    pub(super) fn run_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            {
                match event {
                    Output::Pending { conn, .. } => {
                        if let Some(&(input, slot)) = self.conns.get(&conn) {
                            self.mark(input, slot);
                        }
                    }
                    Output::Close { conn, reason, node } => {
                        let Some((input, slot)) = self.conns.remove(&conn) else {
                            continue;
                        };
                        // A lease that ran out or a consumer too slow to keep up is news for
                        // an operator; a node replacing its own connection is routine.
                        if matches!(reason, CloseReason::Replaced) {
                            tracing::debug!(core = self.core, instance = self.instance, node = %node, %reason, "closing receiving connection");
                        } else {
                            tracing::info!(core = self.core, instance = self.instance, node = %node, %reason, "closing receiving connection");
                        }
                        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                            continue;
                        };
                        let Role::Receiver(r) = &mut x.role else {
                            continue;
                        };
                        r.online = false;
                        let text = reason.to_string();
                        // The close goes out now, whatever the reader's window: what is not
                        // on its way yet (replies, the greeting) is dropped, as the pushes
                        // queued for the node are.
                        let started = usize::from(x.out_sent > 0);
                        for dropped in x.out.drain(started..) {
                            x.out_bytes -= dropped.len();
                        }
                        if r.ws {
                            x.end_with = Some(close_ext(close_code_of(&reason), &text));
                        } else {
                            let mut event = b"event: close\ndata: ".to_vec();
                            let detail = serde_json::json!({
                                "reason": close_name(&reason),
                                "message": text,
                            });
                            event.extend_from_slice(detail.to_string().as_bytes());
                            event.extend_from_slice(b"\n\n");
                            x.out_bytes += event.len();
                            x.out.push_back(event);
                            x.end_with = Some(Vec::new());
                        }
                        self.mark(input, slot);
                    }
                }
            }
        }
    }
}
