//! What a cluster member's election thread tells the nuklei that may serve only as master
//! (the port switch): whether this member holds a master's lease, in which epoch and until
//! when, and who the leader is. One writer (the election), any number of readers (every
//! switch instance, on every poll).
//!
//! It is a seqlock over atomics: the writer makes the sequence odd, stores the fields, makes
//! it even again; a reader retries until it read the same even sequence before and after the
//! fields. No locks on the read path and no `unsafe`: every field is an atomic, the sequence
//! only tells a reader that the fields it read belong together.
//!
//! A reader must not trust a lease past its end just because the writer did not get to say it
//! ended (a stalled process): [`Mastership::serving`] compares the lease's end with the
//! reader's own clock, every time.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nukleus::Doorbell;

/// This member's part in the election, as far as the readers need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MemberRole {
    /// Follows a leader, or waits for one (the election has not started yet).
    #[default]
    Follower,
    /// Runs for leader (pre-vote or vote).
    Candidate,
    /// Elected; a master only while it also holds the lease.
    Leader,
    /// Stopped taking part (its state could not be saved); never serves until restarted.
    Failed,
}

impl MemberRole {
    fn code(self) -> u64 {
        match self {
            MemberRole::Follower => 0,
            MemberRole::Candidate => 1,
            MemberRole::Leader => 2,
            MemberRole::Failed => 3,
        }
    }

    fn from_code(code: u64) -> MemberRole {
        match code {
            1 => MemberRole::Candidate,
            2 => MemberRole::Leader,
            3 => MemberRole::Failed,
            _ => MemberRole::Follower,
        }
    }

    /// The word `GET /v1/cluster` uses.
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Follower => "follower",
            MemberRole::Candidate => "candidate",
            MemberRole::Leader => "leader",
            MemberRole::Failed => "failed",
        }
    }
}

/// A master's lease: serve in `epoch` until `until` (on this process's monotonic clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterLease {
    pub epoch: u64,
    pub until: Instant,
}

/// One consistent reading of what the election published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The lease this member holds, if it is the master. Check `until` against the clock:
    /// [`Standing::serving`].
    pub lease: Option<MasterLease>,
    pub role: MemberRole,
    /// The election term this member is in.
    pub term: u64,
    /// The leader this member knows of (member id), if any.
    pub leader: Option<u64>,
}

impl Standing {
    /// The epoch this member may serve in at `now`: `Some` while it holds an unexpired lease.
    pub fn serving(&self, now: Instant) -> Option<u64> {
        self.lease
            .filter(|lease| now < lease.until)
            .map(|lease| lease.epoch)
    }

    /// How much of the lease is left at `now`.
    pub fn lease_remaining(&self, now: Instant) -> Option<Duration> {
        self.lease
            .filter(|lease| now < lease.until)
            .map(|lease| lease.until - now)
    }
}

/// The published standing of this member (see the module documentation).
pub struct Mastership {
    /// Instants are stored as nanoseconds since this one.
    origin: Instant,
    sequence: AtomicU64,
    /// 0: no lease.
    epoch: AtomicU64,
    until: AtomicU64,
    role: AtomicU64,
    term: AtomicU64,
    /// 0: no leader known (raft ids are non-zero).
    leader: AtomicU64,
    /// Cores to wake when the standing changes in a way a parked reader must see at once.
    watchers: Mutex<Vec<Arc<Doorbell>>>,
}

impl std::fmt::Debug for Mastership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Mastership").field(&self.read()).finish()
    }
}

impl Default for Mastership {
    fn default() -> Self {
        Mastership::new()
    }
}

