//! The `raft` nukleus: one cluster member's election ([`Election`]) on its peer sockets
//! ([`PeerNet`]), publishing this member's standing ([`Mastership`]) for the port switch.
//!
//! It exchanges no streams. The reaktor runs it alone on its own thread, so whatever the
//! switch cores do (a million-port batch, a SendMsg flood) cannot delay a heartbeat or a lease
//! renewal; the thread sleeps in epoll until a peer's bytes arrive or the election's next
//! deadline. Every poll reads the clock after reading the sockets (the election's rule), and
//! publishes the lease it holds at that instant. The switch compares the lease's end with its
//! own clock on every poll, so a stalled raft thread never extends a lease by being late.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streams::{MasterLease, Mastership, MemberRole, Nukleus, PollContext, Standing, TokenRange};
use thiserror::Error;

use crate::config::{ElectionConfig, MemberId};
use crate::durable::FileState;
use crate::election::{Election, ElectionError, Event, OpenError, Role};
use crate::lock::{LockError, StateLock};
use crate::net::{NetConfig, PeerNet, Received};

/// What a member needs to run.
#[derive(Clone, Debug)]
pub struct RaftNukleusConfig {
    pub election: ElectionConfig,
    /// Where `raft-state` and the lock live; one directory per member.
    pub state_dir: PathBuf,
    /// This member's peer address (the listener).
    pub listen: std::net::SocketAddr,
    /// The other members and their peer addresses.
    pub peers: Vec<(MemberId, std::net::SocketAddr)>,
    pub net: NetConfig,
    /// Run the member's thread under the real-time FIFO policy with this priority (1..=99),
    /// so that a saturated core does not delay heartbeats and lease renewals; `None`: the
    /// ordinary policy.
    pub realtime_priority: Option<i32>,
}

/// Why a member could not start.
#[derive(Debug, Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open the raft state: {0}")]
    Open(#[from] OpenError),
    #[error("cannot listen for peers on {address}: {source}; is another member or process using this peer address?")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How late the thread woke for the election's deadlines: a log2 histogram in microseconds.
#[derive(Clone, Debug, Default)]
struct Lateness {
    buckets: [u64; 32],
    max_us: u64,
    count: u64,
}

impl Lateness {
    fn record(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - us.leading_zeros()) as usize;
        self.buckets[bucket.min(31)] += 1;
        self.max_us = self.max_us.max(us);
        self.count += 1;
    }

    /// Wake-ups at least `2^(bits-1)` us late (bucket `bits` and above): 1,024 us for 11.
    fn at_least(&self, bits: usize) -> u64 {
        self.buckets[bits.min(31)..].iter().sum()
    }

    /// The upper bound (us) of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return if bucket == 0 { 0 } else { (1u64 << bucket) - 1 };
            }
        }
        self.max_us
    }
}

/// One member of the cluster's election, on its own thread.
pub struct RaftNukleus {
    election: Election,
    net: PeerNet,
    mastership: Arc<Mastership>,
    _lock: StateLock,
    published: Option<Standing>,
    /// The deadline the last poll asked to be woken at.
    due: Option<Instant>,
    lateness: Lateness,
    /// The election stopped (its state could not be saved): logged once.
    failure_logged: bool,
    /// Terms this member saw begin (elections anywhere in the cluster).
    terms_seen: u64,
    /// The real-time priority still to take, on the first poll (on the member's own thread).
    priority_pending: Option<i32>,
    /// Whether the thread runs under the real-time policy.
    realtime: bool,
}

