//! The versioned switch API: serde bodies for REST and WebSocket, and a sans-I/O dispatcher.
//!
//! # REST (`/v1`)
//!
//! | method and path | request body | response body |
//! |---|---|---|
//! | `POST /v1/nodes/{node}/ports` | `{"ports":["a","b"],"subscribe":true}` | `{"registered":1,"failed":[{"port":"b","owner":"n2","address":"10.0.0.2:7000"}]}` |
//! | `DELETE /v1/nodes/{node}/ports` | `{"ports":["a"]}` | `{"released":["a"],"not_owned":[],"unknown":[]}` |
//! | `POST /v1/nodes/{node}/relet` | none | `{"lease_deadline":12000,"lease_ms":10000}` |
//! | `POST /v1/messages` | `{"messages":[{"port":"p","body":"text"},{"ports":["a","b"],"body":"x"}]}` | `{"delivered":3,"dropped":0}` |
//! | `POST /v1/ports/query` | `{"ports":["a"]}` | `{"ports":[{"port":"a","owner":"n1","address":"…"}]}` |
//! | `POST /v1/nodes/query` | `{"nodes":["n1"]}` | `{"nodes":[{"node":"n1","online":true,"address":"…","ports":1}]}` |
//!
//! A message `port` of `""` broadcasts to every node with a receiving connection. Bodies are
//! opaque strings. Errors are `{"error":{"code":"limit_exceeded","message":"…"}}` with a 4xx/5xx
//! status. WaitMsg (the receiving connection) and connection close are connection events the
//! HTTP/WebSocket layer reports to [`Switch::wait_msg`] and [`Switch::connection_closed`].
//!
//! # WebSocket
//!
//! The same operations as text messages on the node's connection, with an `op` and a
//! caller-chosen `id` echoed in the reply: `{"op":"regport","id":1,"ports":["a"]}` →
//! `{"id":1,"registered":1,"failed":[]}`. Ops: `regport`, `unregport`, `sendmsg`, `queryport`,
//! `querynode`, `relet`. Pushes from the switch are JSON arrays (see [`Switch::drain`]), so a
//! client tells replies (objects) from pushes (arrays) by the first byte.
//!
//! Authentication is the caller's: resolve the [`Route`] first with [`route`], check the
//! bearer token against [`Route::node`], then call [`handle`].
//!
//! The request types here are the API's description for clients (serde); the switch itself
//! reads requests with the borrowing single-pass parser of [`crate::request`].
//!
//! Here: [`handle`], [`execute`] and the calls they run. The JSON bodies are in `body.rs`,
//! [`ApiError`] in `error.rs`, routes in `route.rs`, reply bodies from the switch's replies
//! in `response.rs`, and the coordination calls (watches, listings, handover) in `coord.rs`;
//! all are re-exported here.

mod body;
mod coord;
mod error;
mod response;
mod route;

pub use body::*;
pub use coord::*;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use response::*;
pub use route::{page_query, route, Route, VERSION};

use crate::request::{self, Message, Parsed, Request, Str};
use crate::switch::{Output, Switch};

/// The request of a REST call: from its route (listings, unwatch), or its body (a relet's
/// may be empty).
pub fn parse_rest<'a>(route: &'a Route, body: &'a [u8]) -> Result<Parsed<'a>, ApiError> {
    if let Some(parsed) = route_request(route) {
        return Ok(parsed);
    }
    if matches!(route, Route::Relet { .. }) && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed {
            request: Request::Relet,
            session: None,
        });
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadJson(format!("request body is not UTF-8: {e}")))?;
    request::parse_body(route.op(), text).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Run a routed REST request against the switch.
pub fn handle(
    switch: &mut Switch,
    route: &Route,
    body: &[u8],
    now: u64,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let node = route.node().unwrap_or_default();
    let parsed = parse_rest(route, body)?;
    execute(switch, node, parsed, now, out)
}

/// Run a parsed request for `node` (the acting node of node-scoped calls), in the session
/// it names if it names one.
pub fn execute(
    switch: &mut Switch,
    node: &str,
    parsed: Parsed<'_>,
    now: u64,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    if let Some(session) = parsed.session {
        switch.check_session(node, session)?;
    }
    let req = parsed.request;
    if let Some(result) = coord::execute(switch, node, &req, out) {
        return result;
    }
    match req {
        Request::RegPort {
            ports, subscribe, ..
        } => reg_port(switch, node, &ports, subscribe, out),
        Request::UnRegPort { ports } => unreg_port(switch, node, &ports, out),
        Request::SendMsg {
            messages,
            ack: false,
        } => send_msg(switch, &messages, out),
        Request::SendMsg { ack: true, .. } => Err(ApiError::BadRequest(
            "acknowledged delivery completes later: run it with Switch::send_msg_acked".into(),
        )),
        Request::QueryPort { ports } => query_port(switch, &ports),
        Request::QueryNode { nodes } => query_node(switch, &nodes),
        Request::Relet => relet(switch, node, now),
        other => Err(ApiError::BadRequest(format!(
            "not a call of this switch: {other:?}"
        ))),
    }
}

