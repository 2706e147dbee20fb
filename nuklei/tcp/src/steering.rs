//! Steering new connections between the tcp instances of one reaktor (the runtime re-plan):
//! every instance keeps accepting on its `SO_REUSEPORT` listener (closing it would reset the
//! connections the kernel already queued to it), but an instance told to stop *accepting* hands
//! each new connection, before reading a byte of it, to an instance that still accepts. The
//! connection then lives its whole life on that instance's core. Connections already open stay
//! where they are: only new ones move.
//!
//! The hand-off is a bounded lock-free queue per instance plus a ring of the receiving core's
//! doorbell, so a parked core wakes up for it. When every other instance is full or not
//! accepting, the connection is kept where it arrived (steering never refuses a connection).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use mio::net::TcpStream;
use streams::Doorbell;

/// Connections waiting in one instance's hand-off queue at most.
pub const HANDOFF_CAPACITY: usize = 1024;

/// A connection accepted by one instance for another.
#[derive(Debug)]
pub struct Handoff {
    /// The accepted socket (not registered with any poller yet).
    pub socket: TcpStream,
    /// The client's address.
    pub remote: SocketAddr,
    /// Index of the listener that accepted it (the same in every instance).
    pub listener: u16,
}

struct Slot {
    accepting: AtomicBool,
    queue: ArrayQueue<Handoff>,
    doorbell: Option<Arc<Doorbell>>,
    handed_off: AtomicU64,
    adopted: AtomicU64,
}

/// The steering state shared by the tcp instances of a reaktor, indexed by tcp instance.
pub struct Steering {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("accepting", &self.accepting_all())
            .finish()
    }
}

impl Steering {
    /// Steering for tcp instances whose cores have these doorbells (`None`: never parks, as in
    /// tests); every instance starts accepting.
    pub fn new(doorbells: Vec<Option<Arc<Doorbell>>>) -> Arc<Steering> {
        Arc::new(Steering {
            slots: doorbells
                .into_iter()
                .map(|doorbell| Slot {
                    accepting: AtomicBool::new(true),
                    queue: ArrayQueue::new(HANDOFF_CAPACITY),
                    doorbell,
                    handed_off: AtomicU64::new(0),
                    adopted: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Number of tcp instances.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `instance` keeps the new connections it accepts.
    pub fn accepting(&self, instance: usize) -> bool {
        self.slots
            .get(instance)
            .is_some_and(|s| s.accepting.load(Ordering::Relaxed))
    }

    /// Every instance's accepting flag.
    pub fn accepting_all(&self) -> Vec<bool> {
        (0..self.slots.len()).map(|i| self.accepting(i)).collect()
    }

    /// Tells `instance` to keep (`true`) or hand off (`false`) the connections it accepts.
    pub fn set_accepting(&self, instance: usize, accepting: bool) {
        if let Some(s) = self.slots.get(instance) {
            s.accepting.store(accepting, Ordering::Relaxed);
        }
    }

    /// Hands `handoff`, accepted by `from`, to an accepting instance (round robin). Gives it
    /// back if none can take it.
    pub fn hand_off(&self, from: usize, handoff: Handoff) -> Result<usize, Handoff> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut handoff = handoff;
        for k in 0..n {
            let to = (start + k) % n;
            if to == from || !self.accepting(to) {
                continue;
            }
            let slot = &self.slots[to];
            match slot.queue.push(handoff) {
                Ok(()) => {
                    self.slots[from].handed_off.fetch_add(1, Ordering::Relaxed);
                    if let Some(doorbell) = &slot.doorbell {
                        doorbell.ring();
                    }
                    return Ok(to);
                }
                Err(back) => handoff = back,
            }
        }
        Err(handoff)
    }

    /// The next connection handed to `instance`, if any.
    pub fn take(&self, instance: usize) -> Option<Handoff> {
        let slot = self.slots.get(instance)?;
        let handoff = slot.queue.pop()?;
        slot.adopted.fetch_add(1, Ordering::Relaxed);
        Some(handoff)
    }

    /// Whether connections wait in `instance`'s queue.
    pub fn has_pending(&self, instance: usize) -> bool {
        self.slots
            .get(instance)
            .is_some_and(|s| !s.queue.is_empty())
    }

    /// (connections handed off by, connections adopted by) `instance`.
    pub fn counts(&self, instance: usize) -> (u64, u64) {
        self.slots.get(instance).map_or((0, 0), |s| {
            (
                s.handed_off.load(Ordering::Relaxed),
                s.adopted.load(Ordering::Relaxed),
            )
        })
    }
}
