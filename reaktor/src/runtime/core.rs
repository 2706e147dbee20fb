//! One core's duty cycle: poll every nukleus on the core once, charge each its busy time,
//! then ask the idle strategy whether to spin, yield or park in epoll; dispatch readiness
//! events to the nukleus that owns the token.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use streams::{Doorbell, Nukleus, PollContext, RingWatch};

use super::idle::{Idle, IdleStrategy};
use crate::stats::NukleusStats;

/// Token of a core's doorbell; nukleus `k` on a core owns tokens `[(k + 1) << 32, (k + 2) << 32)`.
pub const DOORBELL: Token = Token(0);
pub const TOKENS_PER_NUKLEUS: usize = 1 << 32;

/// How often a core publishes its nuklei's gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// What other threads ask of a core between its duty cycles (the memory guard, a graceful
/// stop), and what it reports back. Whoever asks rings the core's doorbell.
#[derive(Default)]
pub struct CoreControl {
    /// Something below was asked: one load per duty cycle while nothing is.
    attention: AtomicBool,
    /// Bytes the memory guard asks this core to shed.
    shed: AtomicUsize,
    draining: AtomicBool,
    /// Every nukleus on the core is drained (after a drain was asked).
    drained: AtomicBool,
    /// The nuklei's buffered bytes when the core last published its gauges.
    buffered: AtomicUsize,
}

impl CoreControl {
    /// Asks the core to shed about `bytes` of connection buffers, largest first.
    pub fn request_shed(&self, bytes: usize) {
        self.shed.fetch_add(bytes, Ordering::Relaxed);
        self.attention.store(true, Ordering::Release);
    }

