//! Node-less watchers: a token holder that is not a node (a dashboard, an operator's tool)
//! watches ports or nodes on a receiving connection of its own, `GET /v1/watch` with
//! `Accept: text/event-stream` or a WebSocket at `/v1/ws/` (no node), the watch in the query
//! (`ports=` or `nodes=`, `prefix=true`, `from=` a cursor, `watch=` its id). Same pushes,
//! sequence numbers, resumption and `missed` ranges as a node's watches; the connection holds
//! no ports, has no lease, is not an online node, and ends when it closes. Its token must be
//! granted the names (`watch_ports` / `watch_nodes` prefixes, or admin); a reload that takes
//! that away closes it (4004). Watchers are counted per token and in all
//! ([`WatcherCounts`]): beyond the limits 429 / 503.

use super::watcher_state::{WatcherPending, WatcherState};
use super::*;
use crate::engine::WatcherCall;
use crate::watch::{WatchKind, WatchRequest};

fn bad_request(message: String) -> Refusal {
    refusal(400, error_body("bad_request", message), None)
}

fn refusal(status: u16, body: ErrorBody, retry_after: Option<&str>) -> Refusal {
    Refusal {
        status,
        headers: retry_after
            .map(|s| ("Retry-After", s.to_string()))
            .into_iter()
            .collect(),
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// The watch a watcher's query asks for: `ports=` or `nodes=` (exactly one), `prefix`,
/// `from` (a cursor, sequences separated by commas), `watch` (its id).
pub fn watch_of_query(query: Option<&str>) -> Result<WatchRequest, String> {
    let param = |name| auth::query_param(query, name);
    let (kind, key) = match (param("ports"), param("nodes")) {
        (Some(k), None) => (WatchKind::Ports, k),
        (None, Some(k)) => (WatchKind::Nodes, k),
        _ => {
            return Err(
                "a watcher names exactly one of `ports=` or `nodes=` in its query (a name, or a prefix with `prefix=true`)"
                    .into(),
            )
        }
    };
    let prefix = match param("prefix").as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(format!("`prefix` is true or false, not {other:?}")),
    };
    let from = match param("from") {
        None => None,
        Some(text) => Some(
            text.split(',')
                .map(|s| s.trim().parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    format!(
                        "`from` is a cursor: sequence numbers separated by commas, not {text:?}"
                    )
                })?,
        ),
    };
    let id = match param("watch") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| format!("`watch` is a number, not {text:?}"))?,
        ),
    };
    Ok(WatchRequest {
        id,
        kind,
        key,
        prefix,
        from,
    })
}

impl SwitchNukleus {
    /// Opens a node-less watcher: the token must be granted the watch of the query and the
    /// counts must take one more. The exchange becomes its receiving connection; the watch
    /// starts (its `watching` push, or the close that says why not, follows).
    pub(super) fn open_watcher(
        &mut self,
        x: &mut Exchange,
        head: &RequestHead<'_>,
        ws: bool,
    ) -> Result<Receiver, Refusal> {
        let token = auth::bearer(head.header("authorization"))
            .map(str::to_string)
            .or_else(|| auth::query_param(head.query(), "token"));
        let request = watch_of_query(head.query()).map_err(bad_request)?;
        self.tokens
            .check(token.as_deref(), Need::Watch(request.kind, &request.key))
            .map_err(|e| refusal(e.status(), auth_body(&e), None))?;
        request
            .check(&self.config.switch.limits, self.instances())
            .map_err(|e| {
                let e = ApiError::from(e);
                refusal(e.status(), e.body(), None)
            })?;
        let permit = self
            .config
            .watchers
            .admit(
                token.as_deref().unwrap_or_default(),
                &self.config.switch.limits,
            )
            .map_err(|e| match e {
                WatcherRefusal::PerToken { .. } => {
                    refusal(429, error_body("limit_exceeded", e.to_string()), None)
                }
                WatcherRefusal::Total { .. } => {
                    refusal(503, error_body("limit_exceeded", e.to_string()), Some("1"))
                }
            })?;
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = self.engine.handle_open_watcher(conn);
        let watched = Some((request.kind, request.key.as_str().into()));
        let token_id = self.next_token;
        self.next_token += 1;
        // The exchange is not in its table yet: its place is known from `x`.
        self.opening_watch = Some((
            token_id,
            WatcherPending {
                input: 0,
                slot: 0,
                id: x.id,
                watched,
                ws_id: None,
            },
            WatcherCall::Watch(request),
        ));
        let state = WatcherState {
            _permit: permit,
            watches: Vec::new(),
        };
        Ok(Receiver::opened(
            Arc::from(""),
            &session,
            conn,
            token,
            ws,
            Some(state),
        ))
    }

