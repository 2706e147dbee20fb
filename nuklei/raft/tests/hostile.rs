//! Hostile peer bytes: every defect is a typed error, never a panic; the member keeps working
//! with its honest peers afterwards. Property tests throw arbitrary bytes and arbitrary
//! (well-encoded) raft messages at a follower and at a master.

mod member;

use member::{frame, message, sent};
use nukleus_raft::eraftpb::{Entry, Message, MessageType};
use nukleus_raft::{wire, Election, ElectionError, MessageError, WireError};
use proptest::prelude::*;

/// Member 1 (the test plays it) sends a heartbeat; the follower must still answer it.
fn still_follows(e: &mut Election, clock: &member::Clock, at: u64) {
    sent(e);
    e.receive(
        clock.at(at),
        1,
        &frame(&message(MessageType::MsgHeartbeat, 1, 2, 3)),
    )
    .expect("an honest heartbeat");
    let answers = sent(e);
    assert!(
        answers
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgHeartbeatResponse && m.to == 1),
        "the follower no longer answers its leader: {answers:?}"
    );
    assert_eq!(e.status(clock.at(at)).failed, None);
}

#[test]
fn each_defect_gets_its_own_error_and_the_member_keeps_working() {
    let (mut e, clock) = member::follower();
    let heartbeat = |f: &dyn Fn(&mut Message)| {
        let mut m = message(MessageType::MsgHeartbeat, 1, 2, 3);
        f(&mut m);
        frame(&m)
    };
    let mut versioned = frame(&message(MessageType::MsgHeartbeat, 1, 2, 3));
    versioned[4] = 9;
    type Case = (&'static str, u64, Vec<u8>, fn(&ElectionError) -> bool);
    let cases: Vec<Case> = vec![
        ("a stranger", 9, vec![0; 8], |e| {
            matches!(e, ElectionError::UnknownPeer(9))
        }),
        ("itself", 2, vec![0; 8], |e| {
            matches!(e, ElectionError::UnknownPeer(2))
        }),
        ("a 4 GiB length", 1, u32::MAX.to_be_bytes().to_vec(), |e| {
            matches!(
                e,
                ElectionError::Wire {
                    source: WireError::TooLong { .. },
                    ..
                }
            )
        }),
        ("another version", 1, versioned, |e| {
            matches!(
                e,
                ElectionError::Wire {
                    source: WireError::Version(9),
                    ..
                }
            )
        }),
        ("an unknown kind", 1, vec![0, 0, 0, 2, 1, 7], |e| {
            matches!(
                e,
                ElectionError::Wire {
                    source: WireError::Kind(7),
                    ..
                }
            )
        }),
        (
            "broken protobuf",
            1,
            vec![0, 0, 0, 5, 1, 2, 0x0a, 0x7f, 1],
            |e| {
                matches!(
                    e,
                    ElectionError::Wire {
                        source: WireError::Protobuf(_),
                        ..
                    }
                )
            },
        ),
        (
            "a hello naming someone else",
            1,
            wire::encode_hello(3),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::SenderMismatch {
                            claimed: 3,
                            link: 1
                        },
                        ..
                    }
                )
            },
        ),
        ("a forged sender", 1, heartbeat(&|m| m.from = 3), |e| {
            matches!(
                e,
                ElectionError::Message {
                    source: MessageError::SenderMismatch { .. },
                    ..
                }
            )
        }),
        (
            "a message for someone else",
            1,
            heartbeat(&|m| m.to = 3),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::NotForUs { to: 3, me: 2 },
                        ..
                    }
                )
            },
        ),
        (
            "an order to campaign now",
            1,
            heartbeat(&|m| m.set_msg_type(MessageType::MsgTimeoutNow)),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Forbidden(MessageType::MsgTimeoutNow),
                        ..
                    }
                )
            },
        ),
        (
            "a local message",
            1,
            heartbeat(&|m| m.set_msg_type(MessageType::MsgHup)),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Forbidden(MessageType::MsgHup),
                        ..
                    }
                )
            },
        ),
        (
            "a forced vote",
            1,
            heartbeat(&|m| {
                m.set_msg_type(MessageType::MsgRequestVote);
                m.term = 4;
                m.context = b"CampaignTransfer".to_vec().into();
            }),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::CampaignTransfer,
                        ..
                    }
                )
            },
        ),
        (
            "a commit beyond the log",
            1,
            heartbeat(&|m| m.commit = 99),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Inconsistent { .. },
                        ..
                    }
                )
            },
        ),
        // Found by the property tests below: raft-rs panicked on these two.
        (
            "an append whose previous entry has term 0 past the log",
            1,
            heartbeat(&|m| {
                m.set_msg_type(MessageType::MsgAppend);
                (m.index, m.commit) = (1, 1);
            }),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Inconsistent { .. },
                        ..
                    }
                )
            },
        ),
        (
            "a snapshot mark of term 0",
            1,
            heartbeat(&|m| {
                m.set_msg_type(MessageType::MsgSnapshot);
                let metadata = m.mut_snapshot().mut_metadata();
                metadata.index = 1;
                metadata.mut_conf_state().voters = vec![1, 2, 3];
            }),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Inconsistent { .. },
                        ..
                    }
                )
            },
        ),
        (
            "a second leader in the same term",
            3,
            heartbeat(&|m| m.from = 3),
            |e| {
                matches!(
                    e,
                    ElectionError::Message {
                        source: MessageError::Inconsistent { .. },
                        ..
                    }
                )
            },
        ),
        ("a term-0 message", 1, heartbeat(&|m| m.term = 0), |e| {
            matches!(
                e,
                ElectionError::Message {
                    source: MessageError::ZeroTerm(_),
                    ..
                }
            )
        }),
    ];
    for (i, (what, peer, bytes, expected)) in cases.into_iter().enumerate() {
        let at = 20 + i as u64 * 10;
        let err = e.receive(clock.at(at), peer, &bytes).expect_err(what);
        assert!(expected(&err), "{what}: {err}");
        assert!(!err.to_string().is_empty());
        still_follows(&mut e, &clock, at + 1);
    }
    assert_eq!(
        e.status(clock.at(500)).leader,
        Some(1),
        "no hostile frame moved leadership"
    );
}

