//! A compact port table for one shard.
//!
//! # Layout
//!
//! The table is built for tens of millions of short names at well under 64 bytes of memory per
//! port, so nothing is allocated per port:
//!
//! * **Arena** — every registered name's UTF-8 bytes are appended to one `Vec<u8>`. A released
//!   name leaves garbage behind; when the garbage outgrows the live bytes the arena is compacted
//!   (live names are copied into a fresh arena in one pass, `O(live bytes)`, amortised over the
//!   releases that produced the garbage).
//! * **Entries** — a slab `Vec<Entry>` of 20-byte records: arena offset, name length, owner node,
//!   and the `prev`/`next` links of an intrusive doubly linked list of the owner's ports (so
//!   releasing every port of a dead node is `O(ports of that node)`, and releasing one port is
//!   `O(1)`). Freed slots form a free list threaded through `next`.
//! * **Index** — a `hashbrown::HashTable<Slot>`: per bucket an entry index and a 32-bit hash
//!   tag of its name (8 bytes + 1 control byte). The index's hash is derived from the tag alone
//!   (`spread`), so growing the index rehashes from the tags without reading the entries or the
//!   arena (before, each port cost two random reads there, ~1 s of stall per doubling at 8M
//!   ports; now ~0.12 s), and a lookup compares the tag before it compares names: a fresh name
//!   is almost never compared with another name's bytes.
//!
//! With 16-byte names this is about 16 (arena) + 20 (entry) + ~9–15 (index at 7/16–7/8 load,
//! rounded to a power of two; 15.1 at 10M ports) ≈ 45–51 bytes per port;
//! `examples/port_memory.rs` measures it.
//!
//! Subscriptions (release notifications wanted by other nodes) are rare, so they live in a
//! separate map keyed by entry index; a flag bit in the entry avoids a map lookup on release
//! when there are none.

use std::hash::BuildHasher;

use hashbrown::HashMap;
use hashbrown::HashTable;

mod ordered;

use ordered::Ordered;

/// Dense node index, assigned by the node registry ([`crate::nodes::NodeRegistry`]).
pub type NodeIdx = u32;

/// A subscriber of release notifications: a node, and the session (receiving connection
/// generation) it subscribed in. A notification is only delivered if the node is still in the
/// same session, so a node that reconnected does not get notifications for subscriptions made by
/// its previous incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subscriber {
    /// The subscribing node.
    pub node: NodeIdx,
    /// The node's session when it subscribed.
    pub session: u64,
}

/// Why a registration failed: the port is owned by another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(pub NodeIdx);

/// Registration errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The port is held by another node.
    #[error("port is owned by node index {}", .0 .0)]
    Owned(Owner),
    /// The empty name is reserved (it addresses a broadcast).
    #[error("the empty port name is reserved for broadcast")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("port name is {0} bytes, the table stores at most {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// The shard's arena or entry slab reached its 32-bit addressing limit.
    #[error("port shard is full (32-bit arena or entry limit reached)")]
    ShardFull,
}

/// Result of [`PortShard::unregister`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The port was released; these subscribers want to know.
    Released(Vec<Subscriber>),
    /// The port is owned by another node and was left alone.
    NotOwner(NodeIdx),
    /// No such port.
    Unknown,
}

/// Result of [`PortShard::subscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Subscribed (or already subscribed) to a port owned by the given node.
    Subscribed(NodeIdx),
    /// The subscriber owns the port itself; nothing to do.
    OwnPort,
    /// The port is not registered: there is nothing to wait for (registering it would succeed).
    Unknown,
}

/// A page of one node's ports in one shard ([`PortShard::node_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePage<'a> {
    /// The ports, most recently registered first.
    pub ports: Vec<&'a str>,
    /// Where the next page starts, if the node has more here.
    pub next: Option<&'a str>,
    /// The page's start was no longer the node's: it started again from the most recent.
    pub restarted: bool,
}

/// Longest port name the table can store (the length is kept in a `u16`).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;

const NIL: u32 = u32::MAX;
const FLAG_SUBSCRIBED: u16 = 1;
/// Compaction is not worth it below this many garbage bytes.
const COMPACT_MIN_GARBAGE: usize = 1 << 16;

