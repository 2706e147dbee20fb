//! The contract between a nukleus and the reaktor that runs it, after Agrona's `Agent`:
//! `poll()` does a bounded amount of work and says how much, so an idle strategy can decide
//! when to spin, yield or park.

use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::ring::{RingReader, RingWatch, RingWriter};

/// What the reaktor hands to every `poll`.
#[derive(Debug, Clone, Copy)]
pub struct PollContext {
    /// The core loop's clock, read once per iteration.
    pub now: Instant,
    /// `now` as nanoseconds since the reaktor started, for frame timestamps.
    pub timestamp: u64,
    /// Index of the core (thread) this nukleus runs on.
    pub core: usize,
}

/// The mio tokens a nukleus may use for its sockets: `[first, first + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    pub first: usize,
    pub count: usize,
}

impl TokenRange {
    pub fn contains(&self, token: usize) -> bool {
        token >= self.first && token < self.first + self.count
    }
}

/// A single-threaded protocol stage.
pub trait Nukleus {
    /// The kind name used in topology files (`tcp`, `http`, ...).
    fn kind(&self) -> &'static str;

    /// Registers sockets with the core's poll registry, using tokens from `tokens` only.
    fn register(&mut self, _registry: &mio::Registry, _tokens: TokenRange) -> io::Result<()> {
        Ok(())
    }

    /// A readiness event for one of this nukleus's tokens. Record it; do the work in `poll`.
    fn on_event(&mut self, _event: &mio::event::Event) {}

    /// Does a bounded amount of work (stream frames, ready sockets, expired timers) and
    /// returns how many units it did; 0 means idle.
    fn poll(&mut self, context: &PollContext) -> usize;

    /// The earliest instant this nukleus must be polled again even if nothing arrives
    /// (timeouts, leases). `None`: only input wakes it.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Gauges the nukleus wants exported (e.g. `connections`), as name/value pairs.
    fn gauges(&self, _out: &mut Vec<(&'static str, u64)>) {}

    /// Called once when the reaktor stops: close listeners and connections.
    fn shutdown(&mut self) {}
}

/// Wakes a parked core when a writer on another core publishes into one of its rings.
///
/// Dekker-style handshake: the core sets `parked`, then re-checks its rings before blocking;
/// a writer publishes, then checks `parked`. SeqCst fences on both sides guarantee that at
/// least one of them sees the other, so no wake-up is lost and no eventfd write happens while
/// the core is busy.
pub struct Doorbell {
    waker: mio::Waker,
    parked: AtomicBool,
    rings: AtomicU64,
}

impl Doorbell {
    pub fn new(registry: &mio::Registry, token: mio::Token) -> io::Result<Doorbell> {
        Ok(Doorbell {
            waker: mio::Waker::new(registry, token)?,
            parked: AtomicBool::new(false),
            rings: AtomicU64::new(0),
        })
    }

    /// Called by a writer after publishing.
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.rings.fetch_add(1, Ordering::Relaxed);
            // A failed eventfd write means the counter is saturated, i.e. already signalled.
            let _ = self.waker.wake();
        }
    }

    /// Called by the core before it re-checks its inputs and blocks.
    pub fn park(&self) {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Called by the core when it will not block after all, or after it woke up.
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// How many times a writer actually had to wake this core.
    pub fn wake_count(&self) -> u64 {
        self.rings.load(Ordering::Relaxed)
    }
}

/// One end of a bidirectional connection between two nuklei: frames to the peer go out on
/// `tx`, frames from the peer arrive on `rx`. Both rings are single-writer, single-reader.
pub struct Link {
    /// Name of the peer nukleus instance (for logs).
    pub peer: String,
    pub tx: RingWriter,
    pub rx: RingReader,
    /// The peer's doorbell, when the peer runs on another core.
    pub peer_doorbell: Option<Arc<Doorbell>>,
}

impl Link {
    /// Publishes frames written to `tx` since the last call and wakes the peer if needed.
    pub fn publish(&mut self) -> bool {
        let published = self.tx.publish();
        if published {
            if let Some(doorbell) = &self.peer_doorbell {
                doorbell.ring();
            }
        }
        published
    }

    /// A read-only view of the inbound ring, for the core's park check and metrics.
    pub fn rx_watch(&self) -> RingWatch {
        self.rx.watch()
    }
}
