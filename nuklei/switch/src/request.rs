//! Requests of the switch API, parsed in one pass from their JSON text ([`parse_ws`] for
//! WebSocket messages, [`parse_body`] for REST bodies) into [`Request`]s whose port names, node
//! ids and message bodies borrow from the text (owned only where the JSON string had escapes).
//!
//! The accepted shapes are those of the serde types in [`crate::api`] (`RegPortRequest`,
//! `WsRequest`, …), which stay the client-side description of the API: unknown fields are
//! ignored, a field given twice is an error, `port`/`ports` of a message may be `null`, and a
//! WebSocket request's `op` may come anywhere in the object (fields before it are checked for
//! syntax at once and read once the op is known, so the usual op-first request is read once).

use std::borrow::Cow;

use crate::json::{Escaping, JsonError, Reader};

/// A string of a request: borrowed from the request text unless it had escapes.
pub type Str<'a> = Cow<'a, str>;

/// The operations of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Register ports.
    RegPort,
    /// Release ports.
    UnRegPort,
    /// Send messages.
    SendMsg,
    /// Owners of ports.
    QueryPort,
    /// State of nodes.
    QueryNode,
    /// Heartbeat.
    Relet,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::RegPort,
        Op::UnRegPort,
        Op::SendMsg,
        Op::QueryPort,
        Op::QueryNode,
        Op::Relet,
    ];

    /// The `op` of a WebSocket request.
    pub fn name(self) -> &'static str {
        match self {
            Op::RegPort => "regport",
            Op::UnRegPort => "unregport",
            Op::SendMsg => "sendmsg",
            Op::QueryPort => "queryport",
            Op::QueryNode => "querynode",
            Op::Relet => "relet",
        }
    }

    /// The op named `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// One message of SendMsg.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// Single target (`""`: broadcast); `null` reads as absent.
    pub port: Option<Str<'a>>,
    /// Several targets; `null` reads as absent.
    pub ports: Option<Vec<Str<'a>>>,
    /// Opaque body.
    pub body: Str<'a>,
    /// [`Escaping::Plain`] if the parser found `port` and `body` with no byte JSON escapes, so
    /// their pushes copy them without a scan; [`Escaping::Scan`] otherwise (always safe).
    pub escaping: Escaping,
}

impl<'a> Message<'a> {
    /// The targets: `ports` if given, else `[port]`; `None` unless exactly one was given.
    pub fn targets(&self) -> Option<&[Str<'a>]> {
        match (&self.port, &self.ports) {
            (None, Some(ports)) => Some(ports),
            (Some(port), None) => Some(std::slice::from_ref(port)),
            _ => None,
        }
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Register `ports`; subscribe to the release of those that fail.
    RegPort {
        /// The ports.
        ports: Vec<Str<'a>>,
        /// Subscribe (default false).
        subscribe: bool,
    },
    /// Release ports.
    UnRegPort {
        /// The ports.
        ports: Vec<Str<'a>>,
    },
    /// Send messages, in this order.
    SendMsg {
        /// The batch.
        messages: Vec<Message<'a>>,
    },
    /// Owners of ports.
    QueryPort {
        /// The ports.
        ports: Vec<Str<'a>>,
    },
    /// State of nodes.
    QueryNode {
        /// Node ids.
        nodes: Vec<Str<'a>>,
    },
    /// Heartbeat.
    Relet,
}

fn missing(r: &Reader<'_>, at: usize, field: &str) -> JsonError {
    r.error_at(at, format!("missing field `{field}`"))
}

fn duplicate(r: &Reader<'_>, field: &str) -> JsonError {
    r.error(format!("duplicate field `{field}`"))
}

/// Store a field's value once; a second occurrence is an error.
fn once<'a, T>(
    slot: &mut Option<T>,
    r: &mut Reader<'a>,
    field: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, JsonError>,
) -> Result<(), JsonError> {
    if slot.is_some() {
        return Err(duplicate(r, field));
    }
    *slot = Some(read(r).map_err(|e| e.in_field(field))?);
    Ok(())
}

/// The body fields of all ops, filled as they are met.
#[derive(Default)]
struct Fields<'a> {
    ports: Option<Vec<Str<'a>>>,
    subscribe: Option<bool>,
    messages: Option<Vec<Message<'a>>>,
    nodes: Option<Vec<Str<'a>>>,
}

