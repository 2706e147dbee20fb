//! What a core does when a duty cycle found no work, in the spirit of Agrona's
//! `BackoffIdleStrategy`: spin (lowest wake-up latency, burns the cpu), then yield the cpu,
//! then park until a socket, a doorbell or a deadline wakes the core (0% cpu).

/// The next step of an idle core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll again at once (after a duty cycle that did work, or while spinning).
    Spin,
    /// Give the cpu to another thread, then poll again.
    Yield,
    /// Block until woken.
    Park,
}

impl Idle {
    /// Whether the core asks epoll before its next duty cycle. A park always waits there
    /// (sockets, doorbell, io_uring's descriptor wake it). Between busy or spinning cycles
    /// only a core with a nukleus that hears of work from readiness events looks (a
    /// zero-timeout `epoll_wait`): for rings and io_uring completions, read from memory, that
    /// system call could find nothing.
    pub fn looks_at_epoll(self, uses_readiness: bool) -> bool {
        self == Idle::Park || uses_readiness
    }
}

/// Counts idle duty cycles and says when to spin, yield or park.
#[derive(Debug, Clone)]
pub struct IdleStrategy {
    spins: u32,
    yields: u32,
    idle: u32,
}

impl IdleStrategy {
    /// `spins` idle cycles spinning, then `yields` yielding, then park.
    pub fn new(spins: u32, yields: u32) -> IdleStrategy {
        IdleStrategy {
            spins,
            yields,
            idle: 0,
        }
    }

    /// For a core whose kind runs alone (the election): it parks as soon as a cycle found no
    /// work. Its work comes from sockets and deadlines that wake it anyway; spinning and
    /// yielding after every wake-up (`[reaktor] idle_spins` + `idle_yields` epoll checks) only
    /// took cpu from the switch — and under `SCHED_FIFO` a yield lets no ordinary thread run,
    /// so the yields were spins too. Measured (perf, benches/failover.sh, 1 ms ticks): the
    /// three election threads took half as many samples of core 0 as the switch threads over a
    /// four-round run.
    pub fn alone() -> IdleStrategy {
        IdleStrategy::new(0, 0)
    }

    /// After a duty cycle that did `work` units: what to do before the next one. Work resets
    /// the back-off.
    pub fn idle(&mut self, work: usize) -> Idle {
        if work > 0 {
            self.idle = 0;
            return Idle::Spin;
        }
        self.idle = self.idle.saturating_add(1);
        if self.idle <= self.spins {
            Idle::Spin
        } else if self.idle <= self.spins.saturating_add(self.yields) {
            Idle::Yield
        } else {
            Idle::Park
        }
    }

    /// Whether the core has just spun through its first idle cycles and is settling toward a
    /// park: the moment to publish state that an idle core should leave visible.
    pub fn settling(&self) -> bool {
        self.idle == self.spins.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_park_or_a_nukleus_that_hears_from_epoll_makes_the_core_look_at_it() {
        for idle in [Idle::Spin, Idle::Yield, Idle::Park] {
            assert!(idle.looks_at_epoll(true), "{idle:?} with sockets on epoll");
        }
        assert!(Idle::Park.looks_at_epoll(false), "a park waits in epoll");
        assert!(!Idle::Spin.looks_at_epoll(false));
        assert!(!Idle::Yield.looks_at_epoll(false));
    }

    #[test]
    fn a_core_running_alone_parks_after_one_idle_cycle() {
        let mut strategy = IdleStrategy::alone();
        assert_eq!(strategy.idle(1), Idle::Spin, "work: look again at once");
        assert_eq!(strategy.idle(0), Idle::Park);
        assert!(strategy.settling(), "gauges are published after the park");
    }

    #[test]
    fn idle_cycles_spin_then_yield_then_park() {
        let mut strategy = IdleStrategy::new(2, 3);
        let steps: Vec<Idle> = (0..7).map(|_| strategy.idle(0)).collect();
        assert_eq!(
            steps,
            [
                Idle::Spin,
                Idle::Spin,
                Idle::Yield,
                Idle::Yield,
                Idle::Yield,
                Idle::Park,
                Idle::Park
            ]
        );
    }

    #[test]
    fn work_resets_the_back_off() {
        let mut strategy = IdleStrategy::new(1, 1);
        for _ in 0..5 {
            strategy.idle(0);
        }
        assert_eq!(strategy.idle(0), Idle::Park);
        assert_eq!(strategy.idle(3), Idle::Spin);
        assert_eq!(strategy.idle(0), Idle::Spin, "the spins start over");
        assert_eq!(strategy.idle(0), Idle::Yield);
    }

    #[test]
    fn without_spins_or_yields_an_idle_core_parks_at_once() {
        let mut strategy = IdleStrategy::new(0, 0);
        assert_eq!(strategy.idle(0), Idle::Park);
    }

    #[test]
    fn settling_marks_the_end_of_the_first_spins() {
        let mut strategy = IdleStrategy::new(2, 1);
        assert!(!strategy.settling());
        strategy.idle(0);
        assert!(!strategy.settling());
        strategy.idle(0);
        assert!(strategy.settling());
        strategy.idle(0);
        assert!(!strategy.settling());
        // Zero spins: the first idle cycle settles.
        let mut strategy = IdleStrategy::new(0, 4);
        strategy.idle(0);
        assert!(strategy.settling());
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let mut strategy = IdleStrategy::new(u32::MAX, u32::MAX);
        assert_eq!(strategy.idle(0), Idle::Spin);
    }
}
