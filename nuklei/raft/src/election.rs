//! The election core: a raft-rs `RawNode` driven without I/O. Time comes in as `Instant`s,
//! peer bytes come in as chunks of a stream; frames for peers and events go out.
//!
//! The **lease**: every heartbeat interval the leader asks raft-rs for a ReadIndex with a
//! fresh sequence number as context and notes the instant it asked (before the heartbeats that
//! carry the context are sent). When raft-rs reports that a quorum answered that context, the
//! leader may serve until `asked + lease`. A member that answered such a heartbeat refuses
//! every other candidate for `vote_guard > lease` after it received it (raft-rs's CheckQuorum
//! "in lease" rule, counted in ticks after the receipt), so no new leader can be elected, let
//! alone hold a lease, before the old lease is over. [`crate::config::ElectionConfig`] checks
//! `lease <= vote_guard * (1 - drift) / (1 + drift)` for the clock assumption.
//!
//! Three more rules close the gaps raft-rs leaves for a lease:
//! - a member never helps another member win a vote before a lease it published itself is over
//!   (it may step down early: a higher term, CheckQuorum), nor during `vote_guard` after it
//!   started (it may have answered a heartbeat just before it crashed and forgot);
//! - forced campaigns (leader transfer) are refused on the wire, since they skip the guard;
//! - a leader whose lease ran out steps down, so every mastership has its own epoch (the term
//!   it was elected in) and fencing tokens `(epoch, sequence)` never repeat.

use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft::eraftpb::{Message, MessageType};
use raft::{RawNode, ReadOnlyOption, ReadState, StateRole, INVALID_ID};
use thiserror::Error;

use crate::config::{ConfigError, ElectionConfig, MemberId, Timing};
use crate::durable::{Durable, StateError};
use crate::log_bridge;
use crate::log_store::LogStore;
use crate::validate::{self, MessageError, View};
use crate::wire::{self, Frame, FrameReader, WireError};

/// Probes older than a lease are useless; this many pending is already far more than a healthy
/// leader has (one per heartbeat within a lease).
const MAX_PROBES: usize = 64;
/// Entries a single append may carry (the log holds one entry per election).
const MAX_APPEND_ENTRIES: usize = 1024;

/// A member's role in raft terms. A `Leader` serves only while it also holds the lease
/// ([`Status::lease_remaining`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Bytes for a peer: one or more complete frames, to be written in order on the connection
/// to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: MemberId,
    pub frame: Vec<u8>,
}

/// What the switch must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// This member may serve as master with this epoch until `lease_until` (renewals move the
    /// instant on; read it with [`Election::lease`]).
    BecameMaster { epoch: u64, lease_until: Instant },
    /// Stop serving now: drop the table, close the receiving connections.
    LeaseLost { epoch: u64, reason: LeaseEnd },
    /// The leader this member knows changed (`None`: no leader known, an election runs).
    LeaderChanged { term: u64, leader: Option<MemberId> },
}

/// Why a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseEnd {
    /// No quorum acknowledged a heartbeat within the lease; the member stepped down.
    Expired,
    /// raft made the member a follower (a higher term, or CheckQuorum).
    SteppedDown,
    /// The member can no longer take part (its state could not be saved, or raft failed).
    Failed,
}

/// What `GET /v1/cluster` will show of this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: MemberId,
    pub role: Role,
    pub term: u64,
    /// The term the known leader was elected in.
    pub epoch: Option<u64>,
    pub leader: Option<MemberId>,
    /// `Some` while this member is the master.
    pub lease_remaining: Option<Duration>,
    pub members: Vec<MemberId>,
    /// Why this member stopped taking part, if it did.
    pub failed: Option<String>,
}

/// A held lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    pub until: Instant,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames refused (bad bytes or a message that failed validation).
    pub refused: u64,
    /// Vote requests not answered because of a lease this member promised or its restart guard.
    pub votes_withheld: u64,
    /// Durable saves (each one an fsync when the state is a file).
    pub saves: u64,
}

