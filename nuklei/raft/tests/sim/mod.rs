//! A simulated cluster: members run the real [`Election`] core, a deterministic clock drives
//! them, and a seeded network delivers whole frames with loss, delay (hence reordering),
//! duplication and partitions. Processes can be killed and restarted from their saved state,
//! or paused (SIGSTOP) and resumed. Every member's clock runs at its own rate.
//!
//! After every step the checker records, in simulated (global) time, the interval each member
//! promised to serve (from the moment it first held a lease to the lease end it published) and
//! every saved vote, and fails on two members with overlapping promises, two leaders in one
//! term, or a member whose saved vote in a term changed.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nukleus_raft::{Election, ElectionConfig, Event, MemberId, MemoryState, Role};

/// Simulated time in nanoseconds since the start.
pub type Nanos = u64;

pub const MS: Nanos = 1_000_000;

/// A frame in flight: (delivery time, sequence, from, to, bytes).
type InFlight = Reverse<(Nanos, u64, MemberId, MemberId, Vec<u8>)>;

/// The network's behaviour.
#[derive(Clone, Debug)]
pub struct Net {
    /// Per mille of frames lost.
    pub loss: u32,
    /// Per mille of frames delivered twice.
    pub duplicate: u32,
    /// Delivery delay, uniformly drawn in this range (so frames overtake each other).
    pub min_delay: Nanos,
    pub max_delay: Nanos,
}

impl Net {
    pub fn reliable() -> Self {
        Net {
            loss: 0,
            duplicate: 0,
            min_delay: 200_000,
            max_delay: 1_000_000,
        }
    }
}

pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    pub fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

struct Member {
    id: MemberId,
    election: Option<Election>,
    state: MemoryState,
    /// Clock rate: local = anchor_local + (global - anchor_global) * (1e6 + drift_ppm) / 1e6.
    drift_ppm: i64,
    anchor_global: Nanos,
    anchor_local: Nanos,
    paused: bool,
    /// Frames that arrived while paused, read on resume.
    backlog: Vec<(MemberId, Vec<u8>)>,
    restarts: u32,
}

/// A promised serving interval in global time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    pub member: MemberId,
    pub epoch: u64,
    pub start: Nanos,
    pub end: Nanos,
}

pub struct Sim {
    pub seed: u64,
    base: Instant,
    pub now: Nanos,
    rng: SplitMix,
    pub net: Net,
    make_config: Box<dyn Fn(MemberId, Vec<MemberId>) -> ElectionConfig>,
    members: Vec<Member>,
    queue: BinaryHeap<InFlight>,
    sequence: u64,
    cut: HashSet<(MemberId, MemberId)>,
    next_tick: Nanos,
    pub tick_every: Nanos,
    /// Closed and open promises, per member.
    pub promises: Vec<Promise>,
    open: HashMap<MemberId, usize>,
    votes: HashMap<(MemberId, u64), MemberId>,
    leaders: HashMap<u64, MemberId>,
    pub events: Vec<(Nanos, MemberId, Event)>,
    pub violations: Vec<String>,
    pub frames_sent: u64,
    pub errors: Vec<String>,
}

impl Sim {
    /// `count` members with ids 1..=count, default clocks, clock drifts drawn from
    /// `{-max_drift_ppm, 0, +max_drift_ppm}`.
    pub fn new(count: u64, seed: u64, net: Net, max_drift_ppm: i64) -> Self {
        Self::with_config(count, seed, net, max_drift_ppm, |id, members| {
            ElectionConfig::new(id, members)
        })
    }

