//! Entry point for the fuzz target in `fuzz/` (cargo-fuzz) and for the replay of its saved
//! corpus in the workspace's tests (`tests/fuzz_corpus.rs`): arbitrary text through the
//! request parser, which must agree with the serde types of [`crate::api`] (the API's
//! description) on every input; a panic is a finding.
//!
//! The classic ops' serde types leave out the fields issue 15 added to them (`session` on the
//! node-scoped ops, `if_owner` on RegPort, `ack` on SendMsg): [`Extras`] reads those as serde
//! would, so a field of the wrong type is refused by both sides. The coordination ops (watch,
//! listings, handover, ack) have no serde request type; for them the parser must not panic and
//! must report the id that [`ws_id`] finds.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny};
use serde::Deserialize;

use crate::api::{
    MessageBody, PortsRequest, QueryNodeRequest, RegPortRequest, SendMsgRequest, WsRequest,
};
use crate::json::{needs_no_escape, Escaping};
use crate::request::{parse_body, parse_ws, ws_id, Op, Parsed, Request, Str};

fn owned(v: &[Str<'_>]) -> Vec<String> {
    v.iter().map(|p| p.to_string()).collect()
}

/// A parsed request in the serde types' terms, with the WebSocket request id `id`; `None` for
/// a coordination op (no serde request type describes those).
pub fn to_serde(id: u64, request: Request<'_>) -> Option<WsRequest> {
    Some(match request {
        Request::RegPort {
            ports, subscribe, ..
        } => WsRequest::Regport {
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
        Request::SendMsg { messages, .. } => WsRequest::Sendmsg {
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
        _ => return None,
    })
}

/// The fields issue 15 added to the classic ops, as the parser reads them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extras {
    session: Option<u64>,
    if_owner: Option<Option<String>>,
    ack: bool,
}

impl Extras {
    fn of(parsed: &Parsed<'_>) -> Extras {
        let mut extras = Extras {
            session: parsed.session,
            ..Extras::default()
        };
        match &parsed.request {
            Request::RegPort { if_owner, .. } => {
                extras.if_owner = if_owner.as_ref().map(|o| o.as_ref().map(|s| s.to_string()));
            }
            Request::SendMsg { ack, .. } => extras.ack = *ack,
            _ => {}
        }
        extras
    }

    /// The same fields as serde reads them from `text` for `op` (`None`: refused).
    fn read(op: Op, text: &str) -> Option<Extras> {
        /// A present `session` is a number (null is no session).
        fn some_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            u64::deserialize(d).map(Some)
        }
        /// A present `if_owner` is a node id or null (only free ports).
        fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
            Option::<String>::deserialize(d).map(Some)
        }
        #[derive(Deserialize)]
        struct Scoped {
            #[serde(default, deserialize_with = "some_u64")]
            session: Option<u64>,
        }
        #[derive(Deserialize)]
        struct RegPort {
            #[serde(default, deserialize_with = "some_u64")]
            session: Option<u64>,
            #[serde(default, deserialize_with = "present")]
            if_owner: Option<Option<String>>,
        }
        #[derive(Deserialize)]
        struct SendMsg {
            #[serde(default)]
            ack: bool,
        }
        Some(match op {
            Op::RegPort => {
                let r: RegPort = serde_json::from_str(text).ok()?;
                Extras {
                    session: r.session,
                    if_owner: r.if_owner,
                    ack: false,
                }
            }
            Op::UnRegPort | Op::Relet => Extras {
                session: serde_json::from_str::<Scoped>(text).ok()?.session,
                ..Extras::default()
            },
            Op::SendMsg => Extras {
                ack: serde_json::from_str::<SendMsg>(text).ok()?.ack,
                ..Extras::default()
            },
            _ => Extras::default(),
        })
    }
}

/// The op of a serde request.
fn op_of(request: &WsRequest) -> Op {
    match request {
        WsRequest::Regport { .. } => Op::RegPort,
        WsRequest::Unregport { .. } => Op::UnRegPort,
        WsRequest::Sendmsg { .. } => Op::SendMsg,
        WsRequest::Queryport { .. } => Op::QueryPort,
        WsRequest::Querynode { .. } => Op::QueryNode,
        WsRequest::Relet { .. } => Op::Relet,
    }
}

/// Messages the parser marked as needing no escapes must need none.
fn check_escaping(parsed: &Parsed<'_>) {
    let request = &parsed.request;
    if let Request::SendMsg { messages, .. } = request {
        for m in messages.iter().filter(|m| m.escaping == Escaping::Plain) {
            assert!(m.port.as_deref().is_none_or(needs_no_escape), "{m:?}");
            assert!(needs_no_escape(&m.body), "{m:?}");
        }
    }
}

