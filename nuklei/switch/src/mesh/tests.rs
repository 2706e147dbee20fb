//! Round trips and corrupt input of the mesh encoding.

use super::codec::{QUERY_PORTS, RESOLVE, RESOLVED};
use super::fields::TEXT_LEN_BYTES;
use super::*;

fn owner(n: &str) -> OwnerInfo<'_> {
    OwnerInfo {
        node: n,
        session: 7,
        address: "addr:1",
    }
}

fn all() -> Vec<Msg<'static>> {
    vec![
        Msg::Register {
            op: 1,
            node: "n",
            at_home: NodeRef {
                home: 2,
                idx: 9,
                session: 3,
            },
            address: "a:1",
            subscribe: true,
            if_owner: Some(Some("o")),
            ports: vec![(0, "p"), (5, "ü")],
        },
        Msg::Registered {
            op: 1,
            new: vec![0],
            failed: vec![(5, owner("m"))],
            full: false,
        },
        Msg::Unregister {
            op: 0,
            node: "n",
            ports: vec![(1, "q")],
        },
        Msg::Unregistered {
            op: 2,
            released: vec![1],
            not_owned: vec![],
            unknown: vec![2, 3],
        },
        Msg::Resolve {
            op: 3,
            ports: vec!["x", "ü"],
        },
        Msg::Resolved {
            op: 3,
            runs: vec![
                (
                    Some(NodeRef {
                        home: 1,
                        idx: 4,
                        session: 11,
                    }),
                    1,
                ),
                (None, 2),
            ],
        },
        Msg::Owners {
            op: 3,
            owners: vec![(9, owner("o"))],
        },
        Msg::Deliver {
            op: 4,
            ack: true,
            items: vec![
                Item::Unicast {
                    node: 4,
                    session: 3,
                    port: "p",
                    body: "hello",
                    escaping: Escaping::Scan,
                },
                Item::Unicast {
                    node: 5,
                    session: 3,
                    port: "p",
                    body: "plain",
                    escaping: Escaping::Plain,
                },
                Item::Broadcast { body: "all" },
                Item::Moved {
                    node: 2,
                    session: 8,
                    port: "q",
                    to: "n",
                    seq: 77,
                },
                Item::Released {
                    node: 5,
                    session: 9,
                    port: "p",
                    reason: ReleaseReason::Replaced,
                },
            ]
            .into(),
        },
        Msg::Delivered {
            op: 4,
            delivered: 2,
            dropped: 1,
        },
        Msg::NodeGone {
            node: "n",
            session: 3,
            reason: ReleaseReason::NodeOffline,
        },
        Msg::QueryPorts {
            op: 5,
            ports: vec![(0, "p")],
        },
        Msg::QueryNodes {
            op: 6,
            nodes: vec![(0, "n")],
        },
        Msg::QueryCounters { op: 7 },
        Msg::Acked {
            op: 4,
            acknowledged: 3,
            unacknowledged: 1,
        },
        Msg::HandoverTo {
            op: 9,
            from: "a",
            to: "b",
            ports: vec![(0, "p")],
        },
        Msg::Move {
            op: 10,
            from: "a",
            to: NodeRef {
                home: 1,
                idx: 2,
                session: 3,
            },
            to_id: "b",
            to_address: "",
            ports: vec![(0, "p"), (1, "q")],
        },
        Msg::Moved {
            op: 10,
            moved: vec![(0, 88)],
            not_owned: vec![1],
            unknown: vec![],
            error: Some("offline"),
        },
        Msg::ListPorts {
            op: 11,
            prefix: "user:",
            after: Some("user:7"),
            limit: 100,
        },
        Msg::PortsListed {
            op: 11,
            ports: vec![("user:8", "a", "a:1")],
            full: true,
        },
        Msg::ListNodes {
            op: 12,
            prefix: "",
            after: None,
            limit: 5,
        },
        Msg::NodesListed {
            op: 12,
            nodes: vec![(
                "a",
                HomeInfo {
                    address: "",
                    ports: 2,
                    lease_deadline: 9,
                    queued_bytes: 0,
                },
            )],
            full: false,
        },
        Msg::NodePorts {
            op: 13,
            node: "a",
            start: Some("p"),
            limit: 10,
        },
        Msg::NodePortsListed {
            op: 13,
            ports: vec!["p", "q"],
            next: None,
            restarted: true,
        },
        Msg::Counters {
            op: 7,
            values: vec![1, 2, 3],
        },
        Msg::WatchStart {
            op: 8,
            watch: WatchRef {
                node: 3,
                session: 99,
                id: 4,
            },
            kind: WatchKind::Nodes,
            key: "n",
            prefix: true,
            from: Some(17),
        },
        Msg::WatchReady {
            op: 8,
            watch: WatchRef {
                node: 3,
                session: 99,
                id: 4,
            },
            position: 20,
            ahead: false,
            missed: Some((18, 18)),
            events: vec![
                (19, Event::moved("p", "b", "b:1", "a")),
                (20, Event::released("p", "b", ReleaseReason::Replaced)),
            ],
        },
        Msg::WatchStop {
            kind: WatchKind::Ports,
            key: "user:",
            prefix: true,
        },
        Msg::Event {
            seq: 21,
            event: Event::node(What::Online, "n1", "h:1"),
        },
        Msg::NodeInfos {
            op: 6,
            infos: vec![(
                0,
                HomeInfo {
                    address: "a:1",
                    ports: 4,
                    lease_deadline: 10_000,
                    queued_bytes: 12,
                },
            )],
        },
    ]
}