/// A failure to handle input. `Wire`, `Message` and `Raft` concern one peer's bytes: close that
/// connection and call [`Election::reset_peer`]. `State` and `Failed` end this member's part in
/// the election: it stays silent and never serves again until restarted.
#[derive(Debug, Error)]
pub enum ElectionError {
    #[error("member {0} is not a peer of this member")]
    UnknownPeer(MemberId),
    #[error("bytes from member {peer}: {source}")]
    Wire { peer: MemberId, source: WireError },
    #[error("message from member {peer} refused: {source}")]
    Message {
        peer: MemberId,
        source: MessageError,
    },
    #[error("raft refused a message from member {peer}: {source}")]
    Raft { peer: MemberId, source: raft::Error },
    #[error("raft state not saved, this member stops taking part in elections: {0}")]
    State(#[from] StateError),
    #[error("this member stopped taking part in elections: {0}")]
    Failed(String),
}

/// A member that cannot start.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the state directory holds member {found}'s state, this member is {expected}: give each member its own state directory")]
    WrongMember { expected: MemberId, found: MemberId },
    #[error("the state directory was written for members {persisted:?}, the configuration lists {configured:?}: membership changes are not supported yet, so use the same members or a fresh state directory on every member")]
    Membership {
        persisted: Vec<MemberId>,
        configured: Vec<MemberId>,
    },
    #[error("raft-rs refused the configuration: {0}")]
    Raft(#[from] raft::Error),
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    role: StateRole,
    term: u64,
    leader: u64,
}

/// One member of the election.
pub struct Election {
    id: MemberId,
    members: Vec<MemberId>,
    timing: Timing,
    max_frame: usize,
    raw: RawNode<LogStore>,
    durable: Box<dyn Durable>,
    /// Tick boundaries are `origin + n * tick`; `ticks` of them have been fed to raft.
    origin: Instant,
    ticks: u64,
    rng: u64,
    seen: Seen,
    master: Option<Lease>,
    /// The epoch whose lease ran out: never serve in it again.
    lost_epoch: Option<u64>,
    /// The end of the latest lease this member published: it helps nobody else win before.
    promised_until: Option<Instant>,
    /// The end of the restart guard.
    quiet_until: Instant,
    probes: VecDeque<(u64, Instant)>,
    probe_seq: u64,
    next_probe: Option<Instant>,
    readers: HashMap<MemberId, FrameReader>,
    outgoing: Vec<Outgoing>,
    events: Vec<Event>,
    failed: Option<String>,
    stats: Stats,
}

impl Election {
    /// Starts a member at `now` from its durable state (a new member saves its initial state
    /// first). `now` comes from a monotonic clock, like every instant given later.
    pub fn open(
        config: ElectionConfig,
        mut durable: Box<dyn Durable>,
        now: Instant,
    ) -> Result<Self, OpenError> {
        let timing = config.timing()?;
        let mut members = config.members.clone();
        members.sort_unstable();
        let store = match durable.load()? {
            Some(state) => {
                if state.member != config.id {
                    return Err(OpenError::WrongMember {
                        expected: config.id,
                        found: state.member,
                    });
                }
                let mut persisted = state.voters.clone();
                persisted.sort_unstable();
                if persisted != members {
                    return Err(OpenError::Membership {
                        persisted,
                        configured: members,
                    });
                }
                LogStore::from_persistent(state)
            }
            None => {
                let store = LogStore::new(&members);
                durable.save(&store.to_persistent(config.id))?;
                store
            }
        };
        let raft_config = raft::Config {
            id: config.id,
            election_tick: timing.election_ticks,
            heartbeat_tick: timing.heartbeat_ticks,
            // Committed entries are empty: there is nothing to apply, so applied = commit.
            applied: store.hard_state().commit,
            max_size_per_msg: 16 * 1024,
            max_inflight_msgs: 16,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..raft::Config::default()
        };
        let raw = RawNode::new(&raft_config, store, &log_bridge::logger(config.id))?;
        let seed = config.seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        let seen = Seen {
            role: raw.raft.state,
            term: raw.raft.term,
            leader: raw.raft.leader_id,
        };
        let mut election = Election {
            id: config.id,
            members,
            timing,
            max_frame: config.max_frame,
            raw,
            durable,
            origin: now,
            ticks: 0,
            rng: seed,
            seen,
            master: None,
            lost_epoch: None,
            promised_until: None,
            quiet_until: now + timing.vote_guard,
            probes: VecDeque::new(),
            probe_seq: 0,
            next_probe: None,
            readers: HashMap::new(),
            outgoing: Vec::new(),
            events: Vec::new(),
            failed: None,
            stats: Stats::default(),
        };
        election.randomize_timeout();
        Ok(election)
    }

    /// Advances the clocks to `now`: raft ticks, lease renewals, lease expiry.
    pub fn tick(&mut self, now: Instant) -> Result<(), ElectionError> {
        self.check_failed()?;
        self.advance_clock(now)?;
        self.settle(now)
    }

