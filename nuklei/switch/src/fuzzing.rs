//! Entry point for the fuzz target in `fuzz/` (cargo-fuzz) and for the replay of its saved
//! corpus in the workspace's tests (`tests/fuzz_corpus.rs`): arbitrary text through the
//! request parser, which must agree with the serde types of [`crate::api`] (the API's
//! description) on every input; a panic is a finding.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::api::{
    MessageBody, PortsRequest, QueryNodeRequest, RegPortRequest, SendMsgRequest, WsRequest,
};
use crate::json::{needs_no_escape, Escaping};
use crate::request::{parse_body, parse_ws, ws_id, Op, Request, Str};

fn owned(v: &[Str<'_>]) -> Vec<String> {
    v.iter().map(|p| p.to_string()).collect()
}

/// A parsed request in the serde types' terms, with the WebSocket request id `id`.
pub fn to_serde(id: u64, request: Request<'_>) -> WsRequest {
    match request {
        Request::RegPort { ports, subscribe } => WsRequest::Regport {
            id,
            body: RegPortRequest {
                ports: owned(&ports),
                subscribe,
            },
        },
        Request::UnRegPort { ports } => WsRequest::Unregport {
            id,
            body: PortsRequest {
                ports: owned(&ports),
            },
        },
        Request::QueryPort { ports } => WsRequest::Queryport {
            id,
            body: PortsRequest {
                ports: owned(&ports),
            },
        },
        Request::QueryNode { nodes } => WsRequest::Querynode {
            id,
            body: QueryNodeRequest {
                nodes: owned(&nodes),
            },
        },
        Request::SendMsg { messages } => WsRequest::Sendmsg {
            id,
            body: SendMsgRequest {
                messages: messages
                    .into_iter()
                    .map(|m| MessageBody {
                        port: m.port.map(|p| p.to_string()),
                        ports: m.ports.map(|p| owned(&p)),
                        body: m.body.to_string(),
                    })
                    .collect(),
            },
        },
        Request::Relet => WsRequest::Relet { id },
    }
}

/// Messages the parser marked as needing no escapes must need none.
fn check_escaping(request: &Request<'_>) {
    if let Request::SendMsg { messages } = request {
        for m in messages.iter().filter(|m| m.escaping == Escaping::Plain) {
            assert!(m.port.as_deref().is_none_or(needs_no_escape), "{m:?}");
            assert!(needs_no_escape(&m.body), "{m:?}");
        }
    }
}

/// Whether serde reads `text` as a `T`, and as what. The API's requests and messages are
/// JSON objects; serde's derive would also read a struct from an array of its fields
/// (`[["a"]]` as `{"ports":["a"]}`), which is no request: such texts count as refused.
/// `sendmsg`: whether `messages` is a field of the request (and its items structs).
fn serde_reads<T: DeserializeOwned>(text: &str, sendmsg: bool) -> Option<T> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let sendmsg = sendmsg || value.get("op").and_then(|op| op.as_str()) == Some("sendmsg");
        let messages_are_objects = match value.get("messages") {
            Some(serde_json::Value::Array(messages)) if sendmsg => {
                messages.iter().all(|m| m.is_object())
            }
            _ => true,
        };
        if !value.is_object() || !messages_are_objects {
            return None;
        }
    }
    serde_json::from_str(text).ok()
}

/// A WebSocket request and a REST body of every op: the parser accepts exactly what serde
/// accepts and reads the same thing; the id of a failed WebSocket request is the one serde
/// would see; plain (escape-free) messages are really plain.
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = parse_ws(text);
    let theirs = serde_reads::<WsRequest>(text, false);
    match (&ours, &theirs) {
        (Ok((id, parsed)), Some(expected)) => {
            check_escaping(parsed);
            assert_eq!(&to_serde(*id, parsed.clone()), expected, "{text}");
            assert_eq!(ws_id(text), *id);
        }
        (Err(_), None) => {}
        (ours, theirs) => panic!("{text}: serde {theirs:?}, ours {ours:?}"),
    }
    for op in [
        Op::RegPort,
        Op::UnRegPort,
        Op::SendMsg,
        Op::QueryPort,
        Op::QueryNode,
        Op::Relet,
    ] {
        let ours = parse_body(op, text).map(|r| {
            check_escaping(&r);
            to_serde(0, r)
        });
        let theirs = match op {
            Op::RegPort => serde_reads(text, false).map(Body::RegPort),
            Op::UnRegPort => serde_reads(text, false).map(Body::UnRegPort),
            Op::QueryPort => serde_reads(text, false).map(Body::QueryPort),
            Op::SendMsg => serde_reads(text, true).map(Body::SendMsg),
            Op::QueryNode => serde_reads(text, false).map(Body::QueryNode),
            // Any object (its values unread, as serde reads fields it ignores: a number out
            // of f64's range is no error there).
            Op::Relet => {
                serde_reads::<HashMap<String, IgnoredAny>>(text, false).map(|_| Body::Relet)
            }
        }
        .map(Body::into_ws);
        assert_eq!(ours.ok(), theirs, "{} body {text}", op.name());
    }
}

/// A REST body as serde reads it.
enum Body {
    RegPort(RegPortRequest),
    UnRegPort(PortsRequest),
    QueryPort(PortsRequest),
    SendMsg(SendMsgRequest),
    QueryNode(QueryNodeRequest),
    Relet,
}

impl Body {
    /// The WebSocket request with id 0 and this body.
    fn into_ws(self) -> WsRequest {
        let id = 0;
        match self {
            Body::RegPort(body) => WsRequest::Regport { id, body },
            Body::UnRegPort(body) => WsRequest::Unregport { id, body },
            Body::QueryPort(body) => WsRequest::Queryport { id, body },
            Body::SendMsg(body) => WsRequest::Sendmsg { id, body },
            Body::QueryNode(body) => WsRequest::Querynode { id, body },
            Body::Relet => WsRequest::Relet { id },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_and_malformed_requests_pass_every_check() {
        for text in [
            r#"{"op":"regport","id":1,"ports":["a","b"],"subscribe":true}"#,
            r#"{"id":2,"messages":[{"port":"p","body":"x"},{"ports":["q"],"body":"\n"}],"op":"sendmsg"}"#,
            r#"{"ports":[],"op":"queryport","id":3}"#,
            r#"{"op":"relet","id":4,"extra":[1,{"a":null}]}"#,
            r#"{"op":"relet""#,
            "",
            "{}",
        ] {
            request(text.as_bytes());
        }
    }
}