#[test]
fn every_message_survives_a_round_trip_split_at_every_byte() {
    let msgs = all();
    let mut stream = Vec::new();
    for m in &msgs {
        m.encode(&mut stream);
    }
    let want: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
    for cut in 0..=stream.len() {
        let mut reader = MeshReader::default();
        let mut got = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            reader.feed(part, |body| {
                got.push(format!("{:?}", Msg::decode(body).unwrap()))
            });
        }
        assert_eq!(got, want, "split at {cut}");
        assert_eq!(reader.pending(), 0);
    }
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    for m in all() {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        let body = &bytes[4..];
        for end in 0..body.len() {
            assert!(Msg::decode(&body[..end]).is_err(), "{m:?} cut at {end}");
        }
    }
    assert_eq!(
        Msg::decode(&[0, 0, 0, 0, 200]),
        Err(MeshError::UnknownTag(200))
    );
    // A count larger than the record cannot make the decoder reserve memory.
    let mut huge = vec![0, 0, 0, 0, RESOLVE];
    huge.extend_from_slice(&1u64.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(Msg::decode(&huge), Err(MeshError::Truncated(_))));
}

/// The body of a QueryPorts record of one port named `name` at position 3 (as raw bytes).
fn query_ports_of(name: &[u8]) -> Vec<u8> {
    let mut body = (name.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(name);
    body.push(QUERY_PORTS);
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(&(name.len() as u32).to_le_bytes());
    body
}

/// The body of a Resolve record of one port named `name` (as raw bytes): no position.
fn resolve_of(name: &[u8]) -> Vec<u8> {
    let mut body = (name.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(name);
    body.push(RESOLVE);
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&(name.len() as u32).to_le_bytes());
    body
}

#[test]
fn strings_travel_in_one_text_block_before_the_fields() {
    let msg = Msg::QueryPorts {
        op: 7,
        ports: vec![(3, "pé"), (4, "q")],
    };
    let mut bytes = Vec::new();
    msg.encode(&mut bytes);
    let body = &bytes[4..];
    let text_len = u32::from_le_bytes(body[..TEXT_LEN_BYTES].try_into().unwrap()) as usize;
    assert_eq!(
        &body[TEXT_LEN_BYTES..TEXT_LEN_BYTES + text_len],
        "péq".as_bytes()
    );
    assert_eq!(body[TEXT_LEN_BYTES + text_len], QUERY_PORTS);
    assert_eq!(Msg::decode(body), Ok(msg));
    assert_eq!(
        Msg::decode(&query_ports_of(b"ab")),
        Ok(Msg::QueryPorts {
            op: 7,
            ports: vec![(3, "ab")]
        })
    );
    assert_eq!(
        Msg::decode(&resolve_of(b"ab")),
        Ok(Msg::Resolve {
            op: 7,
            ports: vec!["ab"]
        })
    );
}

#[test]
fn a_text_block_that_is_not_utf8_or_a_length_that_cuts_a_character_is_an_error() {
    for record in [query_ports_of as fn(&[u8]) -> Vec<u8>, resolve_of] {
        assert_eq!(Msg::decode(&record(b"a\xff")), Err(MeshError::Utf8));
        // "é" is two bytes; a length of 1 ends the string inside it.
        let mut cut = record("é".as_bytes());
        let len_at = cut.len() - 4;
        cut[len_at..len_at + 4].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(Msg::decode(&cut), Err(MeshError::Utf8));
    }
}

/// The body of a Deliver record (without its length prefix) of `items`.
fn deliver_body(items: Vec<Item<'_>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    Msg::Deliver {
        op: 1,
        ack: false,
        items: items.into(),
    }
    .encode(&mut bytes);
    bytes.split_off(4)
}

