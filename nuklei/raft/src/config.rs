//! What an election member is told: who it is, who the members are, and its clocks.
//!
//! Every duration is converted here into raft-rs ticks, and the lease is checked against the
//! clock assumption (see [`ElectionConfig::max_clock_drift_ppm`]) so that a configuration that
//! could let two masters overlap is refused at start, with the numbers that make it unsafe.

use std::time::Duration;

use thiserror::Error;

/// A member's id in the cluster (raft-rs ids: non-zero).
pub type MemberId = u64;

/// The configuration of one member of the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// This member's id (non-zero, one of `members`).
    pub id: MemberId,
    /// Every voting member's id, this one included (3 or 5 in a real cluster; 1 works too).
    pub members: Vec<MemberId>,
    /// The raft clock: time is fed to raft-rs in ticks of this length. Heartbeat and election
    /// timeout are multiples of it; a finer tick makes the vote guard (see
    /// [`Timing::vote_guard`]) closer to the election timeout.
    pub tick: Duration,
    /// How often the leader sends heartbeats and asks a quorum to renew its lease.
    pub heartbeat: Duration,
    /// The followers' minimum election timeout: a follower that heard from a leader votes for
    /// nobody else before this much time has passed, and starts an election after a random
    /// time in `[election_timeout, 2 * election_timeout)` without a leader.
    pub election_timeout: Duration,
    /// How long a quorum's acknowledgement lets the leader serve, counted from the instant the
    /// acknowledged heartbeat was sent. `None`: the longest lease the clock assumption allows.
    pub lease: Option<Duration>,
    /// The clock assumption: every member's monotonic clock runs at the rate of real time
    /// within this many parts per million (NTP slews CLOCK_MONOTONIC by at most 500 ppm;
    /// the default 10,000 = 1% leaves room for worse clocks).
    pub max_clock_drift_ppm: u32,
    /// The largest frame a peer may send (length prefix excluded); longer is a protocol error.
    pub max_frame: usize,
    /// Seed of the election-timeout jitter; `None` draws one from the clock. Simulations pass
    /// one so a schedule can be replayed.
    pub seed: Option<u64>,
}

impl ElectionConfig {
    /// A configuration with the default clocks: tick 10 ms, heartbeat 50 ms, election timeout
    /// 300 ms, the longest safe lease, 1% drift, 64 KiB frames.
    pub fn new(id: MemberId, members: Vec<MemberId>) -> Self {
        ElectionConfig {
            id,
            members,
            tick: Duration::from_millis(10),
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            lease: None,
            max_clock_drift_ppm: 10_000,
            max_frame: 64 * 1024,
            seed: None,
        }
    }

    /// Checks the configuration and derives the tick counts and the lease.
    pub fn timing(&self) -> Result<Timing, ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.members.is_empty() {
            return Err(ConfigError::NoMembers);
        }
        let mut sorted = self.members.clone();
        sorted.sort_unstable();
        if sorted.first() == Some(&0) {
            return Err(ConfigError::ZeroId);
        }
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateMember(pair[0]));
        }
        if !sorted.contains(&self.id) {
            return Err(ConfigError::NotAMember {
                id: self.id,
                members: sorted,
            });
        }
        if self.tick.is_zero() {
            return Err(ConfigError::ZeroTick);
        }
        let heartbeat_ticks = ticks_of("heartbeat", self.heartbeat, self.tick)?;
        let election_ticks = ticks_of("election_timeout", self.election_timeout, self.tick)?;
        if election_ticks <= heartbeat_ticks || election_ticks < 2 {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                heartbeat: self.heartbeat,
                election_timeout: self.election_timeout,
                tick: self.tick,
            });
        }
        if self.max_clock_drift_ppm >= 500_000 {
            return Err(ConfigError::Drift(self.max_clock_drift_ppm));
        }
        if self.max_frame < 1024 {
            return Err(ConfigError::FrameTooSmall(self.max_frame));
        }
        // A follower counts election ticks from the first tick boundary after the heartbeat
        // arrived, so the time it surely refuses other candidates is one tick short of the
        // election timeout.
        let vote_guard = self.tick * (election_ticks - 1);
        let max_lease = max_lease(vote_guard, self.max_clock_drift_ppm);
        let lease = match self.lease {
            None => max_lease,
            Some(lease) if lease > max_lease => {
                return Err(ConfigError::LeaseTooLong {
                    lease,
                    max_lease,
                    vote_guard,
                    drift_ppm: self.max_clock_drift_ppm,
                })
            }
            Some(lease) if lease < self.heartbeat * 2 => {
                return Err(ConfigError::LeaseTooShort {
                    lease,
                    heartbeat: self.heartbeat,
                })
            }
            Some(lease) => lease,
        };
        if lease.is_zero() {
            return Err(ConfigError::LeaseTooShort {
                lease,
                heartbeat: self.heartbeat,
            });
        }
        Ok(Timing {
            tick: self.tick,
            heartbeat: self.heartbeat,
            heartbeat_ticks: heartbeat_ticks as usize,
            election_ticks: election_ticks as usize,
            vote_guard,
            lease,
        })
    }
}

/// The validated clocks of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The length of one raft tick.
    pub tick: Duration,
    /// The interval between lease renewals (and raft heartbeats).
    pub heartbeat: Duration,
    /// raft-rs `heartbeat_tick`.
    pub heartbeat_ticks: usize,
    /// raft-rs `election_tick` (the minimum election timeout in ticks).
    pub election_ticks: usize,
    /// How long, at least, a member that acknowledged a leader refuses every other candidate:
    /// `(election_ticks - 1) * tick` on its own clock.
    pub vote_guard: Duration,
    /// How long the leader may serve after a quorum acknowledged a heartbeat, counted from the
    /// heartbeat's send instant on the leader's clock.
    pub lease: Duration,
}