    pub fn with_config(
        count: u64,
        seed: u64,
        net: Net,
        max_drift_ppm: i64,
        make_config: impl Fn(MemberId, Vec<MemberId>) -> ElectionConfig + 'static,
    ) -> Self {
        let mut rng = SplitMix(seed);
        let members = (1..=count)
            .map(|id| Member {
                id,
                election: None,
                state: MemoryState::new(),
                drift_ppm: [-max_drift_ppm, 0, max_drift_ppm][rng.below(3) as usize],
                anchor_global: 0,
                anchor_local: 0,
                paused: false,
                backlog: Vec::new(),
                restarts: 0,
            })
            .collect();
        let mut sim = Sim {
            seed,
            base: Instant::now(),
            now: 0,
            rng,
            net,
            make_config: Box::new(make_config),
            members,
            queue: BinaryHeap::new(),
            sequence: 0,
            cut: HashSet::new(),
            next_tick: 0,
            tick_every: MS,
            promises: Vec::new(),
            open: HashMap::new(),
            votes: HashMap::new(),
            leaders: HashMap::new(),
            events: Vec::new(),
            violations: Vec::new(),
            frames_sent: 0,
            errors: Vec::new(),
        };
        for id in 1..=count {
            sim.start(id);
        }
        sim
    }

    pub fn ids(&self) -> Vec<MemberId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Changes a member's clock rate from now on (its clock does not jump).
    pub fn set_drift(&mut self, id: MemberId, ppm: i64) {
        let local = self
            .local(id, self.now)
            .duration_since(self.base)
            .as_nanos() as Nanos;
        let now = self.now;
        let member = self.member_mut(id);
        member.anchor_global = now;
        member.anchor_local = local;
        member.drift_ppm = ppm;
    }

    fn member_mut(&mut self, id: MemberId) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    fn member(&self, id: MemberId) -> &Member {
        &self.members[(id - 1) as usize]
    }

    fn local(&self, id: MemberId, global: Nanos) -> Instant {
        let member = self.member(id);
        let rate = 1_000_000 + i128::from(member.drift_ppm);
        let elapsed = i128::from(global) - i128::from(member.anchor_global);
        let local = i128::from(member.anchor_local) + elapsed * rate / 1_000_000;
        self.base + Duration::from_nanos(local.max(0) as u64)
    }

    /// The global time at which member `id`'s clock shows `local` (rounded up).
    fn global(&self, id: MemberId, local: Instant) -> Nanos {
        let member = self.member(id);
        let rate = 1_000_000 + i128::from(member.drift_ppm);
        let local = local.saturating_duration_since(self.base).as_nanos() as i128
            - i128::from(member.anchor_local);
        let elapsed = (local * 1_000_000 + rate - 1).div_euclid(rate);
        (i128::from(member.anchor_global) + elapsed).max(0) as u64
    }

    fn start(&mut self, id: MemberId) {
        let config = (self.make_config)(id, self.ids());
        let config = ElectionConfig {
            seed: Some(self.seed ^ (id << 32) ^ u64::from(self.member(id).restarts)),
            ..config
        };
        let now = self.local(id, self.now);
        let state = self.member(id).state.clone();
        match Election::open(config, Box::new(state), now) {
            Ok(election) => self.member_mut(id).election = Some(election),
            Err(err) => self
                .errors
                .push(format!("member {id} failed to open: {err}")),
        }
        self.after_call(id);
    }

    /// `kill -9`: the process and whatever it had not sent are gone; its saved state stays.
    pub fn kill(&mut self, id: MemberId) {
        let member = self.member_mut(id);
        member.election = None;
        member.paused = false;
        member.backlog.clear();
        self.close_promise(id);
    }

    pub fn restart(&mut self, id: MemberId) {
        assert!(
            self.member(id).election.is_none(),
            "restart of a running member {id}"
        );
        self.member_mut(id).restarts += 1;
        self.start(id);
    }

    pub fn is_alive(&self, id: MemberId) -> bool {
        self.member(id).election.is_some()
    }

    /// `SIGSTOP`: no ticks, no reads; frames pile up for it.
    pub fn pause(&mut self, id: MemberId) {
        self.member_mut(id).paused = true;
    }

    /// `SIGCONT`: it reads the clock, then everything that arrived meanwhile.
    pub fn resume(&mut self, id: MemberId) {
        self.member_mut(id).paused = false;
        self.call_tick(id);
        let backlog = std::mem::take(&mut self.member_mut(id).backlog);
        for (from, frame) in backlog {
            self.call_receive(id, from, &frame);
        }
    }