impl<'a> Fields<'a> {
    /// Read the value of `key` if it is a field of `op`; `Ok(false)` (nothing consumed) if not.
    fn read(&mut self, op: Op, key: &str, r: &mut Reader<'a>) -> Result<bool, JsonError> {
        match (op, key) {
            (Op::RegPort | Op::UnRegPort | Op::QueryPort, "ports") => {
                once(&mut self.ports, r, key, Reader::strings)?
            }
            (Op::RegPort, "subscribe") => once(&mut self.subscribe, r, key, Reader::bool)?,
            (Op::SendMsg, "messages") => once(&mut self.messages, r, key, messages)?,
            (Op::QueryNode, "nodes") => once(&mut self.nodes, r, key, Reader::strings)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The request of `op`, once the whole object was read (`end`: its end offset).
    fn finish(self, op: Op, r: &Reader<'_>, end: usize) -> Result<Request<'a>, JsonError> {
        let need = |v: Option<Vec<Str<'a>>>, f: &str| v.ok_or_else(|| missing(r, end, f));
        Ok(match op {
            Op::RegPort => Request::RegPort {
                ports: need(self.ports, "ports")?,
                subscribe: self.subscribe.unwrap_or(false),
            },
            Op::UnRegPort => Request::UnRegPort {
                ports: need(self.ports, "ports")?,
            },
            Op::QueryPort => Request::QueryPort {
                ports: need(self.ports, "ports")?,
            },
            Op::QueryNode => Request::QueryNode {
                nodes: need(self.nodes, "nodes")?,
            },
            Op::SendMsg => Request::SendMsg {
                messages: self.messages.ok_or_else(|| missing(r, end, "messages"))?,
            },
            Op::Relet => Request::Relet,
        })
    }
}

/// Most messages a batch's list is sized for up front (more grow it as usual).
const MAX_RESERVED_MESSAGES: usize = 16 * 1024;

fn messages<'a>(r: &mut Reader<'a>) -> Result<Vec<Message<'a>>, JsonError> {
    let mut out = Vec::new();
    r.array(|r| {
        let start = r.position();
        out.push(message(r)?);
        if out.len() == 1 {
            // Batches tend to be uniform: size the list from the first message's length
            // rather than growing it (and copying it) step by step.
            // (Capped: a tiny first message must not reserve for millions.)
            let each = r.position() - start + 1;
            out.reserve((r.remaining() / each + 1).min(MAX_RESERVED_MESSAGES));
        }
        Ok(())
    })?;
    Ok(out)
}

fn message<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, JsonError> {
    if let Some((port, body)) = r.template(br#"{"port":""#, br#"","body":""#, br#""}"#) {
        return Ok(Message {
            port: Some(Cow::Borrowed(port)),
            ports: None,
            body: Cow::Borrowed(body),
            escaping: Escaping::Plain,
        });
    }
    let mut port = None;
    let mut ports = None;
    let mut body = None;
    r.object(|r, key| match &*key {
        "port" => once(&mut port, r, "port", |r| {
            Ok(if r.null()? { None } else { Some(r.string()?) })
        }),
        "ports" => once(&mut ports, r, "ports", |r| {
            Ok(if r.null()? { None } else { Some(r.strings()?) })
        }),
        "body" => once(&mut body, r, "body", Reader::string),
        _ => r.skip_value(),
    })?;
    Ok(Message {
        port: port.flatten(),
        ports: ports.flatten(),
        body: body.ok_or_else(|| missing(r, r.position(), "body"))?,
        escaping: Escaping::Scan,
    })
}

/// A REST request body of `op`: a JSON object with the op's fields (other fields ignored).
pub fn parse_body(op: Op, text: &str) -> Result<Request<'_>, JsonError> {
    let mut r = Reader::new(text);
    let mut fields = Fields::default();
    r.object(|r, key| {
        if !fields.read(op, &key, r)? {
            r.skip_value()?;
        }
        Ok(())
    })?;
    let end = r.position();
    r.end()?;
    fields.finish(op, &r, end)
}