fn unicast<'a>(node: u32, port: &'a str, body: &'a str, escaping: Escaping) -> Item<'a> {
    Item::Unicast {
        node,
        session: 3,
        port,
        body,
        escaping,
    }
}

#[test]
fn unicasts_to_one_node_travel_as_a_run_of_lengths() {
    // Offsets in a Deliver body: text_len 4, the text, then tag 1, op 8, ack 1, entries 4; a
    // run's head is tag 1, node 4, session 8, escaping 1, count 4.
    const TAG_OP_ACK: usize = 1 + 8 + 1;
    const RUN_HEAD: usize = 1 + 4 + 8 + 1 + 4;
    let entries_at = |text: usize| TEXT_LEN_BYTES + text + TAG_OP_ACK;
    let one = deliver_body(vec![unicast(4, "p", "b", Escaping::Plain)]);
    let bodies: Vec<String> = (0..100).map(|i| format!("body {i}")).collect();
    let many: Vec<Item<'_>> = bodies
        .iter()
        .map(|b| unicast(4, "p", b, Escaping::Plain))
        .collect();
    let text: usize = bodies.iter().map(|b| 1 + b.len()).sum();
    let body = deliver_body(many.clone());
    assert_eq!(body[entries_at(text)..][..4], 1u32.to_le_bytes());
    assert_eq!(body.len(), entries_at(text) + 4 + RUN_HEAD + 100 * 8);
    assert_eq!(one.len(), entries_at(2) + 4 + RUN_HEAD + 8);
    let Ok(Msg::Deliver { items, .. }) = Msg::decode(&body) else {
        panic!("a Deliver record");
    };
    assert_eq!(items.into_iter().collect::<Vec<_>>(), many);
    // Another node, session or escaping starts another run; other items end one.
    let mixed = vec![
        unicast(4, "p", "1", Escaping::Plain),
        unicast(4, "q", "2", Escaping::Plain),
        unicast(4, "p", "3", Escaping::Scan),
        unicast(5, "p", "4", Escaping::Scan),
        Item::Broadcast { body: "all" },
        unicast(5, "p", "5", Escaping::Scan),
        Item::Unicast {
            node: 5,
            session: 4,
            port: "p",
            body: "6",
            escaping: Escaping::Scan,
        },
    ];
    let body = deliver_body(mixed.clone());
    assert_eq!(body[entries_at(15)..][..4], 6u32.to_le_bytes());
    let decoded = Msg::decode(&body).unwrap();
    let Msg::Deliver { items, .. } = &decoded else {
        panic!("a Deliver record");
    };
    assert_eq!(items.clone().into_iter().collect::<Vec<_>>(), mixed);
    // A decoded record compares, prints and encodes again as its list.
    let list = Msg::Deliver {
        op: 1,
        ack: false,
        items: mixed.into(),
    };
    assert_eq!(decoded, list);
    assert_eq!(format!("{decoded:?}"), format!("{list:?}"));
    let mut again = Vec::new();
    decoded.encode(&mut again);
    assert_eq!(again[4..], body[..]);
}

