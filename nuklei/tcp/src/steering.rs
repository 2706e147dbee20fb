//! Steering new connections between the tcp instances of one reaktor (the runtime re-plan).
//!
//! Every instance listens on the same addresses with `SO_REUSEPORT`, and the kernel spreads new
//! connections over the listening sockets. An instance told to stop *accepting* stops taking
//! connections from its sockets, and every instance that still accepts takes them instead: it
//! registers a duplicate of the stopped instance's listening sockets with its own poller and
//! accepts from them. The sockets stay open (closing one would reset the connections the kernel
//! already queued to it), and the stopped core's thread — typically starved by another process
//! on its cpu — has nothing to do for new connections at all. Connections already open stay
//! where they are: only new ones move.
//!
//! The only shared state is one flag per instance and the duplicated sockets, handed out under
//! a mutex when an instance starts taking over another's (rare: at a change of plan).

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

struct Slot {
    accepting: AtomicBool,
    /// The instance's listening sockets, in listener order (duplicates are handed out).
    listeners: Mutex<Vec<StdListener>>,
    /// Connections this instance accepted from other instances' sockets.
    taken_over: AtomicU64,
}

/// The steering state shared by the tcp instances of a reaktor, indexed by tcp instance.
pub struct Steering {
    slots: Vec<Slot>,
    /// Bumped by every change of a flag, so an instance re-reads the flags only after one.
    generation: AtomicU64,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("accepting", &self.accepting_all())
            .finish()
    }
}

impl Steering {
    /// Steering for `instances` tcp instances, all accepting.
    pub fn new(instances: usize) -> std::sync::Arc<Steering> {
        std::sync::Arc::new(Steering {
            slots: (0..instances)
                .map(|_| Slot {
                    accepting: AtomicBool::new(true),
                    listeners: Mutex::new(Vec::new()),
                    taken_over: AtomicU64::new(0),
                })
                .collect(),
            generation: AtomicU64::new(0),
        })
    }

    /// Changes so far (an instance compares it with the one it last followed).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of tcp instances.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `instance` takes the new connections of its own sockets.
    pub fn accepting(&self, instance: usize) -> bool {
        self.slots
            .get(instance)
            .is_some_and(|s| s.accepting.load(Ordering::Relaxed))
    }

    /// Every instance's accepting flag.
    pub fn accepting_all(&self) -> Vec<bool> {
        (0..self.slots.len()).map(|i| self.accepting(i)).collect()
    }

    /// Tells `instance` to take new connections (`true`) or to leave them to the others.
    pub fn set_accepting(&self, instance: usize, accepting: bool) {
        if let Some(s) = self.slots.get(instance) {
            if s.accepting.swap(accepting, Ordering::Relaxed) != accepting {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Makes `instance`'s listening sockets available to the others.
    pub fn share_listeners(&self, instance: usize, listeners: Vec<StdListener>) {
        if let Some(slot) = self.slots.get(instance) {
            if let Ok(mut shared) = slot.listeners.lock() {
                *shared = listeners;
            }
        }
    }

    /// Duplicates of `instance`'s listening sockets (in listener order), for another instance
    /// to accept from.
    pub fn listeners_of(&self, instance: usize) -> Vec<StdListener> {
        self.slots
            .get(instance)
            .and_then(|s| s.listeners.lock().ok())
            .map(|l| l.iter().filter_map(|s| s.try_clone().ok()).collect())
            .unwrap_or_default()
    }

    /// Counts a connection `instance` accepted from another instance's socket.
    pub fn count_taken_over(&self, instance: usize) {
        if let Some(s) = self.slots.get(instance) {
            s.taken_over.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections `instance` accepted from other instances' sockets.
    pub fn taken_over(&self, instance: usize) -> u64 {
        self.slots
            .get(instance)
            .map_or(0, |s| s.taken_over.load(Ordering::Relaxed))
    }
}