/// A WebSocket request: `{"op":…,"id":…, …the op's fields}`; returns the id and the request.
pub fn parse_ws(text: &str) -> Result<(u64, Request<'_>), JsonError> {
    let mut r = Reader::new(text);
    let mut op = None;
    let mut id = None;
    let mut fields = Fields::default();
    // Fields met before `op`: (key, offset of the value), read once the op is known.
    let mut later: Vec<(Str<'_>, usize)> = Vec::new();
    r.object(|r, key| match &*key {
        "op" => once(&mut op, r, "op", |r| {
            let at = r.position();
            let name = r.string()?;
            Op::from_name(&name).ok_or_else(|| {
                let names: Vec<String> =
                    Op::ALL.iter().map(|o| format!("`{}`", o.name())).collect();
                r.error_at(
                    at,
                    format!("unknown op `{name}`, expected one of {}", names.join(", ")),
                )
            })
        }),
        "id" => once(&mut id, r, "id", Reader::u64),
        _ => {
            match op {
                Some(op) => {
                    if !fields.read(op, &key, r)? {
                        r.skip_value()?;
                    }
                }
                None => {
                    let at = r.position();
                    r.skip_value()?;
                    later.push((key, at));
                }
            }
            Ok(())
        }
    })?;
    let end = r.position();
    r.end()?;
    let op = op.ok_or_else(|| missing(&r, end, "op"))?;
    for (key, at) in later {
        fields.read(op, &key, &mut r.at(at))?;
    }
    let id = id.ok_or_else(|| missing(&r, end, "id"))?;
    Ok((id, fields.finish(op, &r, end)?))
}

/// Best effort, for the reply to a request that failed to parse: its `id` if the text is a
/// JSON object with exactly one unsigned-integer `id`, else 0.
pub fn ws_id(text: &str) -> u64 {
    let mut r = Reader::new(text);
    let mut id = None;
    let parsed = r.object(|r, key| {
        if key == "id" {
            once(&mut id, r, "id", Reader::u64)
        } else {
            r.skip_value()
        }
    });
    match (parsed, r.end(), id) {
        (Ok(()), Ok(()), Some(id)) => id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Str<'_> {
        Cow::Borrowed(v)
    }

    fn err(text: &str) -> String {
        parse_ws(text).unwrap_err().to_string()
    }

    #[test]
    fn every_op_parses() {
        assert_eq!(
            parse_ws(r#"{"op":"regport","id":1,"ports":["a","b"],"subscribe":true}"#),
            Ok((
                1,
                Request::RegPort {
                    ports: vec![s("a"), s("b")],
                    subscribe: true
                }
            ))
        );
        assert_eq!(
            parse_ws(r#"{"op":"regport","id":1,"ports":[]}"#),
            Ok((
                1,
                Request::RegPort {
                    ports: vec![],
                    subscribe: false
                }
            ))
        );
        assert_eq!(
            parse_ws(r#"{"op":"unregport","id":2,"ports":["a"]}"#),
            Ok((
                2,
                Request::UnRegPort {
                    ports: vec![s("a")]
                }
            ))
        );
        assert_eq!(
            parse_ws(r#"{"op":"queryport","id":3,"ports":["a"]}"#),
            Ok((
                3,
                Request::QueryPort {
                    ports: vec![s("a")]
                }
            ))
        );
        assert_eq!(
            parse_ws(r#"{"op":"querynode","id":4,"nodes":["n"]}"#),
            Ok((
                4,
                Request::QueryNode {
                    nodes: vec![s("n")]
                }
            ))
        );
        assert_eq!(
            parse_ws(r#"{"op":"relet","id":5}"#),
            Ok((5, Request::Relet))
        );
        assert_eq!(
            parse_ws(
                r#"{"op":"sendmsg","id":6,"messages":[{"port":"p","body":"x"},{"ports":["a","b"],"body":""},{"port":null,"ports":["c"],"body":"y"}]}"#
            ),
            Ok((
                6,
                Request::SendMsg {
                    messages: vec![
                        Message {
                            port: Some(s("p")),
                            ports: None,
                            body: s("x"),
                            escaping: Escaping::Plain,
                        },
                        Message {
                            port: None,
                            ports: Some(vec![s("a"), s("b")]),
                            body: s(""),
                            escaping: Escaping::Scan,
                        },
                        Message {
                            port: None,
                            ports: Some(vec![s("c")]),
                            body: s("y"),
                            escaping: Escaping::Scan,
                        },
                    ]
                }
            ))
        );
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let text = r#"{"op":"sendmsg","id":1,"messages":[{"port":"p","body":"plain"},{"port":"q\u00e9","body":"a\"b\nc"}]}"#;
        let Ok((_, Request::SendMsg { messages })) = parse_ws(text) else {
            panic!("parses")
        };
        assert!(matches!(messages[0].body, Cow::Borrowed("plain")));
        assert!(matches!(messages[0].port, Some(Cow::Borrowed("p"))));
        assert!(matches!(&messages[1].body, Cow::Owned(b) if b == "a\"b\nc"));
        assert!(matches!(&messages[1].port, Some(Cow::Owned(p)) if p == "qé"));
    }

    #[test]
    fn op_may_come_last_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse_ws(
                r#" { "x" : {"deep":[1,2,{"y":null}]}, "ports" : ["a"], "id" : 9, "subscribe":false, "op" : "regport" } "#
            ),
            Ok((
                9,
                Request::RegPort {
                    ports: vec![s("a")],
                    subscribe: false
                }
            ))
        );
        // A field of another op is an unknown field, whatever its type.
        assert_eq!(
            parse_ws(r#"{"ports":5,"op":"relet","id":1}"#),
            Ok((1, Request::Relet))
        );
        assert_eq!(
            parse_ws(r#"{"op":"relet","id":1,"messages":"x"}"#),
            Ok((1, Request::Relet))
        );
        // Escaped keys are keys.
        assert_eq!(
            parse_ws(r#"{"\u006fp":"relet","i\u0064":2}"#),
            Ok((2, Request::Relet))
        );
    }

    #[test]
    fn missing_and_duplicate_fields_are_named() {
        assert!(err(r#"{"id":1}"#).contains("missing field `op`"));
        assert!(err(r#"{"op":"relet"}"#).contains("missing field `id`"));
        assert!(err(r#"{"op":"regport","id":1}"#).contains("missing field `ports`"));
        assert!(err(r#"{"op":"sendmsg","id":1}"#).contains("missing field `messages`"));
        assert!(err(r#"{"op":"querynode","id":1,"ports":[]}"#).contains("missing field `nodes`"));
        assert!(err(r#"{"op":"sendmsg","id":1,"messages":[{"port":"p"}]}"#)
            .contains("missing field `body`"));
        assert!(err(r#"{"op":"relet","op":"relet","id":1}"#).contains("duplicate field `op`"));
        assert!(err(r#"{"op":"relet","id":1,"id":1}"#).contains("duplicate field `id`"));
        assert!(err(r#"{"op":"regport","id":1,"ports":[],"ports":[]}"#)
            .contains("duplicate field `ports`"));
        assert!(err(r#"{"ports":[],"op":"regport","id":1,"ports":[]}"#)
            .contains("duplicate field `ports`"));
        assert!(
            err(r#"{"op":"sendmsg","id":1,"messages":[{"port":"p","body":"a","body":"b"}]}"#)
                .contains("duplicate field `body`")
        );
    }

    #[test]
    fn wrong_types_and_unknown_ops_are_rejected_clearly() {
        assert_eq!(
            err(r#"{"op":"explode","id":8}"#),
            "field `op`: unknown op `explode`, expected one of `regport`, `unregport`, `sendmsg`, `queryport`, `querynode`, `relet` at line 1 column 7"
        );
        assert_eq!(
            err(r#"{"op":"regport","id":1,"ports":"a"}"#),
            "field `ports`: expected an array, found a string at line 1 column 32"
        );
        assert!(err(r#"{"op":"regport","id":1,"ports":[1]}"#)
            .contains("field `ports`: expected a string, found a number"));
        assert!(
            err(r#"{"op":"regport","id":1,"ports":[],"subscribe":"yes"}"#)
                .contains("field `subscribe`: expected a boolean, found a string")
        );
        assert!(
            err(r#"{"op":"relet","id":-1}"#).contains("field `id`: expected an unsigned integer")
        );
        assert!(err(r#"{"op":"relet","id":1.0}"#).contains("field `id`"));
        assert!(err(r#"{"op":"relet","id":"1"}"#).contains("field `id`"));
        assert!(err(r#"{"op":"relet","id":184467440737095516160}"#).contains("out of range"));
        assert!(
            err(r#"{"op":"sendmsg","id":1,"messages":[{"port":"p","body":7}]}"#)
                .contains("field `body`: expected a string, found a number")
        );
        assert!(err(r#"[1]"#).contains("expected an object, found an array"));
        assert!(err(r#"{"op":"relet","id":1} x"#).contains("trailing characters"));
        assert!(err(r#"{"ports":[1],"op":"regport","id":1}"#).contains("expected a string"));
    }

    #[test]
    fn truncated_input_is_an_error_at_every_cut() {
        let text = r#"{"op":"sendmsg","id":12,"messages":[{"port":"p\u00e9","body":"x\"y"},{"ports":["a"],"body":"z"}]}"#;
        assert!(parse_ws(text).is_ok());
        for cut in 0..text.len() {
            assert!(parse_ws(&text[..cut]).is_err(), "{}", &text[..cut]);
        }
    }

    #[test]
    fn ws_id_recovers_the_id_of_a_request_that_fails() {
        assert_eq!(ws_id(r#"{"op":"explode","id":8}"#), 8);
        assert_eq!(ws_id(r#"{"op":"regport","ports":"x","id":3}"#), 3);
        assert_eq!(ws_id(r#"{"op":"regport","id":3"#), 0);
        assert_eq!(ws_id(r#"{"id":3,"id":4}"#), 0);
        assert_eq!(ws_id(r#"{"id":"3"}"#), 0);
    }

    #[test]
    fn rest_bodies_use_the_same_fields_without_op_and_id() {
        assert_eq!(
            parse_body(Op::RegPort, r#"{"ports":["a"],"op":"ignored","id":"x"}"#),
            Ok(Request::RegPort {
                ports: vec![s("a")],
                subscribe: false
            })
        );
        assert_eq!(
            parse_body(Op::SendMsg, r#"{"messages":[]}"#),
            Ok(Request::SendMsg { messages: vec![] })
        );
        assert!(parse_body(Op::QueryNode, "{not json")
            .unwrap_err()
            .to_string()
            .contains("expected a string key"));
        assert!(parse_body(Op::QueryPort, "")
            .unwrap_err()
            .to_string()
            .contains("expected an object, found the end of the input"));
    }

    mod against_serde {
        //! The serde types of `api` describe the API; the parser must read what they write,
        //! in any key order, and refuse what they refuse.
        use super::*;
        use crate::api::{
            MessageBody, PortsRequest, QueryNodeRequest, RegPortRequest, SendMsgRequest, WsRequest,
        };
        use crate::fuzzing::to_serde;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // Plain ASCII most of the time; quotes, backslashes, controls and non-ASCII too.
            prop_oneof![
                4 => "[a-z0-9:._-]{0,12}",
                1 => "[\"\\\\\u{0}-\u{1f}é✓😀 a/]{0,6}",
                1 => any::<String>(),
            ]
        }

        fn ports() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec(text(), 0..4)
        }

        fn message() -> impl Strategy<Value = MessageBody> {
            (prop::option::of(text()), prop::option::of(ports()), text())
                .prop_map(|(port, ports, body)| MessageBody { port, ports, body })
        }

        fn ws_request() -> impl Strategy<Value = WsRequest> {
            let id = any::<u64>();
            prop_oneof![
                (id, ports(), any::<bool>()).prop_map(|(id, ports, subscribe)| {
                    WsRequest::Regport {
                        id,
                        body: RegPortRequest { ports, subscribe },
                    }
                }),
                (id, ports()).prop_map(|(id, ports)| WsRequest::Unregport {
                    id,
                    body: PortsRequest { ports }
                }),
                (id, ports()).prop_map(|(id, ports)| WsRequest::Queryport {
                    id,
                    body: PortsRequest { ports }
                }),
                (id, ports()).prop_map(|(id, nodes)| WsRequest::Querynode {
                    id,
                    body: QueryNodeRequest { nodes }
                }),
                (id, prop::collection::vec(message(), 0..4)).prop_map(|(id, messages)| {
                    WsRequest::Sendmsg {
                        id,
                        body: SendMsgRequest { messages },
                    }
                }),
                id.prop_map(|id| WsRequest::Relet { id }),
            ]
        }

        proptest! {
            #[test]
            fn reads_what_serde_writes_in_any_key_order(req in ws_request(), pretty in any::<bool>()) {
                // serde writes `op` first; through a `Value` the keys come out sorted, so `op`
                // follows `id`, `messages` and `nodes` and precedes `ports` and `subscribe`.
                let texts = [
                    serde_json::to_string(&req).unwrap(),
                    if pretty {
                        serde_json::to_string_pretty(&serde_json::to_value(&req).unwrap()).unwrap()
                    } else {
                        serde_json::to_value(&req).unwrap().to_string()
                    },
                ];
                for text in texts {
                    let (id, parsed) = parse_ws(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    prop_assert_eq!(to_serde(id, parsed), req.clone(), "{}", text);
                }
            }

            #[test]
            fn refuses_what_serde_refuses(req in ws_request(), cut in any::<prop::sample::Index>(), junk in "[\\[\\]{}\",:0-9a-z\\\\ -]{1,3}") {
                let text = serde_json::to_string(&req).unwrap();
                // Truncate at a char boundary, or splice junk in.
                let mut at = cut.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                for mangled in [text[..at].to_string(), format!("{}{junk}{}", &text[..at], &text[at..])] {
                    let serde = serde_json::from_str::<WsRequest>(&mangled);
                    let ours = parse_ws(&mangled);
                    prop_assert_eq!(
                        serde.is_ok(),
                        ours.is_ok(),
                        "{}: serde {:?}, ours {:?}",
                        mangled,
                        serde.as_ref().err().map(ToString::to_string),
                        ours.as_ref().err().map(ToString::to_string)
                    );
                    if let (Ok(a), Ok((id, b))) = (serde, ours) {
                        prop_assert_eq!(a, to_serde(id, b));
                    }
                }
            }
        }
    }
}
