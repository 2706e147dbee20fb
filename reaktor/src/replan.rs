//! The runtime re-plan (opt-in: `[reaktor] replan_interval_ms`): every interval, the reaktor
//! measures each core's cost per unit of work (the busy time of its nuklei over the frames and
//! events they handled) and moves *new* connections away from a core that has become much
//! costlier than the others — typically because another process now shares its cpu, so the
//! core's thread is descheduled in the middle of its polls. Live connections stay where they
//! are; the tcp instance of that core hands each new connection to a core that still accepts
//! ([`nukleus_tcp::steering`]). After [`PROBE_AFTER`] intervals the core accepts again and is
//! measured afresh.
//!
//! Why not re-run the placement planner: with every stage splittable (the switch by key), its
//! model puts every stage on every core whatever the stage costs, so a re-plan from changed
//! stage costs would never move anything. What does change at run time is what a core is
//! worth, and that is what this measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nukleus_tcp::Steering;

use crate::metrics::SharedStats;

/// Work units a core must have handled in an interval for its cost to be compared.
pub const MIN_WORK: u64 = 2_000;
/// A core whose cost per unit exceeds the cheapest accepting core's by this factor stops
/// accepting new connections.
pub const COSTLIER: f64 = 1.5;
/// Intervals after which a core that stopped accepting is tried again.
pub const PROBE_AFTER: u32 = 10;

/// A change of plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `core` stops taking new connections: it costs `cost` ns per unit against `best`.
    Stop { core: usize, cost: f64, best: f64 },
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

    /// One interval's measurements: per core, its cost per unit of work (ns), or `None` when it
    /// did too little work to tell. Returns the changes made.
    pub fn step(&mut self, costs: &[Option<f64>]) -> Vec<Change> {
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
            .filter_map(|c| costs.get(c).copied().flatten())
            .fold(f64::INFINITY, f64::min);
        if !best.is_finite() {
            return changes;
        }
        for core in 0..self.accepting.len() {
            let Some(cost) = costs.get(core).copied().flatten() else {
                continue;
            };
            let others = self.accepting.iter().filter(|&&a| a).count();
            if self.accepting[core] && others > 1 && cost > COSTLIER * best {
                self.accepting[core] = false;
                self.stopped_for[core] = 0;
                changes.push(Change::Stop { core, cost, best });
            }
        }
        changes
    }
}

/// Per core: (busy nanoseconds, work units) summed over its nuklei.
fn core_counters(stats: &SharedStats, cores: usize) -> Vec<(u64, u64)> {
    let mut sums = vec![(0, 0); cores];
    for entry in &stats.instances {
        let (busy, _, work) = entry.stats.counters();
        if let Some(s) = sums.get_mut(entry.core) {
            s.0 += busy;
            s.1 += work;
        }
    }
    sums
}

/// Per core: cost per unit of work between two counter snapshots, if it did enough work.
pub fn costs(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<Option<f64>> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, w0), &(b1, w1))| {
            let work = w1.saturating_sub(w0);
            (work >= MIN_WORK).then(|| b1.saturating_sub(b0) as f64 / work as f64)
        })
        .collect()
}

/// The re-plan loop: runs until `shutdown`, applying each change to the tcp instances of the
/// core it concerns (`tcp_cores[i]` is the core of tcp instance `i`).
pub fn run(
    stats: Arc<SharedStats>,
    steering: Arc<Steering>,
    tcp_cores: Vec<usize>,
    cores: usize,
    interval: Duration,
    shutdown: Arc<AtomicBool>,
) {
    let mut planner = Replanner::new(cores);
    let mut before = core_counters(&stats, cores);
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::park_timeout(interval);
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        let after = core_counters(&stats, cores);
        let measured = costs(&before, &after);
        before = after;
        for change in planner.step(&measured) {
            match change {
                Change::Stop { core, cost, best } => tracing::info!(
                    core,
                    cost_ns_per_unit = cost,
                    best_ns_per_unit = best,
                    "re-plan: core {core} costs {:.1}x the cheapest accepting core per unit of work; its tcp hands new connections to the other cores (live connections stay)",
                    cost / best
                ),
                Change::Resume { core } => tracing::info!(
                    core,
                    "re-plan: core {core} accepts new connections again (to be measured afresh)"
                ),
            }
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
    fn a_core_much_costlier_than_the_others_stops_accepting_and_is_probed_later() {
        let mut p = Replanner::new(2);
        assert!(
            p.step(&[Some(1000.0), Some(1400.0)]).is_empty(),
            "within 1.5x"
        );
        let changes = p.step(&[Some(1000.0), Some(2600.0)]);
        assert_eq!(
            changes,
            [Change::Stop {
                core: 1,
                cost: 2600.0,
                best: 1000.0
            }]
        );
        assert_eq!(p.accepting(), [true, false]);
        for _ in 1..PROBE_AFTER {
            assert!(p.step(&[Some(1000.0), Some(2600.0)]).is_empty());
        }
        assert_eq!(
            p.step(&[Some(1000.0), Some(2600.0)]),
            [
                Change::Resume { core: 1 },
                Change::Stop {
                    core: 1,
                    cost: 2600.0,
                    best: 1000.0
                }
            ],
            "probed, measured, still costly: stopped again"
        );
        // Contention gone: after the next probe it stays.
        for _ in 1..PROBE_AFTER {
            p.step(&[Some(1000.0), None]);
        }
        assert_eq!(
            p.step(&[Some(1000.0), Some(1100.0)]),
            [Change::Resume { core: 1 }]
        );
        assert!(p.step(&[Some(1000.0), Some(1100.0)]).is_empty());
        assert_eq!(p.accepting(), [true, true]);
    }

    #[test]
    fn the_last_accepting_core_never_stops_and_idle_cores_are_not_judged() {
        let mut p = Replanner::new(3);
        p.step(&[Some(100.0), Some(1000.0), Some(1000.0)]);
        assert_eq!(p.accepting(), [true, false, false]);
        // Now core 0 looks costly too, but it is the only one left.
        assert!(p.step(&[Some(5000.0), None, None]).is_empty());
        assert_eq!(p.accepting(), [true, false, false]);
        // Cores without enough work have no cost and are left alone.
        let mut q = Replanner::new(2);
        assert!(q.step(&[Some(100.0), None]).is_empty());
        assert!(q.step(&[None, None]).is_empty());
    }

    #[test]
    fn costs_need_enough_work_in_the_interval() {
        let before = [(0, 0), (0, 0)];
        let after = [(4_000_000, 2_000), (1_000_000, 10)];
        assert_eq!(costs(&before, &after), [Some(2000.0), None]);
    }
}
