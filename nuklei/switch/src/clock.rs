//! The switch's clock for leases: time in which the server could have seen a sign of life.
//!
//! A lease expires on the *absence* of a relet, so the time that counts is time in which the
//! switch was able to read one. When the whole process stalls (`SIGSTOP`, a frozen VM, a
//! starved core), relets wait in the kernel and in the rings upstream; counting that time
//! would release every node at once when the process resumes, before it read the relets it
//! was holding. So [`LeaseClock`]:
//!
//! * stops while the switch is stalled: the switch says when it wants to be woken (its next
//!   lease deadline); waking later than that by more than a tenth of the lease is a stall, and
//!   the whole delay is left out (lease time resumes at the due time);
//! * after a stall, holds expiries for another tenth of the lease of running time, so that the
//!   input queued upstream (kernel buffers, tcp, http, ws, other cores) reaches the switch
//!   before it declares anybody gone: input first, then expiry.
//!
//! Sans-I/O: milliseconds in, milliseconds out.

/// Converts a monotonic clock (milliseconds) into lease time, leaving out stalls.
#[derive(Debug, Clone)]
pub struct LeaseClock {
    /// A wake-up later than due by more than this is a stall; also how long expiries wait
    /// after one.
    stall_ms: u64,
    /// Milliseconds of stalls left out so far.
    stalled_ms: u64,
    /// Lease time at which the switch asked to be woken next, if it did.
    due: Option<u64>,
    /// Lease time before which no lease expires (set after a stall).
    hold_until: u64,
    /// The last lease time handed out (the clock never goes back).
    last: u64,
}

impl LeaseClock {
    /// A clock at zero for leases of `lease_ms`.
    pub fn new(lease_ms: u64) -> LeaseClock {
        LeaseClock {
            stall_ms: (lease_ms / 10).max(1),
            stalled_ms: 0,
            due: None,
            hold_until: 0,
            last: 0,
        }
    }

    /// Lease time at monotonic time `raw_ms`. A wake-up later than the last
    /// [`wake_at`](LeaseClock::wake_at) by more than a tenth of the lease is a stall: the delay
    /// is left out (lease time resumes at the due time) and expiries are held for another
    /// tenth of the lease.
    pub fn now(&mut self, raw_ms: u64) -> u64 {
        let mut now = raw_ms.saturating_sub(self.stalled_ms);
        if let Some(due) = self.due {
            if now > due.saturating_add(self.stall_ms) {
                self.stalled_ms += now - due;
                now = due;
                self.hold_until = due + self.stall_ms;
            }
        }
        self.last = self.last.max(now);
        self.last
    }

    /// Whether leases may expire at lease time `now` (not while a stall's hold lasts).
    pub fn may_expire(&self, now: u64) -> bool {
        now >= self.hold_until
    }

    /// The caller's next lease deadline (lease time), if any: when it wants to be woken.
    pub fn wake_at(&mut self, deadline: Option<u64>) {
        self.due = deadline.map(|d| d.max(self.hold_until));
    }

    /// When to wake the caller for lease deadline `deadline` (lease time), in monotonic
    /// milliseconds: not before a stall's hold ends.
    pub fn raw_wake_of(&self, deadline: u64) -> u64 {
        deadline
            .max(self.hold_until)
            .saturating_add(self.stalled_ms)
    }

    /// Milliseconds left out as stalls so far.
    pub fn stalled_ms(&self) -> u64 {
        self.stalled_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_due_time_lease_time_is_monotonic_time() {
        let mut clock = LeaseClock::new(1_000);
        assert_eq!(clock.now(5), 5);
        assert_eq!(clock.now(5_000), 5_000);
        assert_eq!(clock.stalled_ms(), 0);
        assert!(clock.may_expire(5_000));
    }

    #[test]
    fn waking_on_time_early_or_a_little_late_counts_all_of_it() {
        let mut clock = LeaseClock::new(1_000);
        clock.wake_at(Some(1_000));
        assert_eq!(clock.now(400), 400);
        assert_eq!(clock.now(1_000), 1_000);
        assert_eq!(
            clock.now(1_100),
            1_100,
            "100 ms late is not a stall for a 1 s lease"
        );
        assert_eq!(clock.stalled_ms(), 0);
        assert!(clock.may_expire(1_100));
        assert_eq!(clock.raw_wake_of(2_000), 2_000);
    }

    #[test]
    fn a_stall_is_left_out_and_holds_expiries_for_a_tenth_of_the_lease() {
        let mut clock = LeaseClock::new(1_000);
        clock.wake_at(Some(1_000));
        // Stopped from before 1,000 until 4,000: lease time resumes at the due time.
        assert_eq!(clock.now(4_000), 1_000);
        assert_eq!(clock.stalled_ms(), 3_000);
        assert!(!clock.may_expire(1_000));
        assert_eq!(clock.raw_wake_of(1_000), 4_100, "woken when the hold ends");
        assert_eq!(clock.raw_wake_of(1_500), 4_500);
        clock.wake_at(Some(1_000));
        assert_eq!(clock.now(4_050), 1_050);
        assert!(!clock.may_expire(1_050));
        assert_eq!(clock.now(4_100), 1_100);
        assert!(clock.may_expire(1_100));
    }

    #[test]
    fn lease_time_never_goes_back() {
        let mut clock = LeaseClock::new(1_000);
        assert_eq!(clock.now(900), 900);
        clock.wake_at(Some(500));
        assert_eq!(clock.now(2_000), 900);
    }
}