impl Mastership {
    /// A member that holds no lease and knows no leader.
    pub fn new() -> Mastership {
        Mastership {
            origin: Instant::now(),
            sequence: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            until: AtomicU64::new(0),
            role: AtomicU64::new(MemberRole::Follower.code()),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// Wakes `doorbell`'s core whenever [`Mastership::publish`] is asked to.
    pub fn watch(&self, doorbell: Arc<Doorbell>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if !watchers.iter().any(|d| Arc::ptr_eq(d, &doorbell)) {
            watchers.push(doorbell);
        }
    }

    /// Publishes a new standing (one writer only) and, if `wake`, rings every watcher's
    /// doorbell so a parked reader sees it now rather than at its next deadline.
    pub fn publish(&self, standing: &Standing, wake: bool) {
        let (epoch, until) = match standing.lease {
            Some(lease) => (
                lease.epoch,
                u64::try_from(
                    lease
                        .until
                        .saturating_duration_since(self.origin)
                        .as_nanos(),
                )
                .unwrap_or(u64::MAX),
            ),
            None => (0, 0),
        };
        let sequence = self.sequence.load(Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(1), Ordering::Relaxed);
        // The odd sequence is visible before any field changes.
        fence(Ordering::Release);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.until.store(until, Ordering::Relaxed);
        self.role.store(standing.role.code(), Ordering::Relaxed);
        self.term.store(standing.term, Ordering::Relaxed);
        self.leader
            .store(standing.leader.unwrap_or(0), Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(2), Ordering::Release);
        if wake {
            let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            for doorbell in watchers.iter() {
                doorbell.ring();
            }
        }
    }

    /// The latest published standing.
    pub fn read(&self) -> Standing {
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let epoch = self.epoch.load(Ordering::Relaxed);
            let until = self.until.load(Ordering::Relaxed);
            let role = self.role.load(Ordering::Relaxed);
            let term = self.term.load(Ordering::Relaxed);
            let leader = self.leader.load(Ordering::Relaxed);
            // The field loads happen before the second sequence load.
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) != before {
                continue;
            }
            return Standing {
                lease: (epoch != 0).then(|| MasterLease {
                    epoch,
                    until: self.origin + Duration::from_nanos(until),
                }),
                role: MemberRole::from_code(role),
                term,
                leader: (leader != 0).then_some(leader),
            };
        }
    }

    /// The epoch this member may serve in at `now` (read, then checked against the clock).
    pub fn serving(&self, now: Instant) -> Option<u64> {
        self.read().serving(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_lease_serves_until_its_end_on_the_readers_clock() {
        let m = Mastership::new();
        let now = Instant::now();
        assert_eq!(m.serving(now), None);
        let lease = MasterLease {
            epoch: 7,
            until: now + Duration::from_millis(100),
        };
        m.publish(
            &Standing {
                lease: Some(lease),
                role: MemberRole::Leader,
                term: 7,
                leader: Some(2),
            },
            false,
        );
        let standing = m.read();
        assert_eq!(standing.role, MemberRole::Leader);
        assert_eq!(standing.leader, Some(2));
        assert_eq!(standing.serving(now), Some(7));
        assert_eq!(
            standing.lease_remaining(now),
            Some(Duration::from_millis(100))
        );
        assert_eq!(standing.serving(now + Duration::from_millis(99)), Some(7));
        assert_eq!(standing.serving(now + Duration::from_millis(100)), None);
    }

    /// The writer keeps every field equal to the epoch; a reader must never see a mix.
    /// The writer publishes until the reader has read many times alongside it (bounded in
    /// time), so a reader thread the scheduler starts late still reads while publishes go on.
    #[test]
    fn readers_never_see_half_a_standing() {
        const MIN_PUBLISHES: u64 = 200_000;
        const MIN_READS: u64 = 10_000;
        let m = Arc::new(Mastership::new());
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let reader = {
            let (m, stop, reads) = (m.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = m.read();
                    if let Some(lease) = s.lease {
                        assert_eq!(Some(lease.epoch), s.leader, "torn read");
                        assert_eq!(lease.epoch, s.term, "torn read");
                        assert_eq!(
                            lease.until,
                            m.origin + Duration::from_nanos(lease.epoch * 1000),
                            "torn read"
                        );
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut epoch = 0u64;
        while epoch < MIN_PUBLISHES
            || (reads.load(Ordering::Relaxed) < MIN_READS && Instant::now() < deadline)
        {
            epoch += 1;
            m.publish(
                &Standing {
                    lease: Some(MasterLease {
                        epoch,
                        until: m.origin + Duration::from_nanos(epoch * 1000),
                    }),
                    role: MemberRole::Leader,
                    term: epoch,
                    leader: Some(epoch),
                },
                false,
            );
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader saw no torn standing");
        assert!(
            reads.load(Ordering::Relaxed) >= MIN_READS,
            "the reader read {} times in 20 s of publishing",
            reads.load(Ordering::Relaxed)
        );
    }
}
