//! The memory guard: a housekeeping thread that gives freed heap back to the system when the
//! nuklei's connection buffers shrank, and keeps the process under `[reaktor]
//! max_memory_bytes` — above it, new connections are refused and the cores shed their
//! largest connection buffers until it is back below 90% of the limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streams::{memory, Doorbell};

use super::core::CoreControl;

/// How often the guard looks.
const INTERVAL: Duration = Duration::from_millis(100);
/// Buffers that shrank by this much since the last trim make the next one worthwhile...
const TRIM_AFTER: usize = 16 << 20;
/// ...and so do buffers that lost half of what they held, if that is at least this much (a
/// small server's connections closing give their memory back too).
const TRIM_AFTER_HALF: usize = 1 << 20;
/// At most one trim (which takes every arena's lock in turn) per this long.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Between two rounds of shedding, the cores republish what they hold.
const SHED_EVERY: Duration = Duration::from_secs(1);

/// The guard's view of the cores.
pub struct Guard {
    pub controls: Vec<Arc<CoreControl>>,
    pub doorbells: Vec<Arc<Doorbell>>,
    /// Private resident bytes above which the guard sheds; `None`: no limit.
    pub limit: Option<u64>,
}

/// What the guard decides from one look (pure, so it is tested without a process).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Bytes each core should shed.
    pub shed: Vec<usize>,
    pub trim: bool,
    /// `Some(overloaded)` when the overload state changes.
    pub overload: Option<bool>,
}

/// The guard's memory between looks.
#[derive(Debug)]
pub struct State {
    overloaded: bool,
    /// The most the buffers held since the last trim.
    peak: usize,
    last_trim: Option<Instant>,
    last_shed: Option<Instant>,
    /// Buffers were shed: what they held goes back at the next look.
    trim_due: bool,
}

impl State {
    pub fn new() -> State {
        State {
            overloaded: false,
            peak: 0,
            last_trim: None,
            last_shed: None,
            trim_due: false,
        }
    }

