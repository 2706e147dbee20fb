//! One member driven by hand: the test plays its peers with crafted raft messages.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use nukleus_raft::eraftpb::{Message, MessageType};
use nukleus_raft::{wire, Durable, Election, ElectionConfig, Frame, MemoryState, Role};

pub struct Clock(pub Instant);

impl Clock {
    pub fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

pub fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

pub fn frame(message: &Message) -> Vec<u8> {
    wire::encode_raft(message)
}

/// Decodes everything the member has to send.
pub fn sent(election: &mut Election) -> Vec<Message> {
    let mut reader = nukleus_raft::FrameReader::new(1 << 20);
    let mut out = Vec::new();
    for outgoing in election.take_outgoing() {
        reader.push(&outgoing.frame);
        while let Some(frame) = reader.next_frame().expect("the member sends valid frames") {
            match frame {
                Frame::Raft(m) => {
                    assert_eq!(m.to, outgoing.to);
                    out.push(m)
                }
                Frame::Hello { .. } => panic!("unexpected hello"),
            }
        }
    }
    out
}

pub fn open(id: u64, durable: Box<dyn Durable>, now: Instant) -> Election {
    let config = ElectionConfig {
        seed: Some(id),
        ..ElectionConfig::new(id, vec![1, 2, 3])
    };
    Election::open(config, durable, now).expect("member opens")
}

/// Member 2 of {1, 2, 3}, a follower of member 1 in term 3.
pub fn follower() -> (Election, Clock) {
    let clock = Clock(Instant::now());
    let mut e = open(2, Box::new(MemoryState::new()), clock.at(0));
    e.receive(
        clock.at(10),
        1,
        &frame(&message(MessageType::MsgHeartbeat, 1, 2, 3)),
    )
    .unwrap();
    let status = e.status(clock.at(10));
    assert_eq!(
        (status.role, status.leader, status.term),
        (Role::Follower, Some(1), 3)
    );
    sent(&mut e);
    (e, clock)
}

/// Member 1 of {1, 2, 3}, elected in term 1 with member 2's votes, holding a lease at
/// `clock.at(700)`.
pub fn master() -> (Election, Clock) {
    let clock = Clock(Instant::now());
    let mut e = open(1, Box::new(MemoryState::new()), clock.at(0));
    // The randomized election timeout is below 600 ms: the member pre-campaigns by then.
    e.tick(clock.at(650)).unwrap();
    let pre_votes = sent(&mut e);
    assert!(pre_votes
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgRequestPreVote));
    let grant = |kind, term| message(kind, 2, 1, term);
    e.receive(
        clock.at(651),
        2,
        &frame(&grant(MessageType::MsgRequestPreVoteResponse, 1)),
    )
    .unwrap();
    e.receive(
        clock.at(652),
        2,
        &frame(&grant(MessageType::MsgRequestVoteResponse, 1)),
    )
    .unwrap();
    assert_eq!(e.status(clock.at(652)).role, Role::Leader);
    let appends = sent(&mut e);
    let append = appends
        .iter()
        .find(|m| m.get_msg_type() == MessageType::MsgAppend && m.to == 2)
        .expect("append");
    let mut ack = grant(MessageType::MsgAppendResponse, 1);
    ack.index = append.index + append.entries.len() as u64;
    e.receive(clock.at(653), 2, &frame(&ack)).unwrap();
    let probes = sent(&mut e);
    let probe = probes
        .iter()
        .find(|m| {
            m.get_msg_type() == MessageType::MsgHeartbeat && m.to == 2 && !m.context.is_empty()
        })
        .expect("a lease probe once the leader's entry is committed");
    let mut answer = grant(MessageType::MsgHeartbeatResponse, 1);
    answer.context = probe.context.clone();
    answer.commit = probe.commit;
    e.receive(clock.at(654), 2, &frame(&answer)).unwrap();
    assert!(e.lease(clock.at(654)).is_some(), "the member is master");
    sent(&mut e);
    e.take_events();
    (e, clock)
}