impl RaftNukleus {
    /// Locks the state directory, opens the durable state, binds the peer listener.
    pub fn start(
        config: RaftNukleusConfig,
        mastership: Arc<Mastership>,
        now: Instant,
    ) -> Result<RaftNukleus, RaftStartError> {
        let lock = StateLock::acquire(&config.state_dir)?;
        let durable =
            FileState::open(&config.state_dir).map_err(|e| RaftStartError::Open(e.into()))?;
        let election = Election::open(config.election.clone(), Box::new(durable), now)?;
        let net = PeerNet::bind(
            config.election.id,
            config.listen,
            &config.peers,
            config.net.clone(),
            now,
        )
        .map_err(|source| RaftStartError::Bind {
            address: config.listen,
            source,
        })?;
        let (term, vote) = election.hard_state();
        tracing::info!(target: "raft", member = config.election.id, term, ?vote, peer = %config.listen, state_dir = %config.state_dir.display(), "cluster member starting");
        let mut nukleus = RaftNukleus {
            election,
            net,
            mastership,
            _lock: lock,
            published: None,
            due: None,
            lateness: Lateness::default(),
            failure_logged: false,
            terms_seen: 0,
            priority_pending: config.realtime_priority,
            realtime: false,
        };
        nukleus.publish(now, false);
        Ok(nukleus)
    }

    /// The address peers reach this member at (the bound listener).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.net.local_addr()
    }

    fn log_failure(&mut self, error: &ElectionError) {
        if !self.failure_logged {
            self.failure_logged = true;
            tracing::error!(target: "raft", member = self.election.id(), %error, "this member no longer takes part in elections and never serves until it is restarted");
        }
    }

    /// Publishes this member's standing when it changed; wakes the switch cores when what
    /// they serve (the epoch) or whom they redirect to (the leader) changed.
    fn publish(&mut self, now: Instant, events: bool) {
        let status = self.election.status(now);
        let lease = self.election.lease(now).map(|l| MasterLease {
            epoch: l.epoch,
            until: l.until,
        });
        let role = if status.failed.is_some() {
            MemberRole::Failed
        } else {
            match status.role {
                Role::Leader => MemberRole::Leader,
                Role::Candidate | Role::PreCandidate => MemberRole::Candidate,
                Role::Follower => MemberRole::Follower,
            }
        };
        let standing = Standing {
            lease,
            role,
            term: status.term,
            leader: status.leader,
        };
        if self.published == Some(standing) {
            return;
        }
        let wake = events
            || self.published.is_none_or(|p| {
                p.lease.map(|l| l.epoch) != lease.map(|l| l.epoch) || p.leader != standing.leader
            });
        self.mastership.publish(&standing, wake);
        self.published = Some(standing);
    }

    fn on_events(&mut self) -> bool {
        let events = self.election.take_events();
        let id = self.election.id();
        for event in &events {
            match *event {
                Event::BecameMaster { epoch, lease_until } => {
                    let lease_ms = lease_until
                        .saturating_duration_since(Instant::now())
                        .as_millis();
                    tracing::info!(target: "raft", member = id, epoch, lease_ms, "this member is the master");
                }
                Event::LeaseLost { epoch, reason } => {
                    tracing::warn!(target: "raft", member = id, epoch, ?reason, "this member lost its master lease");
                }
                Event::LeaderChanged { term, leader } => {
                    self.terms_seen += 1;
                    tracing::info!(target: "raft", member = id, term, ?leader, "leader changed");
                }
            }
        }
        !events.is_empty()
    }
}

