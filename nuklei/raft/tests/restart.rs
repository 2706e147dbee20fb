//! The vote survives a restart: a member restarted from its state directory never votes
//! twice in one term, refuses other candidates during its restart guard, and stops taking
//! part when its state cannot be saved.

mod member;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use member::{frame, message, open, sent, Clock};
use nukleus_raft::eraftpb::MessageType;
use nukleus_raft::{
    Durable, Election, ElectionConfig, ElectionError, Event, FileState, LeaseEnd, MemoryState,
    OpenError, PersistentState, StateError,
};

fn vote_request(from: u64, term: u64) -> Vec<u8> {
    frame(&message(MessageType::MsgRequestVote, from, 1, term))
}

/// The answers to vote requests the member sent: (candidate, granted).
fn vote_answers(election: &mut Election) -> Vec<(u64, bool)> {
    sent(election)
        .into_iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgRequestVoteResponse)
        .map(|m| (m.to, !m.reject))
        .collect()
}

#[test]
fn a_restarted_member_keeps_its_vote_and_refuses_a_second_candidate_in_that_term() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock(std::time::Instant::now());
    let mut first = open(
        1,
        Box::new(FileState::open(dir.path()).unwrap()),
        clock.at(0),
    );
    first
        .receive(clock.at(1_000), 2, &vote_request(2, 5))
        .unwrap();
    assert_eq!(vote_answers(&mut first), vec![(2, true)]);
    assert_eq!(first.hard_state(), (5, Some(2)));
    // kill -9: nothing of the process survives but the state directory.
    drop(first);

    let clock = Clock(std::time::Instant::now());
    let mut again = open(
        1,
        Box::new(FileState::open(dir.path()).unwrap()),
        clock.at(0),
    );
    assert_eq!(
        again.hard_state(),
        (5, Some(2)),
        "the vote was read back from raft-state"
    );
    again
        .receive(clock.at(1_000), 3, &vote_request(3, 5))
        .unwrap();
    assert_eq!(
        vote_answers(&mut again),
        vec![(3, false)],
        "a second candidate in term 5 is refused"
    );
    // The first candidate asking again (its request was lost) gets the same answer.
    again
        .receive(clock.at(1_001), 2, &vote_request(2, 5))
        .unwrap();
    assert_eq!(vote_answers(&mut again), vec![(2, true)]);
    assert_eq!(again.hard_state(), (5, Some(2)));
}

#[test]
fn a_restarted_member_withholds_its_vote_for_the_vote_guard() {
    let state = MemoryState::new();
    let clock = Clock(std::time::Instant::now());
    let mut e = open(1, Box::new(state.clone()), clock.at(0));
    let guard = e.timing().vote_guard.as_millis() as u64;
    // Just started: it may have acknowledged a leader's heartbeat just before a crash, so it
    // helps nobody win until that heartbeat's guard would have passed.
    e.receive(clock.at(guard - 1), 3, &vote_request(3, 6))
        .unwrap();
    assert_eq!(vote_answers(&mut e), vec![]);
    assert_eq!(e.stats().votes_withheld, 1);
    assert_eq!(e.hard_state(), (0, None));
    e.receive(clock.at(guard), 3, &vote_request(3, 6)).unwrap();
    assert_eq!(vote_answers(&mut e), vec![(3, true)]);
    let saved = nukleus_raft::durable::decode(&state.bytes().unwrap()).unwrap();
    assert_eq!(
        (saved.hard_state.term, saved.hard_state.vote),
        (6, 3),
        "the vote was saved before it was sent"
    );
}

#[test]
fn a_master_that_steps_down_early_withholds_its_vote_until_its_lease_is_over() {
    let (mut e, clock) = member::master();
    let lease = e.lease(clock.at(654)).unwrap();
    // A higher term makes it a follower at once (raft), and it stops serving at once...
    let mut higher = message(MessageType::MsgAppendResponse, 2, 1, 9);
    higher.reject = true;
    e.receive(clock.at(660), 2, &frame(&higher)).unwrap();
    assert_eq!(e.lease(clock.at(660)), None);
    assert!(e.take_events().contains(&Event::LeaseLost {
        epoch: lease.epoch,
        reason: LeaseEnd::SteppedDown
    }));
    // ...but the lease it published still runs (a switch on another thread may serve until
    // then), so it must not help a rival win before that lease is over.
    let mut request = message(MessageType::MsgRequestVote, 3, 1, 10);
    (request.index, request.log_term) = (1, 1);
    e.receive(clock.at(661), 3, &frame(&request)).unwrap();
    assert_eq!(vote_answers(&mut e), vec![]);
    assert_eq!(e.stats().votes_withheld, 1);
    let after = lease.until.duration_since(clock.0).as_millis() as u64 + 1;
    e.receive(clock.at(after), 3, &frame(&request)).unwrap();
    assert_eq!(vote_answers(&mut e), vec![(3, true)]);
}

#[test]
fn a_state_directory_of_another_member_or_membership_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::Instant::now();
    drop(open(1, Box::new(FileState::open(dir.path()).unwrap()), now));
    let other = Election::open(
        ElectionConfig::new(2, vec![1, 2, 3]),
        Box::new(FileState::open(dir.path()).unwrap()),
        now,
    );
    assert!(matches!(
        other,
        Err(OpenError::WrongMember {
            expected: 2,
            found: 1
        })
    ));
    let grown = Election::open(
        ElectionConfig::new(1, vec![1, 2, 3, 4]),
        Box::new(FileState::open(dir.path()).unwrap()),
        now,
    );
    let err = grown.err().expect("membership mismatch");
    assert!(matches!(err, OpenError::Membership { .. }), "{err}");
    assert!(err.to_string().contains("fresh state directory"), "{err}");
}

/// A disk that accepts `allowed` saves and then fails.
struct FailingDisk {
    inner: MemoryState,
    allowed: Arc<AtomicUsize>,
}

impl Durable for FailingDisk {
    fn load(&mut self) -> Result<Option<PersistentState>, StateError> {
        self.inner.load()
    }

    fn save(&mut self, state: &PersistentState) -> Result<(), StateError> {
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(StateError::Io {
                action: "fsync",
                path: "raft-state.tmp".into(),
                source: std::io::Error::other("no space left on device"),
            });
        }
        self.inner.save(state)
    }
}

#[test]
fn a_member_whose_vote_cannot_be_saved_never_sends_it_and_stops() {
    let clock = Clock(std::time::Instant::now());
    let disk = FailingDisk {
        inner: MemoryState::new(),
        allowed: Arc::new(AtomicUsize::new(1)),
    };
    let mut e = open(1, Box::new(disk), clock.at(0));
    let err = e
        .receive(clock.at(1_000), 2, &vote_request(2, 5))
        .unwrap_err();
    assert!(matches!(err, ElectionError::State(_)), "{err}");
    assert_eq!(
        vote_answers(&mut e),
        vec![],
        "no vote leaves before it is durable"
    );
    let status = e.status(clock.at(1_000));
    assert!(
        status
            .failed
            .as_deref()
            .is_some_and(|f| f.contains("no space left")),
        "{status:?}"
    );
    assert!(matches!(
        e.tick(clock.at(2_000)),
        Err(ElectionError::Failed(_))
    ));
    assert!(matches!(
        e.receive(clock.at(2_000), 3, &vote_request(3, 6)),
        Err(ElectionError::Failed(_))
    ));
    assert_eq!(vote_answers(&mut e), vec![]);
}
