//! The runtime re-plan (opt-in: `[reaktor] replan_interval_ms`): every interval, the reaktor
//! measures the share of its cpu each core's thread actually gets while it wants to run (from
//! the kernel's scheduler statistics: time on the cpu against time waiting for it), and moves
//! *new* connections away from a core whose share has fallen well below the best core's —
//! typically because another process now runs on its cpu. Live connections stay where they
//! are; the tcp instances of the other cores take the new connections, including those the
//! kernel queues to the starved core's socket ([`nukleus_tcp::steering`]). After [`PROBE_AFTER`] intervals the core accepts again and is
//! measured afresh.
//!
//! Why not re-run the placement planner on measured stage costs: with every stage splittable
//! (the switch by key), its model puts every stage on every core whatever the stages cost, so
//! a re-plan from changed stage costs would never move anything. What changes at run time is
//! what a core is worth, and that is what this measures. (A first version compared busy time
//! per unit of work between cores; `benches/replan.sh` showed that signal pointing at the
//! wrong core — a thread sharing its cpu with the I/O-bound load generator looked costlier
//! than one sharing it with busy loops — and the move cost 29 % of the throughput. A second
//! version had the starved core accept and hand each connection over through a queue; its
//! accept then waited for the starved thread, and p99 latency got worse, not better.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nukleus_tcp::Steering;

/// A core whose cpu share is below the best accepting core's divided by this stops accepting
/// new connections.
pub const POORER: f64 = 1.5;
/// Intervals after which a core that stopped accepting is tried again.
pub const PROBE_AFTER: u32 = 10;
/// A core thread must have wanted the cpu (run + wait) for this fraction of the interval for
/// its share to be judged.
pub const MIN_DEMAND: f64 = 0.05;

/// A change of plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `core` stops taking new connections: its thread got `share` of its cpu against `best`.
    Stop { core: usize, share: f64, best: f64 },
    /// `core` takes new connections again (to be measured afresh).
    Resume { core: usize },
}

/// The decision state, per core.
#[derive(Debug, Clone)]
pub struct Replanner {
    accepting: Vec<bool>,
    stopped_for: Vec<u32>,
}

impl Replanner {
    /// Every one of `cores` accepting.
    pub fn new(cores: usize) -> Replanner {
        Replanner {
            accepting: vec![true; cores],
            stopped_for: vec![0; cores],
        }
    }

    /// Which cores accept new connections.
    pub fn accepting(&self) -> &[bool] {
        &self.accepting
    }

    /// One interval's measurements: per core, the share of its cpu its thread got while it
    /// wanted to run (0..=1), or `None` when it hardly wanted the cpu. Returns the changes.
    pub fn step(&mut self, shares: &[Option<f64>]) -> Vec<Change> {
        let mut changes = Vec::new();
        for core in 0..self.accepting.len() {
            if !self.accepting[core] {
                self.stopped_for[core] += 1;
                if self.stopped_for[core] >= PROBE_AFTER {
                    self.accepting[core] = true;
                    self.stopped_for[core] = 0;
                    changes.push(Change::Resume { core });
                }
            }
        }
        let best = (0..self.accepting.len())
            .filter(|&c| self.accepting[c])
            .filter_map(|c| shares.get(c).copied().flatten())
            .fold(0.0, f64::max);
        if best <= 0.0 {
            return changes;
        }
        for core in 0..self.accepting.len() {
            let Some(share) = shares.get(core).copied().flatten() else {
                continue;
            };
            let others = self.accepting.iter().filter(|&&a| a).count();
            if self.accepting[core] && others > 1 && share * POORER < best {
                self.accepting[core] = false;
                self.stopped_for[core] = 0;
                changes.push(Change::Stop { core, share, best });
            }
        }
        changes
    }
}

/// A core thread's scheduler clock: nanoseconds on the cpu and waiting for it while runnable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedClock {
    pub run_ns: u64,
    pub wait_ns: u64,
}

/// Reads `/proc/self/task/<tid>/schedstat` (`run_ns wait_ns timeslices`).
pub fn read_clock(tid: u64) -> Option<SchedClock> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    Some(SchedClock {
        run_ns: fields.next()??,
        wait_ns: fields.next()??,
    })
}

/// The calling thread's id (`/proc/thread-self` links to `<pid>/task/<tid>`).
pub fn current_tid() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Per core: the cpu share between two clock readings over `interval`, if the thread wanted
/// the cpu for at least [`MIN_DEMAND`] of it.
pub fn shares(
    before: &[Option<SchedClock>],
    after: &[Option<SchedClock>],
    interval: Duration,
) -> Vec<Option<f64>> {
    let interval = interval.as_nanos() as f64;
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let (b, a) = ((*b)?, (*a)?);
            let run = a.run_ns.saturating_sub(b.run_ns) as f64;
            let wait = a.wait_ns.saturating_sub(b.wait_ns) as f64;
            (run + wait >= MIN_DEMAND * interval).then(|| run / (run + wait))
        })
        .collect()
}