/// Which request a text is, for what serde makes of its `messages` field.
#[derive(Clone, Copy)]
enum Read {
    /// A WebSocket request: its `op` field says whether `messages` is read.
    WebSocket,
    /// The REST body of an op named by the URL: `messages` is read only for `sendmsg`, and an
    /// `op` field in the body is an ignored field like any other.
    Rest { sendmsg: bool },
}

/// Whether serde reads `text` as a `T`, and as what. The API's requests and messages are
/// JSON objects; serde's derive would also read a struct from an array of its fields
/// (`[["a"]]` as `{"ports":["a"]}`), which is no request: such texts count as refused.
fn serde_reads<T: DeserializeOwned>(text: &str, read: Read) -> Option<T> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let sendmsg = match read {
            Read::WebSocket => value.get("op").and_then(|op| op.as_str()) == Some("sendmsg"),
            Read::Rest { sendmsg } => sendmsg,
        };
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
    let ours_serde = ours.as_ref().ok().map(|(id, parsed)| {
        check_escaping(parsed);
        assert_eq!(ws_id(text), *id, "{text}");
        (to_serde(*id, parsed.request.clone()), Extras::of(parsed))
    });
    let theirs = serde_reads::<WsRequest>(text, Read::WebSocket)
        .and_then(|r| Some((Extras::read(op_of(&r), text)?, r)))
        .map(|(extras, r)| (Some(r), extras));
    match (ours_serde, theirs) {
        // A coordination op: no serde type to compare with.
        (Some((None, _)), None) => {}
        (ours, theirs) => assert_eq!(ours, theirs, "{text}"),
    }
    const REST: Read = Read::Rest { sendmsg: false };
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
            (to_serde(0, r.request.clone()), Extras::of(&r))
        });
        let theirs = match op {
            Op::RegPort => serde_reads(text, REST).map(Body::RegPort),
            Op::UnRegPort => serde_reads(text, REST).map(Body::UnRegPort),
            Op::QueryPort => serde_reads(text, REST).map(Body::QueryPort),
            Op::SendMsg => serde_reads(text, Read::Rest { sendmsg: true }).map(Body::SendMsg),
            Op::QueryNode => serde_reads(text, REST).map(Body::QueryNode),
            // Any object (its values unread, as serde reads fields it ignores: a number out
            // of f64's range is no error there).
            Op::Relet => {
                serde_reads::<HashMap<String, IgnoredAny>>(text, REST).map(|_| Body::Relet)
            }
            _ => unreachable!("only the classic ops are listed"),
        }
        .map(Body::into_ws)
        .and_then(|r| Some((Some(r), Extras::read(op, text)?)));
        assert_eq!(ours.ok(), theirs, "{} body {text}", op.name());
    }
    // The coordination ops' bodies: no serde type to agree with, but no panic either.
    for op in Op::ALL {
        let _ = parse_body(op, text);
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
            // The fields of issue 15 on the classic ops, right and wrong.
            r#"{"op":"regport","id":5,"ports":["a"],"if_owner":null,"session":7}"#,
            r#"{"op":"regport","id":5,"ports":["a"],"if_owner":"n2"}"#,
            r#"{"op":"regport","id":5,"ports":["a"],"if_owner":3}"#,
            r#"{"op":"regport","id":5,"ports":["a"],"session":"7"}"#,
            r#"{"op":"relet","id":6,"session":1,"session":2}"#,
            r#"{"op":"relet","id":6,"session":null}"#,
            r#"{"op":"sendmsg","id":7,"messages":[],"ack":true}"#,
            r#"{"op":"sendmsg","id":7,"messages":[],"ack":1}"#,
            // Coordination ops: parsed without a serde counterpart.
            r#"{"op":"watch","id":8,"ports":"user:","prefix":true,"from":[1,2]}"#,
            r#"{"op":"handover","id":9,"to":"b","ports":["p"]}"#,
            r#"{"op":"listports","id":10,"prefix":"u","limit":2}"#,
            // The REST body of relet (or regport) with the fields of a sendmsg request: they
            // are ignored fields there (found by fuzzing).
            r#"{"op":"sendmsg","id":2,"messages":["a","b"],"body":"x"}"#,
            "",
            "{}",
        ] {
            request(text.as_bytes());
        }
    }
}