    /// Starts the watch of a watcher opened in this BEGIN, now that its exchange is in the
    /// table at (`input`, `slot`).
    pub(super) fn start_opening_watch(&mut self, input: usize, slot: usize) {
        let Some((token, mut pending, call)) = self.opening_watch.take() else {
            return;
        };
        let Some(Some(Exchange {
            role: Role::Receiver(r),
            ..
        })) = self.exchanges[input].get(slot)
        else {
            return;
        };
        let watcher = r.idx;
        pending.input = input;
        pending.slot = slot;
        self.watcher_calls.insert(token, pending);
        self.engine.handle_watcher_call(token, watcher, call, None);
    }

    /// A message on a watcher's WebSocket: `watch` (its token must be granted the names)
    /// or `unwatch`; anything else is answered with an error.
    pub(super) fn on_watcher_message(&mut self, input: usize, slot: usize, text: &str) {
        let token = self.next_token;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let Role::Receiver(r) = &x.role else {
            return;
        };
        let (watcher, exchange) = (r.idx, x.id);
        let call = match crate::request::parse_ws(text) {
            Err(e) => Err((
                crate::request::ws_id(text),
                ApiError::BadJson(e.to_string()),
            )),
            Ok((id, parsed)) => match api::with_watch_id(id, parsed).request {
                crate::request::Request::Watch(spec) => {
                    let request = api::watch_request(&spec);
                    match self
                        .tokens
                        .check(r.token.as_deref(), Need::Watch(request.kind, &request.key))
                    {
                        Ok(()) => Ok((id, WatcherCall::Watch(request))),
                        Err(e) => Err((id, ApiError::Forbidden(e.to_string()))),
                    }
                }
                crate::request::Request::Unwatch { watch } => Ok((id, WatcherCall::Unwatch(watch))),
                _ => Err((
                    id,
                    ApiError::BadRequest(
                        "a watcher's connection takes only the ops `watch` and `unwatch`".into(),
                    ),
                )),
            },
        };
        self.next_token += 1;
        x.awaiting.push_back((token, None));
        self.pending.insert(
            token,
            Pending {
                input,
                slot,
                id: exchange,
            },
        );
        match call {
            Err((id, e)) => {
                let reply = crate::engine::completion(Some(id), Err(e));
                if let Some(p) = self.pending.remove(&token) {
                    self.complete(p, token, reply);
                }
            }
            Ok((id, call)) => {
                let watched = match &call {
                    WatcherCall::Watch(w) => Some((w.kind, w.key.as_str().into())),
                    WatcherCall::Unwatch(_) => None,
                };
                self.watcher_calls.insert(
                    token,
                    WatcherPending {
                        input,
                        slot,
                        id: exchange,
                        watched,
                        ws_id: Some(id),
                    },
                );
                self.engine
                    .handle_watcher_call(token, watcher, call, Some(id));
            }
        }
    }

