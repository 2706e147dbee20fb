//! [`NameSet`]: the set of port names a session holds (or watches), built for millions of
//! entries added one batch at a time.
//!
//! Every registered port goes in (to be registered again after a reconnect or a failover),
//! so an insert is on the path of every RegPort, and it was the largest part of the client's
//! cost per port (issue 16's profile of `client_load regport`). A `HashSet<String>` paid a
//! heap copy per name, and a rehash on growth that read every name back from the heap. The
//! next version kept each name (up to 22 bytes inline) and its 64-bit hash in a 32-byte
//! table entry: no allocation per name, but a table four times the size of its keys, whose
//! every insert missed the cache twice (control bytes, then the entry) in a table far
//! larger than the cache.
//!
//! Here the names lie back to back in one arena, in insertion order (appending is
//! sequential), and the table holds 8 bytes per name: 32 bits of its hash and its number in
//! the arena. Growth rehashes from those 32 bits without reading a name; a probe compares
//! names only when the 32 bits match. A removed name leaves a hole in the arena until holes
//! are half of it; then the live names are copied into a new arena and the table entries
//! renumbered in place (no rehash).

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};
use hashbrown::DefaultHashBuilder;

/// A table entry: the high 32 bits of the name's hash, and the name's number in the arena.
#[derive(Clone, Copy)]
struct Slot {
    hash: u32,
    name: u32,
}

/// The table's hash of a name from its stored 32 bits: spread over 64 so that hashbrown's
/// bucket (the low bits) and its tag (the top 7) both vary.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Name `k` of an arena whose names end at `ends` (a free function, so that a closure can
/// read the arena while the table is borrowed mutably).
fn name_in<'a>(arena: &'a str, ends: &[usize], k: u32) -> &'a str {
    let k = k as usize;
    let start = if k == 0 { 0 } else { ends[k - 1] };
    // Both ends are where a whole `&str` was appended: char boundaries.
    &arena[start..ends[k]]
}

/// Whether a table entry is `name` (whose 32 hash bits are `hash`): the bits first, the
/// bytes only when they match.
fn is<'a>(
    arena: &'a str,
    ends: &'a [usize],
    hash: u32,
    name: &'a str,
) -> impl Fn(&Slot) -> bool + 'a {
    move |s| s.hash == hash && name_in(arena, ends, s.name) == name
}

/// A set of names (ports).
#[derive(Clone, Default)]
pub struct NameSet {
    table: HashTable<Slot>,
    /// Names back to back; name `k` is `arena[ends[k - 1]..ends[k]]` (from 0 for `k` = 0).
    arena: String,
    ends: Vec<usize>,
    /// Arena bytes of removed names.
    dead: usize,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for NameSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl NameSet {
    /// An empty set.
    pub fn new() -> NameSet {
        NameSet::default()
    }

    fn hash(&self, name: &str) -> u32 {
        (self.hasher.hash_one(name) >> 32) as u32
    }

    fn name(&self, k: u32) -> &str {
        name_in(&self.arena, &self.ends, k)
    }

    /// Add `name`; false if it was there.
    pub fn insert(&mut self, name: &str) -> bool {
        let hash = self.hash(name);
        let same = is(&self.arena, &self.ends, hash, name);
        match self.table.entry(spread(hash), same, |s| spread(s.hash)) {
            TableEntry::Occupied(_) => false,
            TableEntry::Vacant(v) => {
                let Ok(number) = u32::try_from(self.ends.len()) else {
                    // 4 billion names held: beyond any switch's table. Keep the set exact
                    // rather than wrap the numbering.
                    panic!("NameSet holds at most {} names", u32::MAX);
                };
                self.arena.push_str(name);
                self.ends.push(self.arena.len());
                v.insert(Slot { hash, name: number });
                true
            }
        }
    }

    /// Remove `name`; false if it was not there.
    pub fn remove(&mut self, name: &str) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let hash = self.hash(name);
        let found = self
            .table
            .find_entry(spread(hash), is(&self.arena, &self.ends, hash, name));
        let Ok(entry) = found else {
            return false;
        };
        entry.remove();
        self.dead += name.len();
        if self.table.is_empty() {
            self.clear();
        } else if self.dead > 4096 && self.dead * 2 > self.arena.len() {
            self.compact();
        }
        true
    }