/// A REST response: status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Route and run a REST request (no authorization check; use [`route`] + [`handle`] for that).
pub fn handle_rest(
    switch: &mut Switch,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
    out: &mut Vec<Output>,
) -> RestResponse {
    let result = route(method, path).and_then(|r| handle(switch, &r, body, now, out));
    let (status, body) = match result {
        Ok(b) => (200, b),
        Err(e) => (e.status(), ResponseBody::Error(e.body())),
    };
    RestResponse {
        status,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Run a WebSocket text message from the connection of `node`; returns the reply text.
pub fn handle_ws(
    switch: &mut Switch,
    node: &str,
    text: &str,
    now: u64,
    out: &mut Vec<Output>,
) -> String {
    let reply = match request::parse_ws(text) {
        Err(e) => WsReply {
            id: request::ws_id(text),
            body: ResponseBody::Error(ApiError::BadJson(e.to_string()).body()),
        },
        Ok((id, parsed)) => WsReply {
            id,
            body: execute(switch, node, with_watch_id(id, parsed), now, out)
                .unwrap_or_else(|e| ResponseBody::Error(e.body())),
        },
    };
    serde_json::to_string(&reply).unwrap_or_default()
}

/// RegPort.
pub fn reg_port(
    switch: &mut Switch,
    node: &str,
    ports: &[Str<'_>],
    subscribe: bool,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let reply = switch.reg_port(node, ports, subscribe, out)?;
    Ok(reg_port_response(ports, reply))
}

/// UnRegPort.
pub fn unreg_port(
    switch: &mut Switch,
    node: &str,
    ports: &[Str<'_>],
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let reply = switch.unreg_port(node, ports, out)?;
    Ok(unreg_port_response(ports, reply))
}

/// SendMsg.
pub fn send_msg(
    switch: &mut Switch,
    messages: &[Message<'_>],
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    if messages.iter().any(|m| m.targets().is_none()) {
        return Err(ApiError::BadRequest(
            "each message needs exactly one of \"port\" or \"ports\"".into(),
        ));
    }
    let batch = messages
        .iter()
        .map(|m| (m.targets().unwrap_or_default(), m.body.as_ref(), m.escaping));
    let report = switch.send_msg_as(batch, out)?;
    Ok(send_msg_response(report))
}

/// A WebSocket watch without an explicit id is named by its request's id (the client knows
/// it before the reply, so events that come first are not a surprise).
pub fn with_watch_id(id: u64, mut parsed: Parsed<'_>) -> Parsed<'_> {
    if let Request::Watch(spec) = &mut parsed.request {
        spec.watch.get_or_insert(id);
    }
    parsed
}

/// QueryPort.
pub fn query_port(switch: &Switch, ports: &[Str<'_>]) -> Result<ResponseBody, ApiError> {
    let owners = switch.query_port(ports)?;
    Ok(query_port_response(ports, owners))
}

/// QueryNode.
pub fn query_node(switch: &Switch, nodes: &[Str<'_>]) -> Result<ResponseBody, ApiError> {
    let infos = switch.query_node(nodes)?;
    Ok(query_node_response(nodes, infos))
}

/// Relet.
pub fn relet(switch: &mut Switch, node: &str, now: u64) -> Result<ResponseBody, ApiError> {
    let lease_deadline = switch.relet(node, now)?;
    Ok(relet_response(lease_deadline, switch.nodes().lease_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("POST", "/v1/nodes/n%3A1/ports"),
            Ok(Route::RegPort { node: "n:1".into() })
        );
        assert_eq!(
            route("DELETE", "/v1/nodes/n1/ports?x=1"),
            Ok(Route::UnRegPort { node: "n1".into() })
        );
        assert_eq!(route("POST", "/v1/messages"), Ok(Route::SendMsg));
        assert_eq!(route("POST", "/v1/ports/query"), Ok(Route::QueryPort));
        assert_eq!(route("POST", "/v1/nodes/query"), Ok(Route::QueryNode));
        assert_eq!(
            route("POST", "/v1/nodes/n1/relet"),
            Ok(Route::Relet { node: "n1".into() })
        );
        assert_eq!(route("GET", "/v1/messages").unwrap_err().status(), 405);
        assert_eq!(route("POST", "/v2/messages").unwrap_err().status(), 404);
        assert_eq!(
            route("POST", "/v1/nodes/%zz/ports").unwrap_err().status(),
            400
        );
    }

    #[test]
    fn ws_request_shapes() {
        let r: WsRequest =
            serde_json::from_str(r#"{"op":"regport","id":1,"ports":["a"],"subscribe":true}"#)
                .unwrap();
        assert_eq!(
            r,
            WsRequest::Regport {
                id: 1,
                body: RegPortRequest {
                    ports: vec!["a".into()],
                    subscribe: true
                }
            }
        );
        let r: WsRequest = serde_json::from_str(r#"{"op":"relet","id":7}"#).unwrap();
        assert_eq!(r, WsRequest::Relet { id: 7 });
        let reply = WsReply {
            id: 3,
            body: ResponseBody::SendMsg(SendMsgResponse {
                delivered: 2,
                dropped: 1,
                ..SendMsgResponse::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"id":3,"delivered":2,"dropped":1}"#
        );
    }
}