    /// A watcher's call completed: its watches are noted (for reloads); the watch of the
    /// query is answered with a `watching` push, or the connection closes with why it failed.
    /// Whether the completion still goes to the exchange as a WebSocket reply.
    pub(super) fn watcher_done(&mut self, w: WatcherPending, completion: &Completion) -> bool {
        let Some(Some(x)) = self.exchanges[w.input].get_mut(w.slot) else {
            return false;
        };
        if x.id != w.id {
            return false;
        }
        let Role::Receiver(r) = &mut x.role else {
            return false;
        };
        let Some(state) = r.watcher.as_mut() else {
            return false;
        };
        // (id, cursor) of a watch started, or the id of one ended, or the error.
        let outcome: Result<(u64, Option<Vec<u64>>), ErrorBody> = match completion {
            Completion::Rest(Ok(api::ResponseBody::Watch(resp))) => {
                Ok((resp.watch, Some(resp.cursor.clone())))
            }
            Completion::Rest(Ok(api::ResponseBody::Unwatch(resp))) => Ok((resp.unwatched, None)),
            Completion::Rest(Err(e)) => Err(e.body()),
            Completion::Ws(text) => {
                let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                match (v["watch"].as_u64(), v["unwatched"].as_u64()) {
                    (Some(id), _) if v.get("cursor").is_some() => Ok((id, Some(Vec::new()))),
                    (_, Some(id)) => Ok((id, None)),
                    _ => Err(error_body("failed", String::new())),
                }
            }
            _ => return false,
        };
        match (&outcome, w.watched) {
            (Ok((id, Some(_))), Some((kind, key))) => state.watches.push((*id, kind, key)),
            (Ok((id, None)), None) => state.watches.retain(|(w, _, _)| w != id),
            _ => {}
        }
        if w.ws_id.is_some() {
            return true;
        }
        let (input, slot) = (w.input, w.slot);
        match outcome {
            Ok((id, cursor)) => {
                let watching = serde_json::json!([{
                    "type": "watching",
                    "watch": id,
                    "cursor": cursor.unwrap_or_default(),
                }]);
                let mut bytes = Vec::new();
                if !r.ws {
                    bytes.extend_from_slice(b"data: ");
                }
                bytes.extend_from_slice(watching.to_string().as_bytes());
                if !r.ws {
                    bytes.extend_from_slice(b"\n\n");
                }
                x.out_bytes += bytes.len();
                x.out.push_back(bytes);
            }
            Err(body) => {
                // The watch of the query failed (a cursor from elsewhere): the watcher has
                // nothing to watch, so it closes, saying why.
                let conn = r.conn;
                if r.online {
                    r.online = false;
                    self.conns.remove(&conn);
                    self.engine.handle_connection_closed(conn);
                }
                let message = format!("{}: {}", body.error.code, body.error.message);
                if r.ws {
                    x.end_with = Some(close_ext(close_code::WATCH_FAILED, &message));
                } else {
                    let detail = serde_json::json!({"reason": "watch_failed", "error": body.error});
                    let event = format!("event: close\ndata: {detail}\n\n").into_bytes();
                    x.out_bytes += event.len();
                    x.out.push_back(event);
                    x.end_with = Some(Vec::new());
                }
            }
        }
        self.mark(input, slot);
        false
    }

    /// Whether a watcher's token still grants each of its watches.
    pub(super) fn watcher_allowed(&self, token: Option<&str>, state: &WatcherState) -> bool {
        self.tokens.check(token, Need::Any).is_ok()
            && state
                .watches
                .iter()
                .all(|(_, kind, key)| self.tokens.check(token, Need::Watch(*kind, key)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_of_a_query() {
        let w = watch_of_query(Some("ports=leader%2F&prefix=true&from=3,4&watch=9")).unwrap();
        assert_eq!(
            (w.kind, w.key.as_str(), w.prefix, w.from, w.id),
            (WatchKind::Ports, "leader/", true, Some(vec![3, 4]), Some(9))
        );
        let w = watch_of_query(Some("nodes=n1")).unwrap();
        assert_eq!((w.kind, w.prefix, w.from), (WatchKind::Nodes, false, None));
        for bad in [
            None,
            Some("ports=a&nodes=b"),
            Some("ports=a&from=x"),
            Some("ports=a&prefix=maybe"),
        ] {
            assert!(watch_of_query(bad).is_err(), "{bad:?}");
        }
    }
}