    /// Takes bytes that arrived from `peer`'s connection, read from the socket before `now`
    /// was taken from the clock. They may hold any part of any number of frames.
    ///
    /// On an error the frames before the bad one have been handled, the peer's partial frame
    /// is dropped, and the connection should be closed.
    pub fn receive(
        &mut self,
        now: Instant,
        peer: MemberId,
        bytes: &[u8],
    ) -> Result<(), ElectionError> {
        self.check_failed()?;
        if peer == self.id || !self.members.contains(&peer) {
            return Err(ElectionError::UnknownPeer(peer));
        }
        // Tick boundaries up to `now` are counted before the message: an acknowledged
        // heartbeat's vote guard then starts no earlier than its arrival.
        self.advance_clock(now)?;
        let max_frame = self.max_frame;
        self.readers
            .entry(peer)
            .or_insert_with(|| FrameReader::new(max_frame))
            .push(bytes);
        let mut result = Ok(());
        while let Some(reader) = self.readers.get_mut(&peer) {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(source) => {
                    result = Err(ElectionError::Wire { peer, source });
                    break;
                }
            };
            self.stats.frames_in += 1;
            if let Err(err) = self.handle_frame(now, peer, frame) {
                result = Err(err);
                break;
            }
        }
        if result.is_err() {
            self.stats.refused += 1;
            self.readers.remove(&peer);
        }
        self.settle(now)?;
        result
    }

    /// Forgets a peer's partial frame (its connection closed; the next one starts afresh).
    pub fn reset_peer(&mut self, peer: MemberId) {
        self.readers.remove(&peer);
    }

    /// Frames for peers produced since the last call, in the order they must be sent.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outgoing)
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The lease this member holds at `now`, if it is the master.
    pub fn lease(&self, now: Instant) -> Option<Lease> {
        self.master
            .filter(|lease| now < lease.until && self.raw.raft.state == StateRole::Leader)
    }