/// The longest lease with which an old master has stopped before any voter can help elect a
/// new one, when both clocks may run `ppm` parts per million fast or slow:
/// `lease * (1 + d) <= guard * (1 - d)` in real time, rounded down to a millisecond.
pub fn max_lease(vote_guard: Duration, drift_ppm: u32) -> Duration {
    let ppm = u128::from(drift_ppm);
    let nanos = vote_guard.as_nanos() * (1_000_000 - ppm) / (1_000_000 + ppm);
    let millis = nanos / 1_000_000;
    Duration::from_millis(millis as u64)
}

fn ticks_of(name: &'static str, value: Duration, tick: Duration) -> Result<u32, ConfigError> {
    let (value_ns, tick_ns) = (value.as_nanos(), tick.as_nanos());
    if value_ns == 0 || value_ns % tick_ns != 0 || value_ns / tick_ns > 100_000 {
        return Err(ConfigError::NotTickMultiple { name, value, tick });
    }
    Ok((value_ns / tick_ns) as u32)
}

/// A configuration that cannot run safely.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("member ids must be non-zero (raft reserves 0 for 'nobody')")]
    ZeroId,
    #[error("the cluster has no members: list at least this member")]
    NoMembers,
    #[error("member {0} is listed twice: every member id must be unique")]
    DuplicateMember(MemberId),
    #[error("this member's id {id} is not among the members {members:?}: add it or fix the id")]
    NotAMember {
        id: MemberId,
        members: Vec<MemberId>,
    },
    #[error("the tick must be longer than zero")]
    ZeroTick,
    #[error("{name} ({value:?}) must be a non-zero multiple of the tick ({tick:?}), at most 100,000 ticks")]
    NotTickMultiple {
        name: &'static str,
        value: Duration,
        tick: Duration,
    },
    #[error(
        "the election timeout ({election_timeout:?}) must be longer than the heartbeat ({heartbeat:?}) \
         and at least two ticks ({tick:?} each)"
    )]
    ElectionNotAboveHeartbeat {
        heartbeat: Duration,
        election_timeout: Duration,
        tick: Duration,
    },
    #[error("a clock drift of {0} ppm is not a clock: use less than 500,000")]
    Drift(u32),
    #[error("max_frame {0} is too small: raft messages need at least 1024 bytes")]
    FrameTooSmall(usize),
    #[error(
        "a lease of {lease:?} is unsafe: a follower refuses other candidates for {vote_guard:?} \
         after a heartbeat, which with clocks off by {drift_ppm} ppm allows at most {max_lease:?}; \
         shorten the lease or lengthen the election timeout"
    )]
    LeaseTooLong {
        lease: Duration,
        max_lease: Duration,
        vote_guard: Duration,
        drift_ppm: u32,
    },
    #[error("a lease of {lease:?} is shorter than two heartbeats ({heartbeat:?} each): the master would flap")]
    LeaseTooShort {
        lease: Duration,
        heartbeat: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_give_the_longest_lease_the_guard_allows() {
        let timing = ElectionConfig::new(1, vec![1, 2, 3]).timing().unwrap();
        assert_eq!(timing.heartbeat_ticks, 5);
        assert_eq!(timing.election_ticks, 30);
        assert_eq!(timing.vote_guard, ms(290));
        // 290 ms * 0.99 / 1.01 = 284.26 ms
        assert_eq!(timing.lease, ms(284));
    }

    #[test]
    fn max_lease_accounts_for_drift_on_both_clocks() {
        assert_eq!(max_lease(ms(1000), 0), ms(1000));
        assert_eq!(max_lease(ms(1000), 500), ms(999));
        assert_eq!(max_lease(ms(1000), 10_000), ms(980));
    }

    #[test]
    fn a_lease_at_the_edge_is_accepted_and_one_millisecond_more_refused() {
        let mut config = ElectionConfig::new(1, vec![1, 2, 3]);
        config.lease = Some(ms(284));
        assert_eq!(config.timing().unwrap().lease, ms(284));
        config.lease = Some(ms(285));
        let err = config.timing().unwrap_err();
        assert!(matches!(err, ConfigError::LeaseTooLong { max_lease, .. } if max_lease == ms(284)));
        assert!(err.to_string().contains("shorten the lease"));
    }

    #[test]
    fn bad_memberships_are_refused() {
        assert_eq!(
            ElectionConfig::new(0, vec![0, 1]).timing(),
            Err(ConfigError::ZeroId)
        );
        assert_eq!(
            ElectionConfig::new(1, vec![]).timing(),
            Err(ConfigError::NoMembers)
        );
        assert_eq!(
            ElectionConfig::new(1, vec![1, 2, 2]).timing(),
            Err(ConfigError::DuplicateMember(2))
        );
        assert!(matches!(
            ElectionConfig::new(4, vec![1, 2, 3]).timing(),
            Err(ConfigError::NotAMember { id: 4, .. })
        ));
    }

    #[test]
    fn clocks_must_be_tick_multiples_with_election_above_heartbeat() {
        let mut config = ElectionConfig::new(1, vec![1]);
        config.heartbeat = ms(55);
        assert!(matches!(
            config.timing(),
            Err(ConfigError::NotTickMultiple {
                name: "heartbeat",
                ..
            })
        ));
        config.heartbeat = ms(300);
        assert!(matches!(
            config.timing(),
            Err(ConfigError::ElectionNotAboveHeartbeat { .. })
        ));
        config.heartbeat = ms(50);
        config.lease = Some(ms(60));
        assert!(matches!(
            config.timing(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
    }
}