impl Nukleus for RaftNukleus {
    fn kind(&self) -> &'static str {
        "raft"
    }

    fn uses_readiness(&self) -> bool {
        true
    }

    fn register(&mut self, registry: &mio::Registry, tokens: TokenRange) -> std::io::Result<()> {
        self.net.register(registry, tokens)
    }

    fn on_event(&mut self, event: &mio::event::Event) {
        self.net.on_event(event.token());
    }

    fn poll(&mut self, _context: &PollContext) -> usize {
        if let Some(priority) = self.priority_pending.take() {
            match streams::sched::realtime_fifo(priority) {
                Ok(()) => {
                    self.realtime = true;
                    tracing::info!(target: "raft", priority, "election thread runs under SCHED_FIFO: a saturated core does not delay its heartbeats");
                }
                Err(e) => {
                    tracing::warn!(target: "raft", priority, error = %e, "election thread keeps the ordinary scheduling policy (SCHED_FIFO needs CAP_SYS_NICE or an RLIMIT_RTPRIO): a saturated cpu may delay its heartbeats; set [cluster] election_priority = 0 to silence this")
                }
            }
        }
        let woke = Instant::now();
        if let Some(due) = self.due {
            if woke >= due {
                self.lateness.record(woke - due);
            }
        }
        let mut work = self.net.accept(woke);
        let election = &mut self.election;
        let mut failure = None;
        work += self.net.read(woke, |member, bytes| {
            // The instant is read after the bytes were (a heartbeat's guard starts no earlier
            // than its arrival).
            match election.receive(Instant::now(), member, bytes) {
                Ok(()) => Received::Keep,
                Err(e @ (ElectionError::State(_) | ElectionError::Failed(_))) => {
                    failure = Some(e);
                    Received::Keep
                }
                Err(e) => {
                    tracing::warn!(target: "raft", member, error = %e, "peer connection closed");
                    Received::Close
                }
            }
        });
        for member in self.net.take_gone() {
            self.election.reset_peer(member);
        }
        let now = Instant::now();
        if now >= self.election.next_deadline() {
            work += 1;
            if let Err(e) = self.election.tick(now) {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            self.log_failure(&e);
        }
        for outgoing in self.election.take_outgoing() {
            self.net.send(outgoing.to, &outgoing.frame);
        }
        work += self.net.flush(now);
        let events = self.on_events();
        self.publish(now, events);
        self.due = self.deadline();
        work
    }

    fn deadline(&self) -> Option<Instant> {
        let election = self.election.next_deadline();
        Some(
            self.net
                .next_deadline()
                .map_or(election, |net| net.min(election)),
        )
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        let now = Instant::now();
        let status = self.election.status(now);
        let stats = self.election.stats();
        let net = self.net.stats();
        out.push(("term", status.term));
        out.push(("realtime", u64::from(self.realtime)));
        out.push(("leader", status.leader.unwrap_or(0)));
        out.push((
            "master_epoch",
            self.election.lease(now).map_or(0, |l| l.epoch),
        ));
        out.push(("leader_changes_total", self.terms_seen));
        out.push(("frames_in_total", stats.frames_in));
        out.push(("frames_out_total", stats.frames_out));
        out.push(("frames_refused_total", stats.refused));
        out.push(("votes_withheld_total", stats.votes_withheld));
        out.push(("state_saves_total", stats.saves));
        out.push(("peers_connected", self.net.connected() as u64));
        out.push(("peer_connects_total", net.connects));
        out.push(("peer_connections_refused_total", net.refused));
        out.push(("frames_dropped_total", net.dropped_frames));
        out.push(("wakeups_total", self.lateness.count));
        out.push(("wakeup_late_p50_us", self.lateness.quantile(0.5)));
        out.push(("wakeup_late_p99_us", self.lateness.quantile(0.99)));
        out.push(("wakeup_late_max_us", self.lateness.max_us));
        // Counters, so that a measurement can take the difference over its own interval.
        out.push(("wakeups_late_1ms_total", self.lateness.at_least(11)));
        out.push(("wakeups_late_4ms_total", self.lateness.at_least(13)));
        out.push(("wakeups_late_16ms_total", self.lateness.at_least(15)));
        out.push(("wakeups_late_65ms_total", self.lateness.at_least(17)));
    }

    fn shutdown(&mut self) {
        self.net.shutdown();
        let standing = Standing {
            lease: None,
            ..self.mastership.read()
        };
        self.mastership.publish(&standing, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_quantiles_come_from_the_histogram() {
        let mut l = Lateness::default();
        for _ in 0..98 {
            l.record(Duration::from_micros(40));
        }
        l.record(Duration::from_millis(3));
        l.record(Duration::from_millis(20));
        assert_eq!(l.quantile(0.5), 63);
        assert_eq!(l.quantile(0.99), 4095);
        assert_eq!(l.max_us, 20_000);
        assert_eq!((l.at_least(11), l.at_least(15)), (2, 1));
    }
}