    /// The latest instant at which [`Election::tick`] must be called next (a tick boundary,
    /// a lease renewal or the lease's end).
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.boundary(self.ticks + 1);
        if let Some(probe) = self.next_probe {
            at = at.min(probe);
        }
        if let Some(lease) = self.master {
            at = at.min(lease.until);
        }
        at
    }

    pub fn status(&self, now: Instant) -> Status {
        let raft = &self.raw.raft;
        let leader = (raft.leader_id != INVALID_ID).then_some(raft.leader_id);
        Status {
            id: self.id,
            role: match raft.state {
                StateRole::Follower => Role::Follower,
                StateRole::PreCandidate => Role::PreCandidate,
                StateRole::Candidate => Role::Candidate,
                StateRole::Leader => Role::Leader,
            },
            term: raft.term,
            epoch: leader.map(|_| raft.term),
            leader,
            lease_remaining: self.lease(now).map(|lease| lease.until - now),
            members: self.members.clone(),
            failed: self.failed.clone(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn id(&self) -> MemberId {
        self.id
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The term and vote this member has saved (what a restart starts from).
    pub fn hard_state(&self) -> (u64, Option<MemberId>) {
        let hs = self.raw.store().hard_state();
        (hs.term, (hs.vote != INVALID_ID).then_some(hs.vote))
    }

    fn boundary(&self, tick: u64) -> Instant {
        let nanos = self.timing.tick.as_nanos().saturating_mul(u128::from(tick));
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Brings the member to `now`: a lease that ran out by the clock ends first (a member
    /// resumed after a stall learns it is no master before it does anything else), then raft
    /// gets the ticks it missed.
    fn advance_clock(&mut self, now: Instant) -> Result<(), ElectionError> {
        self.guarded(|e| {
            e.expire_lease(now);
            e.catch_up(now);
            Ok(())
        })
    }

    /// Feeds raft one tick per tick boundary passed. After a stall (the process was stopped)
    /// at most two election timeouts' worth are fed: skipped ticks only make this member
    /// slower to act, never faster, and a stalled leader must not flood its peers with the
    /// heartbeats of every missed interval.
    fn catch_up(&mut self, now: Instant) {
        let due = (now.saturating_duration_since(self.origin).as_nanos()
            / self.timing.tick.as_nanos()) as u64;
        let most = 2 * self.timing.election_ticks as u64 + 1;
        if due > self.ticks + most {
            self.ticks = due - most;
        }
        while self.ticks < due {
            self.ticks += 1;
            self.raw.tick();
        }
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        peer: MemberId,
        frame: Frame,
    ) -> Result<(), ElectionError> {
        let message = match frame {
            Frame::Hello { member } if member == peer => return Ok(()),
            Frame::Hello { member } => {
                let source = MessageError::SenderMismatch {
                    claimed: member,
                    link: peer,
                };
                return Err(ElectionError::Message { peer, source });
            }
            Frame::Raft(message) => message,
        };
        let view = View {
            me: self.id,
            term: self.raw.raft.term,
            leader: self.raw.raft.leader_id,
            members: &self.members,
            last_index: self.raw.raft.raft_log.last_index(),
            max_entries: MAX_APPEND_ENTRIES,
        };
        validate::check(&message, peer, &view)
            .map_err(|source| ElectionError::Message { peer, source })?;
        let kind = message.get_msg_type();
        if matches!(
            kind,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && self.withholds_votes(now)
        {
            // Unanswered, as raft-rs's own "in lease" rule does: the candidate retries later.
            self.stats.votes_withheld += 1;
            return Ok(());
        }
        self.guarded(|e| Ok(e.raw.step(message)))?
            .map_err(|source| ElectionError::Raft { peer, source })
    }

    fn withholds_votes(&self, now: Instant) -> bool {
        now < self.quiet_until || self.promised_until.is_some_and(|until| now < until)
    }

    /// Runs raft to quiescence: Ready handling, role changes, lease expiry and renewal.
    fn settle(&mut self, now: Instant) -> Result<(), ElectionError> {
        self.guarded(|e| {
            // Each round can only move forward (persist, observe a change, start a probe);
            // a handful is enough, the bound only keeps a bug from spinning.
            for _ in 0..8 {
                e.process_ready(now)?;
                let mut again = e.observe();
                again |= e.expire_lease(now);
                again |= e.probe(now);
                if !again && !e.raw.has_ready() {
                    break;
                }
            }
            Ok(())
        })
    }

    fn process_ready(&mut self, now: Instant) -> Result<(), ElectionError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        // Messages a leader may send before its entries are durable (raft's rule).
        self.send(ready.take_messages());
        let mut changed = false;
        if !ready.snapshot().is_empty() {
            let metadata = ready.snapshot().get_metadata().clone();
            self.raw.mut_store().apply_snapshot(&metadata);
            changed = true;
        }
        if !ready.entries().is_empty() {
            let appended = self.raw.mut_store().append(ready.entries());
            appended.map_err(|reason| {
                self.fail(format!(
                    "raft handed over entries the log cannot take: {reason}"
                ))
            })?;
            changed = true;
        }
        if let Some(hard_state) = ready.hs() {
            let before = self.raw.store().hard_state();
            // The commit index is volatile state in Raft: a member that restarts with an older
            // one learns it again from the leader. Only a new term or vote must reach the disk
            // before a message leaves (etcd's `MustSync` rule); a commit alone is written with
            // the next save, so it costs no fsync on the way to a new master's first lease.
            changed |= hard_state.term != before.term || hard_state.vote != before.vote;
            self.raw.mut_store().set_hard_state(hard_state.clone());
        }
        if changed {
            self.save()?;
        }
        // Votes and acknowledgements: only once what they promise is on disk.
        self.send(ready.take_persisted_messages());
        let read_states = ready.take_read_states();
        // Committed entries are the empty entries of elected leaders: nothing to apply.
        drop(ready.take_committed_entries());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Volatile (see above): written with the next save.
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        drop(light.take_committed_entries());
        self.raw.advance_apply();
        let applied = self.raw.raft.raft_log.applied;
        if self.raw.mut_store().compact(applied) {
            self.save()?;
        }
        self.on_read_states(now, read_states);
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.stats.frames_out += 1;
            self.outgoing.push(Outgoing {
                to: message.to,
                frame: wire::encode_raft(&message),
            });
        }
    }

    fn save(&mut self) -> Result<(), ElectionError> {
        let state = self.raw.store().to_persistent(self.id);
        match self.durable.save(&state) {
            Ok(()) => {
                self.stats.saves += 1;
                Ok(())
            }
            Err(err) => {
                self.fail(format!("the raft state could not be saved: {err}"));
                Err(ElectionError::State(err))
            }
        }
    }

    /// A quorum answered the heartbeats of these probes: the lease runs from the instant the
    /// latest of them was asked for.
    fn on_read_states(&mut self, now: Instant, read_states: Vec<ReadState>) {
        let mut asked = None;
        for state in read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            let seq = u64::from_be_bytes(bytes);
            if let Some(position) = self.probes.iter().position(|&(s, _)| s == seq) {
                let at = self.probes[position].1;
                self.probes.drain(..=position);
                asked = asked.max(Some(at));
            }
        }
        let Some(asked) = asked else { return };
        let raft = &self.raw.raft;
        let epoch = raft.term;
        let until = asked + self.timing.lease;
        if raft.state != StateRole::Leader || until <= now || self.lost_epoch == Some(epoch) {
            return;
        }
        match &mut self.master {
            Some(lease) if lease.epoch == epoch => lease.until = lease.until.max(until),
            _ => {
                self.master = Some(Lease { epoch, until });
                self.events.push(Event::BecameMaster {
                    epoch,
                    lease_until: until,
                });
                tracing::info!(target: "raft", member = self.id, epoch, "master: a quorum acknowledged this leader");
            }
        }
        self.promised_until = self.promised_until.max(Some(until));
    }

    /// Reports role, term and leader changes; returns whether anything changed.
    fn observe(&mut self) -> bool {
        let raft = &self.raw.raft;
        let now_seen = Seen {
            role: raft.state,
            term: raft.term,
            leader: raft.leader_id,
        };
        let before = self.seen;
        if (now_seen.role, now_seen.term, now_seen.leader)
            == (before.role, before.term, before.leader)
        {
            return false;
        }
        self.seen = now_seen;
        let leader = (now_seen.leader != INVALID_ID).then_some(now_seen.leader);
        if now_seen.leader != before.leader || (leader.is_some() && now_seen.term != before.term) {
            self.events.push(Event::LeaderChanged {
                term: now_seen.term,
                leader,
            });
        }
        if now_seen.role != StateRole::Leader || now_seen.term != before.term {
            self.probes.clear();
            self.next_probe = None;
            if let Some(lease) = self.master {
                if now_seen.role != StateRole::Leader || lease.epoch != now_seen.term {
                    self.end_lease(LeaseEnd::SteppedDown);
                }
            }
        }
        self.randomize_timeout();
        true
    }

    /// A lease that ran out ends the mastership and the leadership of its term.
    fn expire_lease(&mut self, now: Instant) -> bool {
        let Some(lease) = self.master else {
            return false;
        };
        if now < lease.until {
            return false;
        }
        self.end_lease(LeaseEnd::Expired);
        if self.raw.raft.state == StateRole::Leader {
            let term = self.raw.raft.term;
            tracing::warn!(target: "raft", member = self.id, epoch = lease.epoch, "lease expired without a quorum's acknowledgement: stepping down");
            self.raw.raft.become_follower(term, INVALID_ID);
        }
        true
    }

    fn end_lease(&mut self, reason: LeaseEnd) {
        if let Some(lease) = self.master.take() {
            self.lost_epoch = Some(lease.epoch);
            self.events.push(Event::LeaseLost {
                epoch: lease.epoch,
                reason,
            });
        }
    }

    /// Every heartbeat interval the leader asks a quorum to renew its lease (a ReadIndex whose
    /// context is the probe's sequence number). raft-rs drops ReadIndex until the leader has
    /// committed an entry of its term, so probing starts then.
    fn probe(&mut self, now: Instant) -> bool {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader
            || !raft.commit_to_current_term()
            || self.lost_epoch == Some(raft.term)
        {
            return false;
        }
        if self.next_probe.is_some_and(|at| now < at) {
            return false;
        }
        let lease = self.timing.lease;
        while let Some(&(_, asked)) = self.probes.front() {
            if asked + lease <= now || self.probes.len() >= MAX_PROBES {
                self.probes.pop_front();
            } else {
                break;
            }
        }
        self.probe_seq += 1;
        self.probes.push_back((self.probe_seq, now));
        self.raw.read_index(self.probe_seq.to_be_bytes().to_vec());
        self.next_probe = Some(now + self.timing.heartbeat);
        true
    }

    /// Election-timeout jitter from this member's own seeded generator (raft-rs draws from the
    /// thread's RNG, which a simulation cannot replay), redrawn at every role or term change.
    fn randomize_timeout(&mut self) {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let ticks = self.timing.election_ticks;
        self.raw
            .raft
            .set_randomized_election_timeout(ticks + (z % ticks as u64) as usize);
    }

    fn check_failed(&self) -> Result<(), ElectionError> {
        match &self.failed {
            Some(reason) => Err(ElectionError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, reason: String) -> ElectionError {
        tracing::error!(target: "raft", member = self.id, "{reason}");
        self.end_lease(LeaseEnd::Failed);
        self.outgoing.clear();
        self.failed.get_or_insert(reason.clone());
        ElectionError::Failed(reason)
    }

    /// Runs `f`; a panic inside raft-rs (it panics on states it considers impossible) ends
    /// this member's part in the election instead of the thread.
    fn guarded<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, ElectionError>,
    ) -> Result<R, ElectionError> {
        match panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                Err(self.fail(format!("raft-rs panicked: {what}")))
            }
        }
    }
}
