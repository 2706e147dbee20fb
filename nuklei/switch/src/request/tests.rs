//! The request parser specified by example, and checked against the serde types of `api`.

use super::*;

fn s(v: &str) -> Str<'_> {
    Cow::Borrowed(v)
}

fn err(text: &str) -> String {
    ws(text).unwrap_err().to_string()
}

fn ws(text: &str) -> Result<(u64, Request<'_>), JsonError> {
    parse_ws(text).map(|(id, p)| (id, p.request))
}

fn body(op: Op, text: &str) -> Result<Request<'_>, JsonError> {
    parse_body(op, text).map(|p| p.request)
}

#[test]
fn an_owned_regport_reads_its_names_and_fields_wherever_they_are() {
    let owned = |text| parse_ws_owned(text).map(|(id, p)| (id, p.request));
    let names = |v: &[&str]| v.iter().collect::<PortNames>();
    assert_eq!(
        owned(r#"{"ports":["a","b\u0063"],"if_owner":"n","op":"regport","subscribe":true,"id":4}"#),
        Ok((
            4,
            Request::RegNames {
                ports: names(&["a", "bc"]),
                subscribe: true,
                if_owner: Some(Some(s("n"))),
            }
        ))
    );
    assert_eq!(
        owned(r#"{"op":"regport","id":5,"ports":[],"if_owner":null}"#),
        Ok((
            5,
            Request::RegNames {
                ports: names(&[]),
                subscribe: false,
                if_owner: Some(None),
            }
        ))
    );
    // A thousand names, sized from the first: all there, in order.
    let many: Vec<String> = (0..1000)
        .map(|i| format!("p{}", "x".repeat(i % 37)))
        .collect();
    let text = format!(
        r#"{{"op":"regport","id":6,"ports":{}}}"#,
        serde_json::to_string(&many).unwrap()
    );
    match owned(&text) {
        Ok((6, Request::RegNames { ports, .. })) => {
            assert!(ports.iter().eq(many.iter().map(String::as_str)));
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        r#"{"op":"regport","id":7}"#,
        r#"{"op":"regport","id":7,"ports":["a",1]}"#,
        r#"{"op":"regport","id":7,"ports":["a"],"ports":["b"]}"#,
        r#"{"op":"regport","id":7,"ports":["a"}"#,
    ] {
        let (Err(a), Err(b)) = (owned(bad), ws(bad)) else {
            panic!("{bad} parsed");
        };
        assert_eq!(a.to_string(), b.to_string(), "{bad}");
    }
}

#[test]
fn every_op_parses() {
    assert_eq!(
        ws(r#"{"op":"regport","id":1,"ports":["a","b"],"subscribe":true}"#),
        Ok((
            1,
            Request::RegPort {
                ports: vec![s("a"), s("b")],
                subscribe: true,
                if_owner: None,
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"regport","id":1,"ports":[]}"#),
        Ok((
            1,
            Request::RegPort {
                ports: vec![],
                subscribe: false,
                if_owner: None,
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"unregport","id":2,"ports":["a"]}"#),
        Ok((
            2,
            Request::UnRegPort {
                ports: vec![s("a")]
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"queryport","id":3,"ports":["a"]}"#),
        Ok((
            3,
            Request::QueryPort {
                ports: vec![s("a")]
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"querynode","id":4,"nodes":["n"]}"#),
        Ok((
            4,
            Request::QueryNode {
                nodes: vec![s("n")]
            }
        ))
    );
    assert_eq!(ws(r#"{"op":"relet","id":5}"#), Ok((5, Request::Relet)));
    assert_eq!(
        ws(
            r#"{"op":"sendmsg","id":6,"messages":[{"port":"p","body":"x"},{"ports":["a","b"],"body":""},{"port":null,"ports":["c"],"body":"y"}]}"#
        ),
        Ok((
            6,
            Request::SendMsg {
                ack: false,
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
    let Ok((_, Request::SendMsg { messages, .. })) = ws(text) else {
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
        ws(
            r#" { "x" : {"deep":[1,2,{"y":null}]}, "ports" : ["a"], "id" : 9, "subscribe":false, "op" : "regport" } "#
        ),
        Ok((
            9,
            Request::RegPort {
                ports: vec![s("a")],
                subscribe: false,
                if_owner: None,
            }
        ))
    );
    // A field of another op is an unknown field, whatever its type.
    assert_eq!(
        ws(r#"{"ports":5,"op":"relet","id":1}"#),
        Ok((1, Request::Relet))
    );
    assert_eq!(
        ws(r#"{"op":"relet","id":1,"messages":"x"}"#),
        Ok((1, Request::Relet))
    );
    // Escaped keys are keys.
    assert_eq!(
        ws(r#"{"\u006fp":"relet","i\u0064":2}"#),
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
    assert!(
        err(r#"{"op":"regport","id":1,"ports":[],"ports":[]}"#).contains("duplicate field `ports`")
    );
    assert!(
        err(r#"{"ports":[],"op":"regport","id":1,"ports":[]}"#).contains("duplicate field `ports`")
    );
    assert!(
        err(r#"{"op":"sendmsg","id":1,"messages":[{"port":"p","body":"a","body":"b"}]}"#)
            .contains("duplicate field `body`")
    );
}

#[test]
fn wrong_types_and_unknown_ops_are_rejected_clearly() {
    assert_eq!(
        err(r#"{"op":"explode","id":8}"#),
        "field `op`: unknown op `explode`, expected one of `regport`, `unregport`, `sendmsg`, `queryport`, `querynode`, `relet`, `watch`, `unwatch`, `listports`, `listnodes`, `nodeports`, `handover`, `ack` at line 1 column 7"
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
    assert!(err(r#"{"op":"relet","id":-1}"#).contains("field `id`: expected an unsigned integer"));
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
    assert!(ws(text).is_ok());
    for cut in 0..text.len() {
        assert!(ws(&text[..cut]).is_err(), "{}", &text[..cut]);
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
fn coordination_ops_parse() {
    use crate::watch::WatchKind;
    let (id, p) =
        parse_ws(r#"{"op":"watch","id":7,"ports":"user:","prefix":true,"from":[3,4],"session":9}"#)
            .unwrap();
    assert_eq!(id, 7);
    assert_eq!(p.session, Some(9));
    assert_eq!(
        p.request,
        Request::Watch(WatchSpec {
            watch: None,
            kind: WatchKind::Ports,
            key: s("user:"),
            prefix: true,
            from: Some(vec![3, 4]),
        })
    );
    assert!(err(r#"{"op":"watch","id":1,"ports":"a","nodes":"b"}"#).contains("exactly one"));
    assert!(err(r#"{"op":"watch","id":1}"#).contains("exactly one"));
    assert_eq!(
        ws(r#"{"op":"unwatch","id":2,"watch":7}"#),
        Ok((2, Request::Unwatch { watch: 7 }))
    );
    assert_eq!(
        ws(r#"{"op":"listports","id":3,"prefix":"u","after":"u1","limit":10}"#),
        Ok((
            3,
            Request::ListPorts(Page {
                prefix: s("u"),
                after: Some(s("u1")),
                limit: Some(10)
            })
        ))
    );
    assert_eq!(
        ws(r#"{"op":"listnodes","id":4}"#),
        Ok((4, Request::ListNodes(Page::default())))
    );
    assert_eq!(
        ws(r#"{"op":"nodeports","id":5,"node":"a","after":null}"#),
        Ok((
            5,
            Request::NodePorts {
                node: s("a"),
                page: Page::default()
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"handover","id":6,"to":"b","ports":["p"]}"#),
        Ok((
            6,
            Request::Handover {
                to: s("b"),
                ports: vec![s("p")]
            }
        ))
    );
    assert_eq!(
        ws(r#"{"op":"ack","id":8,"upto":17}"#),
        Ok((8, Request::Ack { upto: 17 }))
    );
    assert_eq!(
        ws(r#"{"op":"regport","id":9,"ports":["p"],"if_owner":null}"#),
        Ok((
            9,
            Request::RegPort {
                ports: vec![s("p")],
                subscribe: false,
                if_owner: Some(None)
            }
        ))
    );
    assert_eq!(
        body(Op::SendMsg, r#"{"messages":[],"ack":true}"#),
        Ok(Request::SendMsg {
            messages: vec![],
            ack: true
        })
    );
    // A session is read for node-scoped ops only.
    assert_eq!(
        parse_body(Op::SendMsg, r#"{"messages":[],"session":3}"#)
            .unwrap()
            .session,
        None
    );
    assert_eq!(
        parse_body(Op::Relet, r#"{"session":3}"#).unwrap().session,
        Some(3)
    );
}

#[test]
fn rest_bodies_use_the_same_fields_without_op_and_id() {
    assert_eq!(
        body(Op::RegPort, r#"{"ports":["a"],"op":"ignored","id":"x"}"#),
        Ok(Request::RegPort {
            ports: vec![s("a")],
            subscribe: false,
            if_owner: None,
        })
    );
    assert_eq!(
        body(Op::SendMsg, r#"{"messages":[]}"#),
        Ok(Request::SendMsg {
            messages: vec![],
            ack: false
        })
    );
    assert!(body(Op::QueryNode, "{not json")
        .unwrap_err()
        .to_string()
        .contains("expected a string key"));
    assert!(body(Op::QueryPort, "")
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
    use proptest::prelude::*;

    /// The parse result in the serde type's terms (only the classic ops are generated).
    fn to_serde(id: u64, req: Request<'_>) -> WsRequest {
        crate::fuzzing::to_serde(id, req).expect("a classic op")
    }

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
                let (id, parsed) = ws(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
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
                let ours = ws(&mangled);
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

    proptest! {
        #[test]
        fn an_owned_parse_reads_the_batch_the_parsed_messages_make(
            req in ws_request(),
            cut in any::<prop::sample::Index>(),
            junk in "[\\[\\]{}\",:0-9a-z\\\\ -]{1,3}",
            plain in any::<bool>(),
        ) {
            // As serde writes it, or (a SendMsg) in the template's shape, the usual one.
            let mut text = serde_json::to_string(&req).unwrap();
            if let (true, WsRequest::Sendmsg { id, body }) = (plain, &req) {
                let list: Vec<String> = body
                    .messages
                    .iter()
                    .map(|m| format!(r#"{{"port":"{}","body":"{}"}}"#, m.port.as_deref().unwrap_or("p"), m.body))
                    .filter(|m| !m.contains('\\'))
                    .collect();
                text = format!(r#"{{"op":"sendmsg","id":{id},"messages":[{}]}}"#, list.join(","));
            }
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            for t in [text.clone(), text[..at].to_string(), format!("{}{junk}{}", &text[..at], &text[at..])] {
                match (parse_ws(&t), parse_ws_owned(&t)) {
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string(), "{}", t),
                    (Ok((ia, a)), Ok((ib, b))) => {
                        prop_assert_eq!(ia, ib);
                        prop_assert_eq!(a.session, b.session);
                        match (a.request, b.request) {
                            (
                                Request::SendMsg { messages, ack },
                                Request::SendBatch { batch, targeted, ack: owned_ack },
                            ) => {
                                prop_assert_eq!(ack, owned_ack);
                                let all = messages.iter().all(|m| m.targets().is_some());
                                prop_assert_eq!(targeted, all, "{}", t);
                                if all {
                                    let mut want = SendBatch::default();
                                    for m in &messages {
                                        match m.targets().unwrap_or_default() {
                                            [one] => want.push_one(one, &m.body, m.escaping),
                                            ts => want.push_as(ts.iter().map(|x| x.as_ref()), &m.body, m.escaping),
                                        }
                                    }
                                    prop_assert_eq!(batch, want, "{}", t);
                                }
                            }
                            (
                                Request::RegPort { ports, subscribe, if_owner },
                                Request::RegNames { ports: names, subscribe: owned_subscribe, if_owner: owned_if_owner },
                            ) => {
                                prop_assert_eq!(subscribe, owned_subscribe);
                                prop_assert_eq!(if_owner, owned_if_owner);
                                let want: PortNames = ports.iter().collect();
                                prop_assert_eq!(names.iter().collect::<Vec<_>>(), ports.iter().map(|p| p.as_ref()).collect::<Vec<_>>(), "{}", t);
                                prop_assert_eq!(names, want, "{}", t);
                            }
                            (a, b) => prop_assert_eq!(a, b, "{}", t),
                        }
                    }
                    (a, b) => prop_assert!(false, "{}: {:?} / {:?}", t, a.map(|p| p.0), b.map(|p| p.0)),
                }
            }
        }
    }
}