#[test]
fn a_corrupt_run_refuses_the_whole_record() {
    let body = deliver_body(vec![
        Item::Broadcast { body: "first" },
        unicast(4, "pé", "b", Escaping::Plain),
        unicast(4, "q", "c", Escaping::Plain),
    ]);
    // The run's head follows the broadcast (tag 1, length 4) after the entry count, after the
    // text and its length.
    let entries_at = TEXT_LEN_BYTES + "firstpébqc".len() + 1 + 8 + 1;
    let run = entries_at + 4 + 1 + 4;
    let (escaping_at, count_at, lens_at) = (run + 1 + 4 + 8, run + 1 + 4 + 8 + 1, run + 18);
    assert!(Msg::decode(&body).is_ok());
    let with = |at: usize, bytes: &[u8]| {
        let mut b = body.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        Msg::decode(&b).map(|_| ())
    };
    assert_eq!(with(escaping_at, &[9]), Err(MeshError::UnknownTag(9)));
    // More lengths than the record holds; a count whose lengths' size overflows.
    assert!(matches!(
        with(count_at, &3u32.to_le_bytes()),
        Err(MeshError::Truncated(_))
    ));
    assert!(matches!(
        with(count_at, &u32::MAX.to_le_bytes()),
        Err(MeshError::Truncated(_))
    ));
    // A port length that cuts "é", or runs past the text block.
    assert_eq!(with(lens_at, &2u32.to_le_bytes()), Err(MeshError::Utf8));
    assert!(matches!(
        with(lens_at, &1000u32.to_le_bytes()),
        Err(MeshError::Truncated(_))
    ));
    // An unknown entry tag after a valid run.
    let mut b = body.clone();
    b[entries_at..entries_at + 4].copy_from_slice(&3u32.to_le_bytes());
    b.push(200);
    assert_eq!(Msg::decode(&b), Err(MeshError::UnknownTag(200)));
}