/// One index bucket: an entry and the 32-bit hash tag of its name.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Index into the entry slab.
    idx: u32,
    /// `tag_of(name)`: the low 32 bits of the name's seeded hash.
    tag: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of the name in the arena.
    off: u32,
    /// Owner node, or `NIL` when the slot is free.
    owner: u32,
    /// Next port of the same owner, or next free slot.
    next: u32,
    /// Previous port of the same owner.
    prev: u32,
    /// Name length in bytes.
    len: u16,
    flags: u16,
}

/// Per-node list head inside one shard.
#[derive(Clone, Copy, Debug)]
struct NodeList {
    head: u32,
    count: u32,
}

const EMPTY_LIST: NodeList = NodeList {
    head: NIL,
    count: 0,
};

/// The port table of one shard: name → owner node, per-node port lists, subscriptions.
pub struct PortShard {
    arena: Vec<u8>,
    garbage: usize,
    entries: Vec<Entry>,
    free: u32,
    index: HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
    nodes: Vec<NodeList>,
    subs: HashMap<u32, Vec<Subscriber>>,
    len: usize,
    /// The entries in name order (listings by prefix).
    ordered: Ordered,
}

impl Default for PortShard {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PortShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortShard")
            .field("ports", &self.len)
            .field("arena_bytes", &self.arena.len())
            .field("garbage_bytes", &self.garbage)
            .field("subscribed_ports", &self.subs.len())
            .finish()
    }
}

impl PortShard {
    /// An empty shard with a fixed hash seed.
    pub fn new() -> Self {
        Self::with_seed(0x5eed_0fb1_9a55)
    }

    /// An empty shard whose index is seeded from the process's random source (std's
    /// `RandomState`, what `HashMap` uses): a client cannot compute which names collide in the
    /// index, so it cannot flood one probe chain. What a server uses; the seed never leaves the
    /// shard, and nothing outside it depends on the index's order.
    pub fn with_random_seed() -> Self {
        use std::hash::BuildHasher;
        Self::with_seed(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }

    /// The index's tag of `name` under this shard's seed (tests: which seed a shard got).
    #[cfg(test)]
    pub(crate) fn index_tag(&self, name: &[u8]) -> u32 {
        tag_of(&self.hasher, name)
    }

    /// An empty shard whose index uses the given hash seed (tests and benches: repeatable;
    /// a server takes [`PortShard::with_random_seed`]; the seed never leaves the shard).
    pub fn with_seed(seed: u64) -> Self {
        PortShard {
            arena: Vec::new(),
            garbage: 0,
            entries: Vec::new(),
            free: NIL,
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            nodes: Vec::new(),
            subs: HashMap::new(),
            len: 0,
            ordered: Ordered::default(),
        }
    }

    /// Reserve room for `additional` more ports of about `name_len` bytes each.
    pub fn reserve(&mut self, additional: usize, name_len: usize) {
        self.index.reserve(additional, slot_hash);
        self.entries.reserve(additional);
        self.arena.reserve(additional * name_len);
    }

    /// Number of registered ports.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no port is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of ports `node` holds in this shard.
    pub fn count_of(&self, node: NodeIdx) -> u32 {
        self.nodes.get(node as usize).map_or(0, |l| l.count)
    }

    /// Number of ports with at least one subscriber.
    pub fn subscribed_ports(&self) -> usize {
        self.subs.len()
    }

    /// Bytes of heap held by the table (capacity, not only used part); for metrics.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * (std::mem::size_of::<Slot>() + 1)
            + self.nodes.capacity() * std::mem::size_of::<NodeList>()
            + self.ordered.heap_bytes()
    }

    fn find(&self, name: &[u8]) -> Option<u32> {
        let tag = tag_of(&self.hasher, name);
        let (arena, entries) = (&self.arena, &self.entries);
        self.index
            .find(spread(tag), |s| {
                s.tag == tag && name_of(arena, &entries[s.idx as usize]) == name
            })
            .map(|s| s.idx)
    }

    /// The owner of `name`, if registered.
    pub fn owner(&self, name: &str) -> Option<NodeIdx> {
        self.owner_of_bytes(name.as_bytes())
    }