    /// Cuts every link between the groups (both directions).
    pub fn partition(&mut self, groups: &[&[MemberId]]) {
        self.cut.clear();
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for &x in a.iter() {
                    for &y in b.iter() {
                        self.cut.insert((x, y));
                        self.cut.insert((y, x));
                    }
                }
            }
        }
    }

    /// Cuts one direction of one link.
    pub fn cut_link(&mut self, from: MemberId, to: MemberId) {
        self.cut.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Runs until `until` (global time).
    pub fn run_until(&mut self, until: Nanos) {
        self.run_while(until, |_| true);
    }

    /// Runs until `until` or until `keep_going` says stop (checked after every step); returns
    /// the time it stopped.
    pub fn run_while(&mut self, until: Nanos, mut keep_going: impl FnMut(&Sim) -> bool) -> Nanos {
        while self.now < until {
            let next_delivery = self
                .queue
                .peek()
                .map(|Reverse((at, ..))| *at)
                .unwrap_or(Nanos::MAX);
            if next_delivery <= self.next_tick && next_delivery <= until {
                let Some(Reverse((at, _, from, to, frame))) = self.queue.pop() else {
                    break;
                };
                self.now = at;
                self.deliver(from, to, frame);
            } else if self.next_tick <= until {
                self.now = self.next_tick;
                self.next_tick += self.tick_every;
                for id in self.ids() {
                    self.call_tick(id);
                }
            } else {
                self.now = until;
            }
            if !keep_going(self) {
                break;
            }
        }
        self.now
    }

    fn deliver(&mut self, from: MemberId, to: MemberId, frame: Vec<u8>) {
        if self.cut.contains(&(from, to)) || !self.is_alive(to) {
            return;
        }
        if self.member(to).paused {
            self.member_mut(to).backlog.push((from, frame));
            return;
        }
        self.call_receive(to, from, &frame);
    }

    fn call_tick(&mut self, id: MemberId) {
        let now = self.local(id, self.now);
        let member = self.member_mut(id);
        if member.paused {
            return;
        }
        let Some(election) = member.election.as_mut() else {
            return;
        };
        if let Err(err) = election.tick(now) {
            self.errors.push(format!("member {id} tick: {err}"));
        }
        self.after_call(id);
    }

    fn call_receive(&mut self, id: MemberId, from: MemberId, frame: &[u8]) {
        let now = self.local(id, self.now);
        let Some(election) = self.member_mut(id).election.as_mut() else {
            return;
        };
        if let Err(err) = election.receive(now, from, frame) {
            self.errors
                .push(format!("member {id} receive from {from}: {err}"));
        }
        self.after_call(id);
    }

    /// Sends what the member produced, then checks the invariants.
    fn after_call(&mut self, id: MemberId) {
        let now_local = self.local(id, self.now);
        let Some(election) = self.member_mut(id).election.as_mut() else {
            return;
        };
        let outgoing = election.take_outgoing();
        let events = election.take_events();
        let lease = election.lease(now_local);
        let status = election.status(now_local);
        let (term, vote) = election.hard_state();
        for event in events {
            self.events.push((self.now, id, event));
        }
        for out in outgoing {
            self.frames_sent += 1;
            if self.rng.per_mille(self.net.loss) {
                continue;
            }
            let copies = if self.rng.per_mille(self.net.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.range(self.net.min_delay, self.net.max_delay);
                self.sequence += 1;
                self.queue.push(Reverse((
                    self.now + delay,
                    self.sequence,
                    id,
                    out.to,
                    out.frame.clone(),
                )));
            }
        }
        if let Some(vote) = vote {
            if let Some(previous) = self.votes.insert((id, term), vote) {
                if previous != vote {
                    self.violations.push(format!(
                        "t={}ms member {id} voted for {previous} and then {vote} in term {term}",
                        self.now / MS
                    ));
                }
            }
        }
        if status.role == Role::Leader {
            if let Some(previous) = self.leaders.insert(status.term, id) {
                if previous != id {
                    self.violations.push(format!(
                        "t={}ms members {previous} and {id} both led term {}",
                        self.now / MS,
                        status.term
                    ));
                }
            }
        }
        match lease {
            Some(lease) => {
                let end = self.global(id, lease.until);
                let index = match self.open.get(&id).copied() {
                    Some(index) if self.promises[index].epoch == lease.epoch => index,
                    _ => {
                        self.promises.push(Promise {
                            member: id,
                            epoch: lease.epoch,
                            start: self.now,
                            end,
                        });
                        let index = self.promises.len() - 1;
                        self.open.insert(id, index);
                        index
                    }
                };
                self.promises[index].end = self.promises[index].end.max(end);
                self.check_overlap(index);
            }
            None => self.close_promise(id),
        }
    }

    fn close_promise(&mut self, id: MemberId) {
        self.open.remove(&id);
    }

    fn check_overlap(&mut self, index: usize) {
        let mine = self.promises[index];
        for other in &self.promises {
            if other.member != mine.member && other.start < mine.end && mine.start < other.end {
                self.violations.push(format!(
                    "leases overlap: member {} epoch {} serves {}..{} us, member {} epoch {} serves {}..{} us",
                    other.member,
                    other.epoch,
                    other.start / 1000,
                    other.end / 1000,
                    mine.member,
                    mine.epoch,
                    mine.start / 1000,
                    mine.end / 1000
                ));
            }
        }
    }

    /// The member that holds a lease now, if any (the checker guarantees at most one).
    pub fn master(&self) -> Option<MemberId> {
        self.members.iter().find_map(|m| {
            let election = m.election.as_ref()?;
            election.lease(self.local(m.id, self.now)).map(|_| m.id)
        })
    }

    pub fn status(&self, id: MemberId) -> Option<nukleus_raft::Status> {
        let election = self.member(id).election.as_ref()?;
        Some(election.status(self.local(id, self.now)))
    }

    pub fn election_mut(&mut self, id: MemberId) -> Option<&mut Election> {
        self.member_mut(id).election.as_mut()
    }

    pub fn local_now(&self, id: MemberId) -> Instant {
        self.local(id, self.now)
    }

    /// Runs until a master exists (or `limit` passes); returns it and when it started.
    pub fn until_master(&mut self, limit: Nanos) -> Option<(MemberId, Nanos)> {
        let until = self.now + limit;
        self.run_while(until, |sim| sim.master().is_none());
        self.master().map(|m| (m, self.now))
    }

    /// Runs until a member other than `old` holds a lease (the old one may still hold its own
    /// until it runs out); returns it and when.
    pub fn until_master_besides(
        &mut self,
        old: MemberId,
        limit: Nanos,
    ) -> Option<(MemberId, Nanos)> {
        let until = self.now + limit;
        let others = |sim: &Sim| sim.masters().into_iter().find(|&m| m != old);
        self.run_while(until, |sim| others(sim).is_none());
        others(self).map(|m| (m, self.now))
    }

    /// Every member holding a lease now (the checker guarantees at most one).
    pub fn masters(&self) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|m| {
                m.election
                    .as_ref()
                    .is_some_and(|e| e.lease(self.local(m.id, self.now)).is_some())
            })
            .map(|m| m.id)
            .collect()
    }

    /// Promises by member, for assertions.
    pub fn promises_of(&self, id: MemberId) -> Vec<Promise> {
        self.promises
            .iter()
            .copied()
            .filter(|p| p.member == id)
            .collect()
    }

    /// Panics with the seed and the violations, if any.
    pub fn assert_safe(&self) {
        assert!(
            self.violations.is_empty(),
            "seed {:#x}: {}",
            self.seed,
            self.violations.join("\n")
        );
        assert!(
            self.errors.is_empty(),
            "seed {:#x}: errors: {:?}",
            self.seed,
            self.errors
        );
    }

    pub fn epochs(&self) -> BTreeMap<u64, MemberId> {
        self.promises.iter().map(|p| (p.epoch, p.member)).collect()
    }
}