mod items {
    //! The lazy reader of a Deliver record against the list it was encoded from.
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![3 => "[a-z]{0,4}", 1 => "[é✓😀a\"]{0,3}"]
    }

    #[derive(Clone, Debug)]
    enum Spec {
        Unicast(u32, u64, String, String, bool),
        Broadcast(String),
        Moved(u32, u64, String, String, u64),
        Released(u32, u64, String),
    }

    fn spec() -> impl Strategy<Value = Spec> {
        prop_oneof![
            6 => (0..3u32, 0..2u64, text(), text(), any::<bool>())
                .prop_map(|(n, s, p, b, plain)| Spec::Unicast(n, s, p, b, plain)),
            1 => text().prop_map(Spec::Broadcast),
            1 => (0..3u32, 0..2u64, text(), text(), any::<u64>())
                .prop_map(|(n, s, p, t, q)| Spec::Moved(n, s, p, t, q)),
            1 => (0..3u32, 0..2u64, text()).prop_map(|(n, s, p)| Spec::Released(n, s, p)),
        ]
    }

    fn item(s: &Spec) -> Item<'_> {
        match s {
            Spec::Unicast(node, session, port, body, plain) => Item::Unicast {
                node: *node,
                session: *session,
                port,
                body,
                escaping: if *plain {
                    Escaping::Plain
                } else {
                    Escaping::Scan
                },
            },
            Spec::Broadcast(body) => Item::Broadcast { body },
            Spec::Moved(node, session, port, to, seq) => Item::Moved {
                node: *node,
                session: *session,
                port,
                to,
                seq: *seq,
            },
            Spec::Released(node, session, port) => Item::Released {
                node: *node,
                session: *session,
                port,
                reason: ReleaseReason::Unregistered,
            },
        }
    }

    proptest! {
        #[test]
        fn a_deliver_writer_writes_the_bytes_of_the_encoded_list(
            specs in prop::collection::vec(spec(), 0..40),
            op in any::<u64>(),
            ack in any::<bool>(),
            joined in prop::collection::vec(any::<bool>(), 40),
        ) {
            // The writer takes unicasts and broadcasts.
            let items: Vec<Item<'_>> = specs
                .iter()
                .map(item)
                .filter(|i| matches!(i, Item::Unicast { .. } | Item::Broadcast { .. }))
                .collect();
            let mut want = b"before".to_vec();
            Msg::Deliver { op, ack, items: items.clone().into() }.encode(&mut want);
            let mut got = b"before".to_vec();
            let mut w = DeliverWriter::start(&mut got, op, ack, items.len());
            for (k, i) in items.iter().enumerate() {
                match *i {
                    // Its port and body as two strings, or side by side in one (as a
                    // single-target message lies in a `SendBatch`).
                    Item::Unicast { node, session, port, body, escaping } if joined[k] => {
                        let text = format!("{port}{body}");
                        w.unicast_joined(&mut got, node, session, text.as_bytes(), port.len(), escaping);
                    }
                    Item::Unicast { node, session, port, body, escaping } => {
                        w.unicast(&mut got, node, session, port, body, escaping);
                    }
                    Item::Broadcast { body } => w.broadcast(&mut got, body),
                    _ => {}
                }
            }
            w.finish(&mut got);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn read_lazily_they_are_the_items_sent_and_a_cut_record_is_refused(
            specs in prop::collection::vec(spec(), 0..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let items: Vec<Item<'_>> = specs.iter().map(item).collect();
            let body = deliver_body(items.clone());
            let Ok(Msg::Deliver { items: read, .. }) = Msg::decode(&body) else {
                return Err(TestCaseError::fail("not a Deliver record"));
            };
            prop_assert_eq!(read.into_iter().collect::<Vec<_>>(), items);
            let at = cut.index(body.len());
            prop_assert!(Msg::decode(&body[..at]).is_err(), "cut at {}", at);
        }
    }
}

#[test]
fn resolved_owners_travel_as_runs_in_the_order_of_the_resolve() {
    let a = NodeRef {
        home: 1,
        idx: 4,
        session: 11,
    };
    let b = NodeRef { idx: 5, ..a };
    let msg = Msg::Resolved {
        op: 3,
        runs: vec![(Some(a), 100), (None, 1), (Some(b), 1), (Some(a), 1)],
    };
    let mut bytes = Vec::new();
    msg.encode(&mut bytes);
    // text_len 4 (no text), tag 1, op 8, runs 4; 19 bytes per run (owned flag, owner 14,
    // count 4), nothing per port.
    assert_eq!(bytes.len() - 4, 4 + 1 + 8 + 4 + 4 * 19);
    assert_eq!(Msg::decode(&bytes[4..]), Ok(msg));
    // The same bytes from the writer, fed one owner per port.
    let mut written = Vec::new();
    let mut w = ResolvedWriter::start(&mut written, 3);
    for owner in std::iter::repeat_n(Some(a), 100).chain([None, Some(b), Some(a)]) {
        w.owner(&mut written, owner);
    }
    w.finish(&mut written);
    assert_eq!(written, bytes);
    // More runs than the record holds is an error, also when their size overflows; an
    // owned flag other than 0 or 1 is one too.
    let runs_at = 4 + 4 + 1 + 8;
    for runs in [5u32, u32::MAX] {
        let mut bad = bytes.clone();
        bad[runs_at..runs_at + 4].copy_from_slice(&runs.to_le_bytes());
        assert!(matches!(
            Msg::decode(&bad[4..]),
            Err(MeshError::Truncated(_))
        ));
    }
    let mut bad = bytes.clone();
    bad[runs_at + 4] = 2;
    assert_eq!(Msg::decode(&bad[4..]), Err(MeshError::UnknownTag(2)));
    let empty = Msg::Resolved {
        op: 1,
        runs: vec![],
    };
    let mut bytes = Vec::new();
    empty.encode(&mut bytes);
    assert_eq!(Msg::decode(&bytes[4..]), Ok(empty));
    assert_eq!(bytes[4 + 4], RESOLVED);
}

mod resolve {
    //! Resolve (names in the text block, 4 bytes of length each, no positions) and Resolved
    //! (runs of one owner) written as found, against the records encoded from lists.
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![3 => "[a-z0-9:-]{0,17}", 1 => "[é✓😀a\"]{0,4}"]
    }

    fn owner() -> impl Strategy<Value = Option<NodeRef>> {
        prop::option::of(
            (0..3u16, 0..3u32, 0..2u64).prop_map(|(home, idx, session)| NodeRef {
                home,
                idx,
                session,
            }),
        )
    }

    proptest! {
        #[test]
        fn a_resolve_writer_writes_the_record_of_its_ports_which_reads_back_and_a_cut_is_refused(
            names in prop::collection::vec(name(), 0..30),
            op in any::<u64>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let ports: Vec<&str> = names.iter().map(String::as_str).collect();
            let msg = Msg::Resolve { op, ports: ports.clone() };
            let mut want = b"before".to_vec();
            msg.encode(&mut want);
            let mut got = b"before".to_vec();
            let mut w = ResolveWriter::start(&mut got, op, ports.len());
            for p in &ports {
                w.port(&mut got, p);
            }
            w.finish(&mut got);
            prop_assert_eq!(&got, &want);
            let body = &want[6 + 4..];
            prop_assert_eq!(Msg::decode(body), Ok(msg));
            let at = cut.index(body.len());
            prop_assert!(Msg::decode(&body[..at]).is_err(), "cut at {}", at);
        }

        #[test]
        fn a_resolved_writer_writes_runs_of_equal_owners_which_read_back_and_a_cut_is_refused(
            owners in prop::collection::vec(owner(), 0..40),
            op in any::<u64>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut runs: Vec<(Option<NodeRef>, u32)> = Vec::new();
            for o in &owners {
                match runs.last_mut() {
                    Some((last, count)) if last == o => *count += 1,
                    _ => runs.push((*o, 1)),
                }
            }
            let msg = Msg::Resolved { op, runs };
            let mut want = b"before".to_vec();
            msg.encode(&mut want);
            let mut got = b"before".to_vec();
            let mut w = ResolvedWriter::start(&mut got, op);
            for o in &owners {
                w.owner(&mut got, *o);
            }
            w.finish(&mut got);
            prop_assert_eq!(&got, &want);
            let body = &want[6 + 4..];
            prop_assert_eq!(Msg::decode(body), Ok(msg));
            let at = cut.index(body.len());
            prop_assert!(Msg::decode(&body[..at]).is_err(), "cut at {}", at);
        }
    }
}