    /// Asks the core to drain its nuklei (graceful stop).
    pub fn request_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.attention.store(true, Ordering::Release);
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Bytes in the core's connection buffers, as of its last gauge publication.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

/// A nukleus on a core, with its counters and instance name.
pub struct Placed {
    pub nukleus: Box<dyn Nukleus + Send>,
    pub stats: Arc<NukleusStats>,
    pub name: String,
}

/// Everything one core thread owns.
pub struct Core {
    pub poll: Poll,
    pub doorbell: Arc<Doorbell>,
    pub nuklei: Vec<Placed>,
    /// The rings this core reads, for the check before it parks.
    pub watches: Vec<RingWatch>,
    pub cpu: Option<usize>,
    pub idle: IdleStrategy,
    pub control: Arc<CoreControl>,
}

impl Core {
    /// Runs duty cycles until `shutdown`, then shuts every nukleus down.
    pub fn run(mut self, index: usize, shutdown: &AtomicBool, start: Instant) {
        if let Some(cpu) = self.cpu {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                tracing::warn!(
                    core = index,
                    cpu,
                    "cannot pin core thread; running unpinned"
                );
            }
        }
        tracing::debug!(core = index, nuklei = self.nuklei.len(), "core running");
        let mut events = Events::with_capacity(1024);
        let mut gauge_scratch = Vec::new();
        let mut gauges_published = start;
        let mut gauges_stale = true;
        let mut draining = false;
        let uses_readiness = self.nuklei.iter().any(|p| p.nukleus.uses_readiness());
        while !shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            if self.control.attention.load(Ordering::Acquire) {
                self.control.attention.store(false, Ordering::Relaxed);
                draining |= self.attend(index, draining);
            }
            if draining
                && !self.control.is_drained()
                && self.nuklei.iter().all(|p| p.nukleus.drained())
            {
                tracing::debug!(core = index, "core drained");
                self.control.drained.store(true, Ordering::Release);
            }
            // Gauges: at most once a second while busy, and once more before parking so an
            // idle core's last state is visible.
            if gauges_stale
                && (self.idle.settling() || now.duration_since(gauges_published) >= GAUGE_INTERVAL)
            {
                let mut buffered = 0;
                for placed in &self.nuklei {
                    placed
                        .stats
                        .publish_gauges(&*placed.nukleus, &mut gauge_scratch);
                    buffered += placed.nukleus.buffered_bytes();
                }
                self.control.buffered.store(buffered, Ordering::Relaxed);
                gauges_published = now;
                gauges_stale = false;
            }
            let work = self.duty_cycle(index, now, start);
            if work > 0 {
                gauges_stale = true;
            }
            let idle = self.idle.idle(work);
            let timeout = match idle {
                Idle::Spin => Some(Duration::ZERO),
                Idle::Yield => {
                    std::thread::yield_now();
                    Some(Duration::ZERO)
                }
                Idle::Park => self.park_timeout(shutdown),
            };
            if idle.looks_at_epoll(uses_readiness) {
                self.wait(index, &mut events, timeout);
            }
        }
        for placed in &mut self.nuklei {
            placed.nukleus.shutdown();
        }
        tracing::debug!(core = index, "core stopped");
    }

    /// Does what was asked through the core's control; returns whether a drain began.
    fn attend(&mut self, index: usize, draining: bool) -> bool {
        let mut want = self.control.shed.swap(0, Ordering::Relaxed);
        if want > 0 {
            // The nuklei holding the most first; each drops its largest connections.
            let mut order: Vec<(usize, usize)> = self
                .nuklei
                .iter()
                .enumerate()
                .map(|(k, p)| (p.nukleus.buffered_bytes(), k))
                .collect();
            order.sort_unstable_by(|a, b| b.cmp(a));
            let mut freed = 0;
            for (held, k) in order {
                if want == 0 || held == 0 {
                    break;
                }
                let shed = self.nuklei[k].nukleus.shed(want);
                freed += shed;
                want = want.saturating_sub(shed);
            }
            tracing::debug!(core = index, freed, "shed connection buffers");
        }
        let drain = !draining && self.control.draining.load(Ordering::Relaxed);
        if drain {
            tracing::debug!(core = index, "core draining");
            for placed in &mut self.nuklei {
                placed.nukleus.drain();
            }
        }
        drain
    }

    /// Polls every nukleus once; returns the work done. Busy time is charged only to polls
    /// that did something: idle polls are the idle strategy's cost, not the stage's.
    fn duty_cycle(&mut self, index: usize, mut now: Instant, start: Instant) -> usize {
        let mut work = 0;
        for placed in &mut self.nuklei {
            let context = PollContext {
                now,
                timestamp: now.duration_since(start).as_nanos() as u64,
                core: index,
            };
            let done = placed.nukleus.poll(&context);
            let after = Instant::now();
            let busy = if done > 0 {
                after.duration_since(now).as_nanos() as u64
            } else {
                0
            };
            placed.stats.count_poll(busy, done as u64);
            work += done;
            now = after;
        }
        work
    }

    /// Announces the park, then looks once more at everything that could have arrived: a
    /// zero timeout if something did, else until the earliest deadline (or forever).
    fn park_timeout(&self, shutdown: &AtomicBool) -> Option<Duration> {
        self.doorbell.park();
        if self.watches.iter().any(|w| w.has_pending())
            || self.nuklei.iter().any(|p| p.nukleus.has_pending())
            || shutdown.load(Ordering::SeqCst)
        {
            self.doorbell.unpark();
            return Some(Duration::ZERO);
        }
        let deadline = self
            .nuklei
            .iter()
            .filter_map(|p| p.nukleus.deadline())
            .min();
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Waits in epoll up to `timeout` and hands each readiness event to its nukleus.
    fn wait(&mut self, index: usize, events: &mut Events, timeout: Option<Duration>) {
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(core = index, error = %e, "epoll failed");
            }
        }
        self.doorbell.unpark();
        for event in events.iter() {
            let token = event.token().0;
            if token == DOORBELL.0 {
                continue;
            }
            if let Some(placed) = self.nuklei.get_mut(token / TOKENS_PER_NUKLEUS - 1) {
                placed.nukleus.on_event(event);
            }
        }
    }
}