    /// [`PortShard::owner`] of a name given as its bytes (bytes that are no `str` name no
    /// registered port: every name stored is a `str`).
    #[inline]
    pub fn owner_of_bytes(&self, name: &[u8]) -> Option<NodeIdx> {
        self.find(name).map(|i| self.entries[i as usize].owner)
    }

    /// Register `name` for `node`. Registering a port the node already owns succeeds and
    /// changes nothing (idempotent); a port owned by another node fails with its owner.
    pub fn register(&mut self, name: &str, node: NodeIdx) -> Result<(), RegisterError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err(RegisterError::NameTooLong(bytes.len()));
        }
        let tag = tag_of(&self.hasher, bytes);
        let (arena, entries) = (&self.arena, &self.entries);
        // Lookups never grow the index; a fresh name is found absent by its tag alone (the
        // name bytes are compared only on a 32-bit tag match).
        if let Some(s) = self.index.find(spread(tag), |s| {
            s.tag == tag && name_of(arena, &entries[s.idx as usize]) == bytes
        }) {
            let owner = entries[s.idx as usize].owner;
            return if owner == node {
                Ok(())
            } else {
                Err(RegisterError::Owned(Owner(owner)))
            };
        }
        if self.arena.len() + bytes.len() > u32::MAX as usize {
            self.compact();
            if self.arena.len() + bytes.len() > u32::MAX as usize {
                return Err(RegisterError::ShardFull);
            }
        }
        if self.free == NIL && self.entries.len() >= NIL as usize {
            return Err(RegisterError::ShardFull);
        }
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        let list = self.list_mut(node);
        let head = list.head;
        let entry = Entry {
            off,
            owner: node,
            next: head,
            prev: NIL,
            len: bytes.len() as u16,
            flags: 0,
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.entries[idx as usize].next;
            self.entries[idx as usize] = entry;
            idx
        } else {
            self.entries.push(entry);
            (self.entries.len() - 1) as u32
        };
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        let list = self.list_mut(node);
        list.head = idx;
        list.count += 1;
        // Growing the index rehashes from the tags alone: no entry or arena access.
        self.index
            .insert_unique(spread(tag), Slot { idx, tag }, slot_hash);
        let (arena, entries) = (&self.arena, &self.entries);
        self.ordered
            .insert(idx, bytes, |i| name_of(arena, &entries[i as usize]));
        self.len += 1;
        Ok(())
    }

    /// Release `name` if `node` owns it.
    pub fn unregister(&mut self, name: &str, node: NodeIdx) -> Outcome {
        let bytes = name.as_bytes();
        let tag = tag_of(&self.hasher, bytes);
        let (arena, entries) = (&self.arena, &self.entries);
        let Ok(found) = self.index.find_entry(spread(tag), |s| {
            s.tag == tag && name_of(arena, &entries[s.idx as usize]) == bytes
        }) else {
            return Outcome::Unknown;
        };
        let idx = found.get().idx;
        let owner = entries[idx as usize].owner;
        if owner != node {
            return Outcome::NotOwner(owner);
        }
        found.remove();
        let subs = self.free_entry(idx);
        self.maybe_compact();
        Outcome::Released(subs)
    }

    /// Moves `name` from `from` to `to` if `from` owns it: it is never free in between, and
    /// its release subscriptions stay with it. `O(1)`.
    pub fn transfer(&mut self, name: &str, from: NodeIdx, to: NodeIdx) -> Outcome {
        let Some(idx) = self.find(name.as_bytes()) else {
            return Outcome::Unknown;
        };
        let entry = self.entries[idx as usize];
        if entry.owner != from {
            return Outcome::NotOwner(entry.owner);
        }
        if from == to {
            return Outcome::Released(Vec::new());
        }
        // Out of `from`'s list…
        if entry.prev != NIL {
            self.entries[entry.prev as usize].next = entry.next;
        } else {
            self.nodes[from as usize].head = entry.next;
        }
        if entry.next != NIL {
            self.entries[entry.next as usize].prev = entry.prev;
        }
        self.nodes[from as usize].count -= 1;
        // …into `to`'s, at its head.
        let head = self.list_mut(to).head;
        let e = &mut self.entries[idx as usize];
        e.owner = to;
        e.prev = NIL;
        e.next = head;
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        let list = self.list_mut(to);
        list.head = idx;
        list.count += 1;
        Outcome::Released(Vec::new())
    }

    /// Subscribe `subscriber` to the release of `name` (held by someone else). Subscribing
    /// twice is the same as once; the subscription is cleared by the release it waits for.
    pub fn subscribe(&mut self, name: &str, subscriber: Subscriber) -> SubscribeOutcome {
        let Some(idx) = self.find(name.as_bytes()) else {
            return SubscribeOutcome::Unknown;
        };
        let entry = &mut self.entries[idx as usize];
        if entry.owner == subscriber.node {
            return SubscribeOutcome::OwnPort;
        }
        entry.flags |= FLAG_SUBSCRIBED;
        let list = self.subs.entry(idx).or_default();
        if let Some(s) = list.iter_mut().find(|s| s.node == subscriber.node) {
            s.session = subscriber.session;
        } else {
            list.push(subscriber);
        }
        SubscribeOutcome::Subscribed(entry.owner)
    }

    /// Release every port `node` holds in this shard, calling `f(name, subscribers)` for each.
    /// `O(ports of node)`. Returns how many ports were released.
    pub fn release_all(&mut self, node: NodeIdx, mut f: impl FnMut(&str, Vec<Subscriber>)) -> u32 {
        let Some(list) = self.nodes.get_mut(node as usize) else {
            return 0;
        };
        let released = list.count;
        let mut cur = list.head;
        *list = EMPTY_LIST;
        while cur != NIL {
            let entry = self.entries[cur as usize];
            let next = entry.next;
            let name = name_of(&self.arena, &entry);
            let tag = tag_of(&self.hasher, name);
            if let Ok(found) = self.index.find_entry(spread(tag), |s| s.idx == cur) {
                found.remove();
            }
            let subs = if entry.flags & FLAG_SUBSCRIBED != 0 {
                self.subs.remove(&cur).unwrap_or_default()
            } else {
                Vec::new()
            };
            // The name bytes stay valid until the next compaction, which only runs below.
            let name = name_of(&self.arena, &entry);
            let (arena, entries) = (&self.arena, &self.entries);
            self.ordered
                .remove(cur, name, |i| name_of(arena, &entries[i as usize]));
            f(as_str(name), subs);
            self.entries[cur as usize] = Entry {
                off: 0,
                owner: NIL,
                next: self.free,
                prev: NIL,
                len: 0,
                flags: 0,
            };
            self.free = cur;
            self.garbage += entry.len as usize;
            self.len -= 1;
            cur = next;
        }
        self.maybe_compact();
        released
    }

    /// Iterate over the ports `node` holds in this shard (most recently registered first).
    pub fn ports_of(&self, node: NodeIdx) -> impl Iterator<Item = &str> + '_ {
        let mut cur = self.nodes.get(node as usize).map_or(NIL, |l| l.head);
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let entry = &self.entries[cur as usize];
            cur = entry.next;
            Some(as_str(name_of(&self.arena, entry)))
        })
    }

    /// Up to `limit` ports whose names start with `prefix`, in name order, after `after` (a
    /// name, registered or not) or from the first: one descent of the name-ordered index and
    /// a walk, whatever the size of the shard.
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<(&str, NodeIdx)> {
        let (arena, entries) = (&self.arena, &self.entries);
        self.ordered
            .range(prefix.as_bytes(), after.map(str::as_bytes), limit, |i| {
                name_of(arena, &entries[i as usize])
            })
            .into_iter()
            .map(|i| {
                let e = &entries[i as usize];
                (as_str(name_of(arena, e)), e.owner)
            })
            .collect()
    }

    /// A page of the ports `node` holds in this shard, most recently registered first: from
    /// `start` (inclusive, the `next` of the previous page) or from the most recent. If
    /// `start` is no longer the node's (released or moved meanwhile), the page starts again
    /// from the most recent and says so (`restarted`).
    pub fn node_page(&self, node: NodeIdx, start: Option<&str>, limit: usize) -> NodePage<'_> {
        let head = self.nodes.get(node as usize).map_or(NIL, |l| l.head);
        let (mut cur, restarted) = match start {
            None => (head, false),
            Some(name) => match self.find(name.as_bytes()) {
                Some(i) if self.entries[i as usize].owner == node => (i, false),
                _ => (head, true),
            },
        };
        let mut ports = Vec::new();
        while cur != NIL && ports.len() < limit {
            let e = &self.entries[cur as usize];
            ports.push(as_str(name_of(&self.arena, e)));
            cur = e.next;
        }
        let next = (cur != NIL).then(|| as_str(name_of(&self.arena, &self.entries[cur as usize])));
        NodePage {
            ports,
            next,
            restarted,
        }
    }

    /// Iterate over every `(port, owner)` in the shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, NodeIdx)> + '_ {
        self.index.iter().map(|s| {
            let e = &self.entries[s.idx as usize];
            (as_str(name_of(&self.arena, e)), e.owner)
        })
    }

    fn list_mut(&mut self, node: NodeIdx) -> &mut NodeList {
        let n = node as usize;
        if n >= self.nodes.len() {
            self.nodes.resize(n + 1, EMPTY_LIST);
        }
        &mut self.nodes[n]
    }

    /// Unlink a live entry (already removed from the index) and put it on the free list.
    fn free_entry(&mut self, idx: u32) -> Vec<Subscriber> {
        let entry = self.entries[idx as usize];
        let (arena, entries) = (&self.arena, &self.entries);
        self.ordered.remove(idx, name_of(arena, &entry), |i| {
            name_of(arena, &entries[i as usize])
        });
        if entry.prev != NIL {
            self.entries[entry.prev as usize].next = entry.next;
        } else {
            self.nodes[entry.owner as usize].head = entry.next;
        }
        if entry.next != NIL {
            self.entries[entry.next as usize].prev = entry.prev;
        }
        self.nodes[entry.owner as usize].count -= 1;
        let subs = if entry.flags & FLAG_SUBSCRIBED != 0 {
            self.subs.remove(&idx).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.entries[idx as usize] = Entry {
            off: 0,
            owner: NIL,
            next: self.free,
            prev: NIL,
            len: 0,
            flags: 0,
        };
        self.free = idx;
        self.garbage += entry.len as usize;
        self.len -= 1;
        subs
    }

    fn maybe_compact(&mut self) {
        if self.garbage >= COMPACT_MIN_GARBAGE && self.garbage > self.arena.len() / 2 {
            self.compact();
        }
        if self.len == 0 {
            // Everything is gone: give the memory back.
            self.arena = Vec::new();
            self.entries = Vec::new();
            self.free = NIL;
            self.garbage = 0;
            self.index.shrink_to(0, |_| 0);
            self.ordered.clear();
        }
    }

    /// Copy live names into a fresh arena, dropping the garbage of released names.
    pub fn compact(&mut self) {
        let live = self.arena.len() - self.garbage;
        let mut arena = Vec::with_capacity(live);
        for e in self.entries.iter_mut() {
            if e.owner != NIL {
                let start = e.off as usize;
                let off = arena.len() as u32;
                arena.extend_from_slice(&self.arena[start..start + e.len as usize]);
                e.off = off;
            }
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

#[inline]
fn name_of<'a>(arena: &'a [u8], e: &Entry) -> &'a [u8] {
    let start = e.off as usize;
    &arena[start..start + e.len as usize]
}

/// The 32-bit tag of a name: the low half of its seeded hash.
#[inline]
fn tag_of(hasher: &foldhash::fast::FixedState, name: &[u8]) -> u32 {
    hasher.hash_one(name) as u32
}

/// The index's 64-bit hash of a tag. hashbrown takes the bucket from the low bits and the
/// control byte from the top 7 bits: multiplying by an odd constant keeps the low bits a
/// bijection of the tag's low bits and mixes every tag bit into the top ones.
#[inline]
fn spread(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Rehash of an index bucket: from its tag alone, no arena access.
#[inline]
fn slot_hash(s: &Slot) -> u64 {
    spread(s.tag)
}

#[inline]
fn as_str(bytes: &[u8]) -> &str {
    // Only `&str` input is ever stored, and whole names are copied, so this cannot fail.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The shard that owns `port` among `shards` shards.
///
/// The hash is [`streams::key_hash`] (FNV-1a and the SplitMix64 finaliser), fixed by its
/// definition alone — not by a crate version, a platform or a process seed — and the same one
/// http and ws use to route a node id to its switch instance. The range is reduced with a
/// multiply-high ([`streams::key_index`]), so the shard choice depends on the high bits of a
/// hash that is unrelated to the one the shard's own index uses.
///
/// # Panics
/// If `shards` is 0.
pub fn shard_of(port: &[u8], shards: usize) -> usize {
    assert!(shards > 0, "shard_of: shards must be at least 1");
    // One shard (the default of a small switch) owns every port: no hash to compute, ~80
    // instructions per SendMsg target and per registered port.
    if shards == 1 {
        return 0;
    }
    streams::key_index(streams::key_hash(port), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(node: NodeIdx) -> Subscriber {
        Subscriber { node, session: 1 }
    }

    #[test]
    fn entry_is_twenty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 20);
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    #[test]
    fn shards_of_a_server_hash_names_with_seeds_no_client_can_know() {
        // A fixed seed (as every server shard had before) lets a client compute names that
        // share a tag; two random seeds give the same tag to a name about once in 2^32.
        let (a, b) = (PortShard::with_random_seed(), PortShard::with_random_seed());
        let differ = (0..4)
            .filter(|i| {
                let name = format!("port-{i}");
                tag_of(&a.hasher, name.as_bytes()) != tag_of(&b.hasher, name.as_bytes())
            })
            .count();
        assert!(
            differ >= 3,
            "two random seeds hashed {differ} of 4 names apart"
        );
        let fixed = (PortShard::with_seed(7), PortShard::with_seed(7));
        assert_eq!(
            tag_of(&fixed.0.hasher, b"port"),
            tag_of(&fixed.1.hasher, b"port")
        );
    }

    #[test]
    fn tag_collisions_compare_names() {
        // Names whose 32-bit tags are equal must still be told apart by their bytes: find such
        // a pair under the shard's hasher (a birthday search, ~80k names).
        let mut t = PortShard::new();
        let mut by_tag: HashMap<u32, String> = HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|i| {
                let name = format!("c{i}");
                let tag = tag_of(&t.hasher, name.as_bytes());
                by_tag.insert(tag, name.clone()).map(|other| (other, name))
            })
            .unwrap();
        assert_eq!(
            tag_of(&t.hasher, a.as_bytes()),
            tag_of(&t.hasher, b.as_bytes())
        );
        t.register(&a, 1).unwrap();
        assert_eq!(t.owner(&b), None);
        t.register(&b, 2).unwrap();
        assert_eq!(t.owner(&a), Some(1));
        assert_eq!(t.owner(&b), Some(2));
        assert_eq!(t.unregister(&a, 1), Outcome::Released(vec![]));
        assert_eq!(t.owner(&b), Some(2));
    }

    #[test]
    fn growth_keeps_every_name() {
        // Many doublings of the index, rehashed from the tags.
        let mut t = PortShard::new();
        for i in 0..200_000u32 {
            t.register(&format!("g:{i}"), i % 7).unwrap();
        }
        for i in 0..200_000u32 {
            assert_eq!(t.owner(&format!("g:{i}")), Some(i % 7));
            assert!(t.register(&format!("g:{i}"), (i + 1) % 7).is_err());
        }
        assert_eq!(t.owner("g:200000"), None);
        assert_eq!(t.iter().count(), 200_000);
    }

    #[test]
    fn register_is_exclusive_and_idempotent() {
        let mut t = PortShard::new();
        assert_eq!(t.register("a", 1), Ok(()));
        assert_eq!(t.register("a", 1), Ok(()));
        assert_eq!(t.register("a", 2), Err(RegisterError::Owned(Owner(1))));
        assert_eq!(t.len(), 1);
        assert_eq!(t.count_of(1), 1);
        assert_eq!(t.owner("a"), Some(1));
        assert_eq!(t.owner("b"), None);
        assert_eq!(t.register("", 1), Err(RegisterError::EmptyName));
    }

    #[test]
    fn unregister_only_by_owner() {
        let mut t = PortShard::new();
        t.register("a", 1).unwrap();
        assert_eq!(t.unregister("a", 2), Outcome::NotOwner(1));
        assert_eq!(t.unregister("b", 1), Outcome::Unknown);
        assert_eq!(t.unregister("a", 1), Outcome::Released(vec![]));
        assert_eq!(t.unregister("a", 1), Outcome::Unknown);
        assert!(t.is_empty());
        assert_eq!(t.count_of(1), 0);
    }

    #[test]
    fn subscribers_are_returned_once() {
        let mut t = PortShard::new();
        t.register("a", 1).unwrap();
        assert_eq!(t.subscribe("a", sub(1)), SubscribeOutcome::OwnPort);
        assert_eq!(t.subscribe("a", sub(2)), SubscribeOutcome::Subscribed(1));
        assert_eq!(t.subscribe("a", sub(2)), SubscribeOutcome::Subscribed(1));
        assert_eq!(t.subscribe("a", sub(3)), SubscribeOutcome::Subscribed(1));
        assert_eq!(t.subscribe("zz", sub(3)), SubscribeOutcome::Unknown);
        assert_eq!(
            t.unregister("a", 1),
            Outcome::Released(vec![sub(2), sub(3)])
        );
        t.register("a", 4).unwrap();
        assert_eq!(t.unregister("a", 4), Outcome::Released(vec![]));
        assert_eq!(t.subscribed_ports(), 0);
    }

    #[test]
    fn release_all_touches_only_that_node() {
        let mut t = PortShard::new();
        for i in 0..100 {
            t.register(&format!("p{i}"), i % 3).unwrap();
        }
        t.subscribe("p1", sub(0)).ok_or_unknown();
        let mut seen = Vec::new();
        let n = t.release_all(1, |name, subs| seen.push((name.to_string(), subs)));
        assert_eq!(n, 33);
        assert_eq!(seen.len(), 33);
        assert!(seen
            .iter()
            .all(|(n, _)| n[1..].parse::<u32>().unwrap() % 3 == 1));
        let with_subs: Vec<_> = seen.iter().filter(|(_, s)| !s.is_empty()).collect();
        assert_eq!(with_subs.len(), 1);
        assert_eq!(with_subs[0].0, "p1");
        assert_eq!(t.len(), 67);
        assert_eq!(t.count_of(1), 0);
        assert_eq!(t.release_all(1, |_, _| {}), 0);
        assert_eq!(t.ports_of(0).count(), 34);
    }

    #[test]
    fn listings_by_prefix_and_by_node_follow_registrations_and_releases() {
        let mut t = PortShard::new();
        for i in 0..300u32 {
            t.register(&format!("user:{i:03}"), i % 3).unwrap();
        }
        t.register("room:1", 9).unwrap();
        let page = t.list("user:", None, 4);
        assert_eq!(
            page,
            [
                ("user:000", 0),
                ("user:001", 1),
                ("user:002", 2),
                ("user:003", 0)
            ]
        );
        let page = t.list("user:", Some("user:003"), 2);
        assert_eq!(page, [("user:004", 1), ("user:005", 2)]);
        assert_eq!(t.unregister("user:004", 1), Outcome::Released(vec![]));
        assert_eq!(t.list("user:", Some("user:003"), 1), [("user:005", 2)]);
        assert_eq!(t.list("user:29", None, 99).len(), 10);
        t.release_all(2, |_, _| {});
        assert_eq!(
            t.list("user:", None, 3),
            [("user:000", 0), ("user:001", 1), ("user:003", 0)]
        );
        assert_eq!(t.list("", None, 1000).len(), 300 - 100 - 1 + 1);
        // Node 9's one port; node 0's in pages of 40, most recent first.
        assert_eq!(t.node_page(9, None, 10).ports, ["room:1"]);
        let mut seen = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = t.node_page(0, start.as_deref(), 40);
            assert!(!page.restarted);
            seen.extend(page.ports.iter().map(|p| p.to_string()));
            match page.next {
                Some(n) => start = Some(n.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 100);
        assert_eq!(seen[0], "user:297");
        // A start that is not the node's any more starts again, and says so.
        let page = t.node_page(0, Some("user:001"), 5);
        assert!(page.restarted);
        assert_eq!(page.ports[0], "user:297");
    }

    #[test]
    fn transfer_moves_a_port_between_owners_without_freeing_it() {
        let mut t = PortShard::new();
        t.register("a", 1).unwrap();
        t.register("b", 1).unwrap();
        t.register("c", 1).unwrap();
        t.subscribe("b", sub(3)).ok_or_unknown();
        assert_eq!(t.transfer("b", 2, 2), Outcome::NotOwner(1));
        assert_eq!(t.transfer("zz", 1, 2), Outcome::Unknown);
        assert_eq!(t.transfer("b", 1, 2), Outcome::Released(vec![]));
        assert_eq!(t.owner("b"), Some(2));
        assert_eq!((t.count_of(1), t.count_of(2), t.len()), (2, 1, 3));
        let mut mine: Vec<&str> = t.ports_of(1).collect();
        mine.sort();
        assert_eq!(mine, ["a", "c"]);
        assert_eq!(t.ports_of(2).collect::<Vec<_>>(), ["b"]);
        // The subscription followed the port: its release by the new owner notifies.
        assert_eq!(t.unregister("b", 2), Outcome::Released(vec![sub(3)]));
        assert_eq!(t.release_all(1, |_, _| {}), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn compaction_keeps_names() {
        let mut t = PortShard::new();
        let name = |i: u32| format!("port-{i:010}-xxxxxxxxxxxxxxxx");
        for i in 0..20_000 {
            t.register(&name(i), i % 2).unwrap();
        }
        t.release_all(0, |_, _| {});
        for i in (1..20_000).step_by(4) {
            assert!(matches!(t.unregister(&name(i), 1), Outcome::Released(_)));
        }
        assert!(t.garbage < t.arena.len());
        for i in 0..20_000 {
            let expect = (i % 4 == 3).then_some(1);
            assert_eq!(t.owner(&name(i)), expect, "{i}");
        }
    }

    #[test]
    fn the_owner_of_a_name_s_bytes_is_the_owner_of_the_name_and_other_bytes_name_no_port() {
        let mut t = PortShard::new();
        t.register("p-1", 1).unwrap();
        t.register("é✓", 2).unwrap();
        t.register("é", 3).unwrap();
        for name in ["p-1", "é✓", "é", "p-2", "✓", "p"] {
            assert_eq!(t.owner_of_bytes(name.as_bytes()), t.owner(name), "{name}");
        }
        assert_eq!(t.owner_of_bytes("é✓".as_bytes()), Some(2));
        // Bytes that are not a `str` (a character cut, or no UTF-8 at all) match no name.
        assert_eq!(t.owner_of_bytes(&"é✓".as_bytes()[..3]), None);
        assert_eq!(t.owner_of_bytes(&"é".as_bytes()[..1]), None);
        assert_eq!(t.owner_of_bytes(b"p-1\xff"), None);
        assert_eq!(t.owner_of_bytes(b""), None);
    }

    #[test]
    fn shard_of_is_stable() {
        // Pinned values: changing them breaks routing between processes of different builds.
        assert_eq!(shard_of(b"", 1), 0);
        // One shard skips the hash: the same answer as the hash's reduction to one shard.
        for p in ["", "a", "user:42", "video:abc"] {
            assert_eq!(shard_of(p.as_bytes(), 1), 0);
            assert_eq!(streams::key_index(streams::key_hash(p.as_bytes()), 1), 0);
        }
        let got: Vec<usize> = ["user:42", "video:abc", "a", "b"]
            .iter()
            .map(|p| shard_of(p.as_bytes(), 16))
            .collect();
        assert_eq!(got, PINNED);
        let mut counts = [0u32; 8];
        for i in 0..80_000 {
            counts[shard_of(format!("user:{i}").as_bytes(), 8)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    const PINNED: [usize; 4] = [13, 4, 0, 3];

    trait OkOrUnknown {
        fn ok_or_unknown(self);
    }
    impl OkOrUnknown for SubscribeOutcome {
        fn ok_or_unknown(self) {
            assert_ne!(self, SubscribeOutcome::Unknown);
        }
    }
}