mod named {
    //! Lists of named positions (Register, Unregister, QueryPorts, QueryNodes): their
    //! fields, `[position:u32][name_len:u32]` per item, are read at once, the names from the
    //! text block.
    use super::*;
    use proptest::prelude::*;

    fn names() -> impl Strategy<Value = Vec<(u32, String)>> {
        let name = prop_oneof![3 => "[a-z0-9:-]{0,17}", 1 => "[é✓😀a\"]{0,4}"];
        prop::collection::vec((any::<u32>(), name), 0..30)
    }

    fn records<'a>(op: u64, node: &'a str, ports: &[(u32, &'a str)]) -> Vec<Msg<'a>> {
        let ports = ports.to_vec();
        vec![
            Msg::QueryPorts {
                op,
                ports: ports.clone(),
            },
            Msg::QueryNodes {
                op,
                nodes: ports.clone(),
            },
            Msg::Unregister {
                op,
                node,
                ports: ports.clone(),
            },
            Msg::Register {
                op,
                node,
                at_home: NodeRef {
                    home: 1,
                    idx: 2,
                    session: 3,
                },
                address: "a:1",
                subscribe: true,
                if_owner: Some(Some("ü")),
                ports,
            },
        ]
    }

    proptest! {
        #[test]
        fn named_lists_survive_a_round_trip_and_a_cut_record_is_refused(
            list in names(),
            op in any::<u64>(),
            node in "[a-zé]{0,5}",
            cut in any::<prop::sample::Index>(),
        ) {
            let ports: Vec<(u32, &str)> = list.iter().map(|(p, n)| (*p, n.as_str())).collect();
            for msg in records(op, &node, &ports) {
                let mut bytes = Vec::new();
                msg.encode(&mut bytes);
                let body = &bytes[4..];
                prop_assert_eq!(Msg::decode(body), Ok(msg.clone()));
                let at = cut.index(body.len());
                prop_assert!(Msg::decode(&body[..at]).is_err(), "{:?} cut at {}", msg, at);
            }
        }

        #[test]
        fn a_name_length_that_cuts_a_character_or_leaves_the_text_is_refused(
            list in names(),
            which in any::<prop::sample::Index>(),
            by in 1..4u32,
        ) {
            // QueryPorts' fields after the text block: tag, op, count, then 8 bytes per item.
            prop_assume!(!list.is_empty());
            let ports: Vec<(u32, &str)> = list.iter().map(|(p, n)| (*p, n.as_str())).collect();
            let mut bytes = Vec::new();
            Msg::QueryPorts { op: 1, ports: ports.clone() }.encode(&mut bytes);
            let text_len: usize = ports.iter().map(|(_, n)| n.len()).sum();
            let k = which.index(ports.len());
            let len_at = 4 + 4 + text_len + 1 + 8 + 4 + k * 8 + 4;
            let name_len = ports[k].1.len() as u32;
            for len in [name_len + by, name_len.saturating_sub(by), u32::MAX] {
                if len == name_len {
                    continue;
                }
                let mut bad = bytes.clone();
                bad[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
                // Where the names' bytes no longer cut the text at characters, or run past
                // it, the record is refused; a length that still cuts at characters moves
                // the names but keeps the record readable, as any UTF-8 slicing would.
                let start: usize = ports[..k].iter().map(|(_, n)| n.len()).sum();
                let end = start as u64 + u64::from(len);
                let text = std::str::from_utf8(&bytes[8..8 + text_len]).unwrap();
                let cuts = end > text_len as u64 || !text.is_char_boundary(end as usize);
                match Msg::decode(&bad[4..]) {
                    Err(MeshError::Utf8) | Err(MeshError::Truncated(_)) => {}
                    Ok(Msg::QueryPorts { ports: got, .. }) => {
                        prop_assert!(!cuts, "a cut at {} was read: {:?}", end, got);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
                if cuts {
                    prop_assert!(Msg::decode(&bad[4..]).is_err(), "a length cutting at {} read", end);
                }
            }
        }
    }
}

mod outbox {
    //! Records written through an [`Outbox`] (a frame lent from a ring, then the overflow)
    //! are the bytes the same writes give in a `Vec`, wherever the frame ends among them,
    //! and read back as the same records.
    use super::*;
    use crate::mesh::{MeshOut, MeshReader, Outbox};
    use proptest::prelude::*;
    use streams::{ring, SharedMapping};

    /// Writes record `k` of a script into `out`: a message of [`all`] through
    /// [`Msg::encode`], or a Resolve, Resolved or Deliver through its writer, of `names`.
    fn write<O: MeshOut>(out: &mut O, k: usize, names: &[String]) {
        let msgs = all();
        let n = msgs.len();
        match k % (n + 3) {
            i if i < n => msgs[i].encode(out),
            i if i == n => {
                let mut w = ResolveWriter::start(out, 7, names.len());
                for name in names {
                    w.port(out, name);
                }
                w.finish(out);
            }
            i if i == n + 1 => {
                let mut w = ResolvedWriter::start(out, 8);
                for j in 0..names.len() {
                    let owner = NodeRef {
                        home: 1,
                        idx: (j / 3) as u32,
                        session: 3,
                    };
                    w.owner(out, (!j.is_multiple_of(4)).then_some(owner));
                }
                w.finish(out);
            }
            _ => {
                let mut w = DeliverWriter::start(out, 9, k.is_multiple_of(2), names.len());
                for (j, name) in names.iter().enumerate() {
                    let joined = format!("{name}{k}");
                    match j % 4 {
                        0 => w.unicast(out, 2, 5, name, "body", Escaping::Plain),
                        1 => {
                            if !w.continue_run(out, joined.as_bytes(), name.len()) {
                                w.broadcast(out, name);
                            }
                        }
                        2 => w.unicast_joined(
                            out,
                            (j % 3) as u32,
                            5,
                            joined.as_bytes(),
                            name.len(),
                            Escaping::Scan,
                        ),
                        _ => w.broadcast(out, name),
                    }
                }
                w.finish(out);
            }
        }
    }

    /// The records in `parts`, read as the peer reads its DATA frames.
    fn records(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut reader = MeshReader::default();
        let mut got = Vec::new();
        for part in parts {
            reader.feed(part, |r| got.push(r.to_vec()));
        }
        assert_eq!(reader.pending(), 0, "no record left incomplete");
        got
    }

    proptest! {
        #[test]
        fn records_written_through_an_outbox_are_those_of_a_vec_across_frame_and_overflow(
            script in prop::collection::vec(0..200usize, 0..12),
            names in prop::collection::vec("[a-z0-9]{0,9}|[é✓😀]{0,3}", 0..20),
            frame in 0..3000usize,
        ) {
            let mut want = Vec::new();
            for &k in &script {
                write(&mut want, k, &names);
            }
            let (mut tx, mut rx) = ring(SharedMapping::anonymous(1 << 16, "outbox").unwrap());
            let mut out = Outbox::default();
            out.lend(tx.lend(1, 0, frame).unwrap()).unwrap();
            for &k in &script {
                write(&mut out, k, &names);
            }
            prop_assert_eq!(out.len(), want.len());
            let (lent, used) = out.take_frame().unwrap();
            prop_assert!(used <= frame);
            tx.give_back(lent, used);
            tx.publish();
            let mut in_frame = Vec::new();
            rx.read(usize::MAX, |_, p| in_frame.extend_from_slice(p));
            prop_assert_eq!(in_frame.len(), used);
            let mut got = in_frame.clone();
            got.extend_from_slice(out.overflow());
            prop_assert_eq!(&got, &want);
            // Read as two DATA frames (the lent one, the overflow), the same records, which
            // decode as those of the `Vec`.
            let read = records(&[&in_frame, out.overflow()]);
            prop_assert_eq!(&read, &records(&[&want]));
            for r in &read {
                prop_assert!(Msg::decode(r).is_ok());
            }
        }
    }
}
