//! The contract between a nukleus and the reaktor that runs it, after Agrona's `Agent`:
//! `poll()` does a bounded amount of work and says how much, so an idle strategy can decide
//! when to spin, yield or park.

use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::ring::{RingReader, RingWatch, RingWriter};
use crate::role::PeerRole;

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

    /// Whether this nukleus learns of work from readiness events while its core is busy: it
    /// registered sockets in `register` and waits for `on_event` to service them. A core whose
    /// nuklei all answer no (only rings, or io_uring completions read from shared memory) asks
    /// epoll nothing between busy duty cycles, only when it parks: an `epoll_wait` per cycle
    /// would be a system call that cannot find work. Answer yes when in doubt.
    fn uses_readiness(&self) -> bool {
        false
    }

    /// Does a bounded amount of work (stream frames, ready sockets, expired timers) and
    /// returns how many units it did; 0 means idle.
    fn poll(&mut self, context: &PollContext) -> usize;

    /// The earliest instant this nukleus must be polled again even if nothing arrives
    /// (timeouts, leases). `None`: only input wakes it.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Whether work waits outside the core's rings and sockets (an in-process queue from the
    /// other half of a nukleus split by direction). The core checks it before parking, after
    /// announcing that it parks, so a message pushed before a doorbell ring is never missed.
    fn has_pending(&self) -> bool {
        false
    }

    /// Gauges the nukleus wants exported (e.g. `connections`), as name/value pairs.
    fn gauges(&self, _out: &mut Vec<(&'static str, u64)>) {}

    /// Called once when the reaktor stops: close listeners and connections.
    fn shutdown(&mut self) {}

    /// Bytes this nukleus holds in per-connection buffers (what shedding could free).
    fn buffered_bytes(&self) -> usize {
        0
    }

    /// Under memory pressure: drop the connections that hold the largest buffers, largest
    /// first, until about `bytes` are freed (each dropped connection told on its streams,
    /// as for any failure); returns the bytes freed.
    fn shed(&mut self, _bytes: usize) -> usize {
        0
    }

    /// Graceful stop begins (the first SIGTERM): take no new work, let what is in flight
    /// finish, close what is idle. Polling continues until [`drained`](Self::drained) or the
    /// drain timeout.
    fn drain(&mut self) {}

    /// After [`drain`](Self::drain): nothing is in flight any more.
    fn drained(&self) -> bool {
        true
    }
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

    /// Wakes the core whether or not it is parked (shutdown).
    pub fn ring_always(&self) {
        let _ = self.waker.wake();
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
    /// Two linked ends over anonymous memory (no stream files): `a`'s end and `b`'s end, each
    /// writing what the other reads. For nuklei driven in-process by tests and benchmarks.
    pub fn pair(capacity: usize, a: &str, b: &str) -> Result<(Link, Link), crate::MapError> {
        let (ab_tx, ab_rx) = crate::ring(crate::SharedMapping::anonymous(
            capacity,
            &format!("{a} -> {b}"),
        )?);
        let (ba_tx, ba_rx) = crate::ring(crate::SharedMapping::anonymous(
            capacity,
            &format!("{b} -> {a}"),
        )?);
        Ok((
            Link {
                peer: b.into(),
                tx: ab_tx,
                rx: ba_rx,
                peer_doorbell: None,
            },
            Link {
                peer: a.into(),
                tx: ba_tx,
                rx: ab_rx,
                peer_doorbell: None,
            },
        ))
    }

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

    /// Every frame the peer has published on the inbound ring, copied out: what a test's
    /// scripted peer reads from the nukleus under test.
    pub fn frames(&mut self) -> Vec<crate::frame::OwnedFrame> {
        let mut out = Vec::new();
        self.rx.read(usize::MAX, |type_id, bytes| {
            let frame = crate::Frame::new(type_id, bytes)
                .expect("a nukleus writes only well-formed frames");
            out.push(crate::frame::OwnedFrame::from(&frame));
        });
        out
    }

    /// A read-only view of the inbound ring, for the core's park check and metrics.
    pub fn rx_watch(&self) -> RingWatch {
        self.rx.watch()
    }
}

/// A link to one peer nukleus instance, as handed to a nukleus when the reaktor builds it.
pub struct PeerLink {
    /// The peer's kind (`http`, `echo`, ...): what routes name; for logs and peer choice.
    pub kind: String,
    /// The core the peer runs on.
    pub core: usize,
    /// Where the peer stands and what the link carries, from the plan.
    pub role: PeerRole,
    pub link: Link,
}

impl PeerLink {
    /// A link from a nukleus under test to a peer of `kind` in `role` (on core 0) over
    /// anonymous memory, and the peer's own end, for the test to write the peer's frames into
    /// and read the nukleus's frames from.
    pub fn scripted(
        kind: &str,
        role: PeerRole,
        capacity: usize,
    ) -> Result<(PeerLink, Link), crate::MapError> {
        let (nukleus_end, peer_end) = Link::pair(capacity, "nukleus", kind)?;
        Ok((
            PeerLink {
                kind: kind.into(),
                core: 0,
                role,
                link: nukleus_end,
            },
            peer_end,
        ))
    }
}

/// The sending half of a link, with what a nukleus needs to choose it.
pub struct Output {
    pub kind: String,
    pub core: usize,
    /// Where the peer stands and what the link carries.
    pub role: PeerRole,
    /// The peer's position among this nukleus's peers of the same kind, in the order the links
    /// were given (the reaktor gives them in instance order, so for another kind this is the
    /// peer's instance index).
    pub ordinal: usize,
    /// The peer instance's name, for logs.
    pub peer: String,
    pub tx: RingWriter,
    peer_doorbell: Option<Arc<Doorbell>>,
}

impl Output {
    /// Publishes frames written since the last call and wakes the peer if it is parked.
    pub fn publish(&mut self) -> bool {
        let published = self.tx.publish();
        if published {
            if let Some(doorbell) = &self.peer_doorbell {
                doorbell.ring();
            }
        }
        published
    }
}

/// Splits links into inputs (index `i` reads from the peer of `outputs[i]`) and outputs, so
/// a nukleus can read one ring while writing others without borrowing conflicts.
pub fn split_links(links: Vec<PeerLink>) -> (Vec<RingReader>, Vec<Output>) {
    let mut seen: Vec<String> = Vec::new();
    links
        .into_iter()
        .map(|p| {
            let ordinal = seen.iter().filter(|k| **k == p.kind).count();
            seen.push(p.kind.clone());
            (
                p.link.rx,
                Output {
                    ordinal,
                    role: p.role,
                    kind: p.kind,
                    core: p.core,
                    peer: p.link.peer,
                    tx: p.link.tx,
                    peer_doorbell: p.link.peer_doorbell,
                },
            )
        })
        .unzip()
}

/// Picks the output to the instance of `kind` that owns `key_hash` (see [`crate::key`]):
/// instance `key_index(key_hash, count)` of the `count` peers of that kind, whatever core it
/// is on. For state partitioned by key (the switch's node homes), where the same key must
/// always reach the same instance.
pub fn pick_keyed(outputs: &[Output], kind: &str, key_hash: u64) -> Option<usize> {
    let count = outputs.iter().filter(|p| p.kind == kind).count();
    if count == 0 {
        return None;
    }
    let nth = crate::key::key_index(key_hash, count);
    outputs
        .iter()
        .position(|p| p.kind == kind && p.ordinal == nth)
}

/// Picks the output to an instance of `kind`: the one on `core` if there is one (fusion: no
/// cross-core hop), otherwise one chosen by `key` (fission: a connection or port-name hash),
/// so that the same key always reaches the same instance.
pub fn pick_peer(outputs: &[Output], kind: &str, core: usize, key: u64) -> Option<usize> {
    if let Some(local) = outputs
        .iter()
        .position(|p| p.kind == kind && p.core == core)
    {
        return Some(local);
    }
    let count = outputs.iter().filter(|p| p.kind == kind).count();
    if count == 0 {
        return None;
    }
    let nth = (key % count as u64) as usize;
    outputs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == kind)
        .nth(nth)
        .map(|(i, _)| i)
}

/// Initial-stream ids that encode a slot index and a generation, so a nukleus finds a
/// stream's state with an index instead of a hash lookup, and a frame for a slot's previous
/// occupant is recognised as stale:
///
/// `instance:16 | generation:23 | slot:24 | 1` (odd: initial; the reply is `id ^ 1`).
#[derive(Debug, Clone, Copy)]
pub struct SlotIds {
    instance: u16,
}

impl SlotIds {
    pub const MAX_SLOTS: usize = 1 << 24;

    pub fn new(instance: u16) -> SlotIds {
        SlotIds { instance }
    }

    pub fn initial(&self, slot: usize, generation: u32) -> u64 {
        debug_assert!(slot < Self::MAX_SLOTS);
        ((self.instance as u64) << 48)
            | (((generation & 0x7F_FFFF) as u64) << 25)
            | ((slot as u64) << 1)
            | 1
    }

    /// The slot index encoded in an initial or reply id.
    pub fn slot(id: u64) -> usize {
        ((id >> 1) & (Self::MAX_SLOTS as u64 - 1)) as usize
    }
}

/// Finds a nukleus's own state for streams its peers opened, without hashing: per input, the
/// peer's slot (encoded in the peer's [`SlotIds`] stream id) maps to the local slot. A lookup
/// only yields a candidate; the caller confirms it by comparing the full stream id it stored,
/// which also rejects frames for a slot's previous occupant.
#[derive(Debug, Default)]
pub struct PeerStreams {
    /// Per input: peer slot -> local slot + 1 (0: none).
    maps: Vec<Vec<u32>>,
}

impl PeerStreams {
    pub fn new(inputs: usize) -> PeerStreams {
        PeerStreams {
            maps: vec![Vec::new(); inputs],
        }
    }

    pub fn insert(&mut self, input: usize, peer_id: u64, local: usize) {
        let map = &mut self.maps[input];
        let peer_slot = SlotIds::slot(peer_id);
        if map.len() <= peer_slot {
            map.resize(peer_slot + 1, 0);
        }
        map[peer_slot] = local as u32 + 1;
    }

    /// The local slot last recorded for the peer's stream, if any.
    pub fn get(&self, input: usize, peer_id: u64) -> Option<usize> {
        let entry = *self.maps.get(input)?.get(SlotIds::slot(peer_id))?;
        entry.checked_sub(1).map(|slot| slot as usize)
    }

    /// Forgets the mapping if it still points at `local`.
    pub fn remove(&mut self, input: usize, peer_id: u64, local: usize) {
        if let Some(entry) = self
            .maps
            .get_mut(input)
            .and_then(|m| m.get_mut(SlotIds::slot(peer_id)))
        {
            if *entry == local as u32 + 1 {
                *entry = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_streams_map_peer_slots_to_local_slots() {
        let ids = SlotIds::new(3);
        let mut streams = PeerStreams::new(2);
        let a = ids.initial(7, 1);
        assert_eq!(streams.get(0, a), None);
        streams.insert(0, a, 42);
        assert_eq!(streams.get(0, a), Some(42));
        assert_eq!(
            streams.get(0, a ^ 1),
            Some(42),
            "the reply id maps to the same slot"
        );
        assert_eq!(streams.get(1, a), None, "inputs are separate");
        streams.remove(0, a, 41);
        assert_eq!(
            streams.get(0, a),
            Some(42),
            "only the recorded slot is removed"
        );
        streams.remove(0, a, 42);
        assert_eq!(streams.get(0, a), None);
    }
}
