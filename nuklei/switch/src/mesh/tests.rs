//! Round trips and corrupt input of the mesh encoding.

use super::codec::RESOLVE;
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
            ports: vec![(9, "x")],
        },
        Msg::Resolved {
            op: 3,
            owners: vec![(
                9,
                NodeRef {
                    home: 1,
                    idx: 4,
                    session: 11,
                },
            )],
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
            ],
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

/// The body of a Resolve record of one port named `name` (as raw bytes).
fn resolve_of(name: &[u8]) -> Vec<u8> {
    let mut body = (name.len() as u32).to_le_bytes().to_vec();
    body.push(RESOLVE);
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(&(name.len() as u32).to_le_bytes());
    body.extend_from_slice(name);
    body
}

#[test]
fn strings_travel_in_one_text_block_after_the_fields() {
    let msg = Msg::Resolve {
        op: 7,
        ports: vec![(3, "pé"), (4, "q")],
    };
    let mut bytes = Vec::new();
    msg.encode(&mut bytes);
    let body = &bytes[4..];
    let text_len = u32::from_le_bytes(body[..TEXT_LEN_BYTES].try_into().unwrap()) as usize;
    assert_eq!(&body[body.len() - text_len..], "péq".as_bytes());
    assert_eq!(Msg::decode(body), Ok(msg));
    assert_eq!(
        Msg::decode(&resolve_of(b"ab")),
        Ok(Msg::Resolve {
            op: 7,
            ports: vec![(3, "ab")]
        })
    );
}

#[test]
fn a_text_block_that_is_not_utf8_or_a_length_that_cuts_a_character_is_an_error() {
    assert_eq!(Msg::decode(&resolve_of(b"a\xff")), Err(MeshError::Utf8));
    // "é" is two bytes; a length of 1 ends the string inside it.
    let mut cut = resolve_of("é".as_bytes());
    let len_at = cut.len() - 2 - 4;
    cut[len_at..len_at + 4].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(Msg::decode(&cut), Err(MeshError::Utf8));
}