    /// Copy the live names into a new arena and renumber their entries (their hashes do not
    /// change, so nothing moves in the table).
    fn compact(&mut self) {
        let mut arena = String::with_capacity(self.arena.len() - self.dead);
        let mut ends = Vec::with_capacity(self.table.len());
        let (old_arena, old_ends) = (&self.arena, &self.ends);
        for slot in self.table.iter_mut() {
            arena.push_str(name_in(old_arena, old_ends, slot.name));
            // Fewer names than before: the number fits.
            slot.name = ends.len() as u32;
            ends.push(arena.len());
        }
        self.arena = arena;
        self.ends = ends;
        self.dead = 0;
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let hash = self.hash(name);
        self.table
            .find(spread(hash), is(&self.arena, &self.ends, hash, name))
            .is_some()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Remove every name.
    pub fn clear(&mut self) {
        self.table.clear();
        self.arena.clear();
        self.ends.clear();
        self.dead = 0;
    }

    /// The names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.table.iter().map(|s| self.name(s.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_kept_found_and_removed() {
        let mut s = NameSet::new();
        let long = "p".repeat(300);
        let edge = "é".repeat(11);
        for n in ["", "a", "user:alice", edge.as_str(), long.as_str()] {
            assert!(s.insert(n), "{n}");
            assert!(!s.insert(n), "{n} twice");
            assert!(s.contains(n));
        }
        assert_eq!(s.len(), 5);
        assert!(!s.contains("user:alic"));
        assert!(!s.contains(&"p".repeat(299)));
        let mut names: Vec<&str> = s.iter().collect();
        names.sort_unstable();
        let mut want = vec!["", "a", "user:alice", edge.as_str(), long.as_str()];
        want.sort_unstable();
        assert_eq!(names, want);
        assert!(s.remove("a") && !s.remove("a") && s.remove(&long));
        assert!(!s.contains("a") && !s.contains(&long) && s.contains("user:alice"));
        assert_eq!(s.len(), 3);
        s.clear();
        assert!(s.is_empty() && !s.contains(""));
    }

    #[test]
    fn growth_keeps_every_name() {
        let mut s = NameSet::new();
        for i in 0..100_000u32 {
            assert!(s.insert(&format!("aa000{i:011}")));
        }
        assert_eq!(s.len(), 100_000);
        assert!((0..100_000u32).all(|i| s.contains(&format!("aa000{i:011}"))));
        assert!(!s.contains("aa00000000100000"));
    }

    #[test]
    fn agrees_with_a_hash_set_through_inserts_removals_compactions_and_clones() {
        let mut s = NameSet::new();
        let mut model = std::collections::HashSet::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Names drawn from a few thousand, some long, so that removals free enough
            // arena for compactions to happen (counted below).
            let n = x % 5_000;
            let name = if n % 7 == 0 {
                format!("long-name-{n}-{}", "x".repeat(40))
            } else {
                format!("p{n}")
            };
            if x >> 60 < 9 {
                assert_eq!(
                    s.insert(&name),
                    model.insert(name.clone()),
                    "insert {name} at {step}"
                );
            } else {
                assert_eq!(
                    s.remove(&name),
                    model.remove(&name),
                    "remove {name} at {step}"
                );
            }
            if step % 20_000 == 0 {
                let copy = s.clone();
                let mut got: Vec<&str> = copy.iter().collect();
                got.sort_unstable();
                let mut want: Vec<&str> = model.iter().map(String::as_str).collect();
                want.sort_unstable();
                assert_eq!(got, want, "at {step}");
            }
        }
        assert_eq!(s.len(), model.len());
        assert!(model.iter().all(|n| s.contains(n)));
        assert!(!s.contains("p5000"));
        let live: usize = model.iter().map(String::len).sum();
        assert_eq!(
            s.arena.len() - s.dead,
            live,
            "the arena holds the live names and holes"
        );
        // Without compaction the arena would hold every name ever inserted (~1 MB here).
        assert!(
            s.arena.len() <= 2 * live + 8192,
            "holes are compacted away: {} bytes for {live}",
            s.arena.len()
        );
    }

    #[test]
    fn removing_the_last_name_frees_the_arena() {
        let mut s = NameSet::new();
        for i in 0..1000 {
            s.insert(&format!("port-{i}"));
        }
        for i in 0..1000 {
            assert!(s.remove(&format!("port-{i}")));
        }
        assert!(s.is_empty() && s.arena.is_empty() && s.ends.is_empty());
        assert!(s.insert("again") && s.contains("again"));
    }
}