#[test]
fn a_frame_split_anywhere_still_arrives_whole() {
    let (mut e, clock) = member::follower();
    let bytes = frame(&message(MessageType::MsgHeartbeat, 1, 2, 3));
    for split in 1..bytes.len() {
        e.receive(clock.at(20 + split as u64), 1, &bytes[..split])
            .unwrap();
        assert!(sent(&mut e).is_empty(), "answered half a frame");
        e.receive(clock.at(20 + split as u64), 1, &bytes[split..])
            .unwrap();
        assert_eq!(sent(&mut e).len(), 1);
    }
}

const KINDS: [MessageType; 13] = [
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgTransferLeader,
    MessageType::MsgPropose,
];

prop_compose! {
    fn entry()(index in 0u64..8, term in 0u64..6, payload in any::<bool>()) -> Entry {
        let mut e = Entry { index, term, ..Entry::default() };
        if payload {
            e.data = b"x".to_vec().into();
        }
        e
    }
}

prop_compose! {
    /// Messages of every kind with small, colliding field values, so they hit real log
    /// positions and terms of the member under test.
    fn raft_message(me: u64)(
        kind in 0..KINDS.len(),
        from in 1u64..=3,
        to_me in prop::bool::weighted(0.95),
        term in 0u64..6,
        index in 0u64..8,
        log_term in 0u64..6,
        commit in 0u64..8,
        reject in any::<bool>(),
        reject_hint in 0u64..8,
        entries in prop::collection::vec(entry(), 0..4),
        contiguous in any::<bool>(),
        context in prop::collection::vec(any::<u8>(), 0..10),
        snapshot_index in 0u64..8,
        snapshot_term in 0u64..6,
        voters in prop::collection::vec(1u64..=4, 0..4),
    ) -> Message {
        let mut m = message(KINDS[kind], from, if to_me { me } else { 3 }, term);
        m.index = index;
        m.log_term = log_term;
        m.commit = commit;
        m.reject = reject;
        m.reject_hint = reject_hint;
        let mut entries = entries;
        if contiguous {
            for (i, e) in entries.iter_mut().enumerate() {
                e.index = index + 1 + i as u64;
                e.term = e.term.max(log_term).min(term);
                e.data = Default::default();
            }
        }
        m.entries = entries.into();
        m.context = context.into();
        if KINDS[kind] == MessageType::MsgSnapshot {
            let metadata = m.mut_snapshot().mut_metadata();
            metadata.index = snapshot_index;
            metadata.term = snapshot_term;
            metadata.mut_conf_state().voters = voters;
        }
        m
    }
}

fn feed(
    e: &mut Election,
    clock: &member::Clock,
    start: u64,
    messages: &[Message],
) -> Result<(), TestCaseError> {
    for (i, m) in messages.iter().enumerate() {
        let at = clock.at(start + i as u64);
        let link = m.from;
        let result = e.receive(at, link, &frame(m));
        if let Err(
            ElectionError::Failed(reason)
            | ElectionError::State(nukleus_raft::StateError::Corrupt { reason, .. }),
        ) = &result
        {
            return Err(TestCaseError::fail(format!(
                "message {i} {m:?} broke the member: {reason}"
            )));
        }
        prop_assert_eq!(e.status(at).failed, None, "message {} {:?}", i, m);
        e.tick(at)
            .map_err(|err| TestCaseError::fail(format!("tick after message {i}: {err}")))?;
        sent(e);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_break_a_follower(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6)) {
        let (mut e, clock) = member::follower();
        for (i, chunk) in chunks.iter().enumerate() {
            let result = e.receive(clock.at(20 + i as u64), 1, chunk);
            prop_assert!(!matches!(result, Err(ElectionError::Failed(_))));
        }
        e.reset_peer(1);
        still_follows(&mut e, &clock, 40);
    }

    #[test]
    fn arbitrary_raft_messages_never_break_a_follower(messages in prop::collection::vec(raft_message(2), 1..16)) {
        let (mut e, clock) = member::follower();
        feed(&mut e, &clock, 20, &messages)?;
    }

    #[test]
    fn arbitrary_raft_messages_never_break_a_master(messages in prop::collection::vec(raft_message(1), 1..16)) {
        let (mut e, clock) = member::master();
        feed(&mut e, &clock, 660, &messages)?;
    }
}