/// The re-plan loop: runs until `shutdown`, applying each change to the tcp instances of the
/// core it concerns (`tcp_cores[i]` is the core of tcp instance `i`; `core_tids[c]` the thread
/// id of core `c`, 0 until the thread has started).
pub fn run(
    steering: Arc<Steering>,
    tcp_cores: Vec<usize>,
    core_tids: Arc<Vec<AtomicU64>>,
    interval: Duration,
    shutdown: Arc<AtomicBool>,
    stats: &crate::stats::SharedStats,
) {
    let read = || -> Vec<Option<SchedClock>> {
        core_tids
            .iter()
            .map(|t| match t.load(Ordering::Relaxed) {
                0 => None,
                tid => read_clock(tid),
            })
            .collect()
    };
    let mut planner = Replanner::new(core_tids.len());
    let mut before = read();
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::park_timeout(interval);
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        let after = read();
        let measured = shares(&before, &after, interval);
        before = after;
        for change in planner.step(&measured) {
            let text = match change {
                Change::Stop { core, share, best } => format!(
                    "re-plan: core {core}'s thread got {:.0}% of its cpu, the best core {:.0}%; the other cores take its new connections (live connections stay)",
                    share * 100.0,
                    best * 100.0
                ),
                Change::Resume { core } => format!(
                    "re-plan: core {core} accepts new connections again (to be measured afresh)"
                ),
            };
            tracing::info!("{text}");
            stats
                .events
                .push(stats.started.elapsed().as_nanos() as u64, text);
        }
        for (instance, &core) in tcp_cores.iter().enumerate() {
            steering.set_accepting(instance, planner.accepting()[core]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_whose_thread_gets_much_less_cpu_stops_accepting_and_is_probed_later() {
        let mut p = Replanner::new(2);
        assert!(p.step(&[Some(0.9), Some(0.7)]).is_empty(), "within 1.5x");
        assert_eq!(
            p.step(&[Some(0.9), Some(0.3)]),
            [Change::Stop {
                core: 1,
                share: 0.3,
                best: 0.9
            }]
        );
        assert_eq!(p.accepting(), [true, false]);
        for _ in 1..PROBE_AFTER {
            assert!(p.step(&[Some(0.9), Some(0.3)]).is_empty());
        }
        assert_eq!(
            p.step(&[Some(0.9), Some(0.3)]),
            [
                Change::Resume { core: 1 },
                Change::Stop {
                    core: 1,
                    share: 0.3,
                    best: 0.9
                }
            ],
            "probed, measured, still starved: stopped again"
        );
        // The other process is gone: after the next probe the core stays.
        for _ in 1..PROBE_AFTER {
            p.step(&[Some(0.9), None]);
        }
        assert_eq!(
            p.step(&[Some(0.9), Some(0.85)]),
            [Change::Resume { core: 1 }]
        );
        assert!(p.step(&[Some(0.9), Some(0.85)]).is_empty());
        assert_eq!(p.accepting(), [true, true]);
    }

    #[test]
    fn the_last_accepting_core_never_stops_and_idle_cores_are_not_judged() {
        let mut p = Replanner::new(3);
        p.step(&[Some(0.9), Some(0.2), Some(0.2)]);
        assert_eq!(p.accepting(), [true, false, false]);
        assert!(p.step(&[Some(0.1), None, None]).is_empty());
        assert_eq!(p.accepting(), [true, false, false]);
        let mut q = Replanner::new(2);
        assert!(q.step(&[Some(0.9), None]).is_empty());
        assert!(q.step(&[None, None]).is_empty());
    }

    #[test]
    fn shares_come_from_run_and_wait_time_when_the_thread_wanted_the_cpu() {
        let clock = |run_ns, wait_ns| Some(SchedClock { run_ns, wait_ns });
        let before = [clock(0, 0), clock(0, 0), None];
        let after = [
            clock(300_000_000, 100_000_000),
            clock(1_000_000, 0),
            clock(5, 5),
        ];
        let got = shares(&before, &after, Duration::from_secs(1));
        assert_eq!(got, [Some(0.75), None, None]);
    }

    #[test]
    fn this_threads_scheduler_clock_is_readable() {
        let tid = current_tid().expect("/proc/thread-self");
        let clock = read_clock(tid).expect("schedstat");
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {}
        let later = read_clock(tid).unwrap();
        assert!(later.run_ns > clock.run_ns, "{clock:?} -> {later:?}");
    }
}