    /// `buffered`: each core's connection buffers; `resident`: the process's private
    /// resident bytes; `limit`: the memory limit.
    pub fn decide(
        &mut self,
        now: Instant,
        buffered: &[usize],
        resident: u64,
        limit: Option<u64>,
    ) -> Decision {
        let mut decision = Decision {
            shed: vec![0; buffered.len()],
            ..Decision::default()
        };
        let total: usize = buffered.iter().sum();
        self.peak = self.peak.max(total);
        let since = |at: Option<Instant>| at.map_or(Duration::MAX, |t| now.duration_since(t));
        if let Some(limit) = limit {
            let low = limit / 10 * 9;
            if resident > limit && !self.overloaded {
                self.overloaded = true;
                decision.overload = Some(true);
            } else if self.overloaded && resident < low {
                self.overloaded = false;
                decision.overload = Some(false);
            }
            // Once over the limit, shed until below 90% of it (not only while above it: a
            // process that settles between the two would refuse connections for good).
            if self.overloaded && since(self.last_shed) >= SHED_EVERY && total > 0 {
                self.last_shed = Some(now);
                let excess = (resident - low) as u128;
                for (share, &held) in decision.shed.iter_mut().zip(buffered) {
                    // Proportional to what each core holds, never more than it holds.
                    *share = ((excess * held as u128 / total as u128) as usize).min(held);
                }
                // What was shed goes back to the system at the next look (the cores drop it in
                // between).
                self.trim_due = true;
                return decision;
            }
        }
        let shrunk_by = self.peak.saturating_sub(total);
        let shrank = self.trim_due
            || shrunk_by >= TRIM_AFTER
            || (shrunk_by >= TRIM_AFTER_HALF && shrunk_by * 2 >= self.peak);
        if shrank && since(self.last_trim) >= TRIM_EVERY {
            decision.trim = true;
            self.trim_due = false;
            self.last_trim = Some(now);
            self.peak = total;
        }
        decision
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl Guard {
    /// Runs until `shutdown`.
    pub fn run(self, shutdown: &AtomicBool) {
        let mut state = State::new();
        let mut warned_empty = false;
        while !shutdown.load(Ordering::Relaxed) {
            std::thread::park_timeout(INTERVAL);
            let buffered: Vec<usize> = self.controls.iter().map(|c| c.buffered()).collect();
            let resident = memory::private_resident_bytes().unwrap_or(0);
            let decision = state.decide(Instant::now(), &buffered, resident, self.limit);
            let (mib, total) = (|b: u64| b >> 20, buffered.iter().sum::<usize>() as u64);
            match decision.overload {
                Some(true) => {
                    memory::set_overloaded(true);
                    tracing::warn!(
                        resident_mib = mib(resident),
                        limit_mib = mib(self.limit.unwrap_or(0)),
                        buffered_mib = mib(total),
                        "memory above [reaktor] max_memory_bytes: refusing new connections and \
                         dropping the connections with the largest buffers until below 90% of it"
                    );
                }
                Some(false) => {
                    memory::set_overloaded(false);
                    warned_empty = false;
                    tracing::info!(
                        resident_mib = mib(resident),
                        "memory back below 90% of [reaktor] max_memory_bytes: accepting connections again"
                    );
                }
                None => {}
            }
            let shed: usize = decision.shed.iter().sum();
            if shed > 0 {
                tracing::info!(
                    shed_mib = mib(shed as u64),
                    resident_mib = mib(resident),
                    "shedding connection buffers"
                );
                for (core, &bytes) in decision.shed.iter().enumerate() {
                    if bytes > 0 {
                        self.controls[core].request_shed(bytes);
                        self.doorbells[core].ring_always();
                    }
                }
            } else if state.overloaded && total == 0 && !warned_empty {
                warned_empty = true;
                tracing::warn!(
                    resident_mib = mib(resident),
                    "memory above the limit but the connections buffer nothing to shed; \
                     raise [reaktor] max_memory_bytes if the rest is the port table"
                );
            }
            if decision.trim {
                memory::trim();
            }
        }
    }
}

/// The limit for `max_memory_bytes` as configured: 0 means three quarters of the memory the
/// process may use (the machine's, or its cgroup's if smaller).
pub fn limit_of(configured: u64) -> Option<u64> {
    match configured {
        0 => memory::available_bytes().map(|b| b / 4 * 3),
        bytes => Some(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn buffers_that_shrank_are_trimmed_at_most_once_a_second() {
        let mut s = State::new();
        let t0 = Instant::now();
        assert!(!s.decide(t0, &[100 * MIB], 0, None).trim);
        let d = s.decide(t0 + INTERVAL, &[10 * MIB], 0, None);
        assert!(d.trim, "90 MiB released");
        assert!(
            !s.decide(t0 + 2 * INTERVAL, &[10 * MIB], 0, None).trim,
            "once"
        );
        s.decide(t0 + 3 * INTERVAL, &[60 * MIB], 0, None);
        assert!(
            !s.decide(t0 + 4 * INTERVAL, &[0], 0, None).trim,
            "not within a second of the last"
        );
        assert!(s.decide(t0 + Duration::from_secs(2), &[0], 0, None).trim);
    }

    #[test]
    fn buffers_that_lost_half_of_a_small_peak_are_trimmed_too() {
        let mut s = State::new();
        let t0 = Instant::now();
        s.decide(t0, &[6 * MIB], 0, None);
        assert!(
            !s.decide(t0 + INTERVAL, &[4 * MIB], 0, None).trim,
            "a third"
        );
        assert!(
            s.decide(t0 + 2 * INTERVAL, &[2 * MIB], 0, None).trim,
            "two thirds"
        );
        let mut s = State::new();
        s.decide(t0, &[MIB / 2], 0, None);
        assert!(
            !s.decide(t0 + INTERVAL, &[0], 0, None).trim,
            "below 1 MiB: not worth a trim"
        );
    }

    #[test]
    fn above_the_limit_cores_shed_in_proportion_to_what_they_hold() {
        let mut s = State::new();
        let t0 = Instant::now();
        let limit = Some(1000 * MIB as u64);
        let d = s.decide(t0, &[300 * MIB, 100 * MIB], 1100 * MIB as u64, limit);
        assert_eq!(d.overload, Some(true));
        // Down to 90% of the limit: 200 MiB, 3:1.
        assert_eq!(d.shed, vec![150 * MIB, 50 * MIB]);
        // Still above a moment later: wait for the cores to republish.
        let d = s.decide(
            t0 + INTERVAL,
            &[300 * MIB, 100 * MIB],
            1100 * MIB as u64,
            limit,
        );
        assert_eq!(d.shed, vec![0, 0]);
        assert_eq!(d.overload, None);
        assert!(d.trim, "what was shed goes back");
        // Between 90% and 100% a second later: still refusing, and shedding on to 90%.
        let d = s.decide(
            t0 + Duration::from_secs(3),
            &[10 * MIB, 30 * MIB],
            940 * MIB as u64,
            limit,
        );
        assert_eq!((d.overload, d.shed), (None, vec![10 * MIB, 30 * MIB]));
        let d = s.decide(
            t0 + Duration::from_secs(5),
            &[0, 0],
            920 * MIB as u64,
            limit,
        );
        assert_eq!(
            (d.overload, d.shed),
            (None, vec![0, 0]),
            "nothing left to shed"
        );
        let d = s.decide(
            t0 + Duration::from_secs(4),
            &[10 * MIB, 0],
            800 * MIB as u64,
            limit,
        );
        assert_eq!(d.overload, Some(false));
    }

    #[test]
    fn a_core_never_sheds_more_than_it_holds() {
        let mut s = State::new();
        let d = s.decide(
            Instant::now(),
            &[MIB, 0],
            4000 * MIB as u64,
            Some(1000 * MIB as u64),
        );
        assert_eq!(d.shed, vec![MIB, 0]);
    }
}
