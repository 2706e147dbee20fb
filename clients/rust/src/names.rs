//! [`NameSet`]: the set of port names a session holds (or watches), built for millions of
//! entries added one batch at a time.
//!
//! A `HashSet<String>` cost more per registered port than the switch spends on it (issue 16's
//! profile of `client_load regport`): a heap copy of each name, and on every growth a rehash
//! that read each name back from the heap (a cache miss per entry), plus a string compare
//! (another miss) on every 7-bit tag match while probing. Here each entry keeps its 64-bit
//! hash, so growth rehashes without touching the names and probing compares hashes before
//! bytes, and names up to [`INLINE`] bytes (the usual port name) live inside the entry: no
//! allocation per port.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};
use hashbrown::DefaultHashBuilder;

/// Longest name stored without a heap allocation.
pub const INLINE: usize = 22;

/// One name: inline when short, boxed otherwise.
#[derive(Clone)]
enum Name {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl Name {
    fn new(s: &str) -> Name {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Name::Inline(b.len() as u8, buf)
        } else {
            Name::Heap(s.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline(n, buf) => &buf[..*n as usize],
            Name::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `&str` (never cut), so always UTF-8; `""` cannot happen.
            Name::Inline(n, buf) => std::str::from_utf8(&buf[..*n as usize]).unwrap_or_default(),
            Name::Heap(s) => s,
        }
    }
}

#[derive(Clone)]
struct Entry {
    hash: u64,
    name: Name,
}

/// A set of names (ports).
#[derive(Clone, Default)]
pub struct NameSet {
    table: HashTable<Entry>,
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

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Add `name`; false if it was there.
    pub fn insert(&mut self, name: &str) -> bool {
        let hash = self.hash(name);
        let b = name.as_bytes();
        match self.table.entry(
            hash,
            |e| e.hash == hash && e.name.as_bytes() == b,
            |e| e.hash,
        ) {
            TableEntry::Occupied(_) => false,
            TableEntry::Vacant(v) => {
                v.insert(Entry {
                    hash,
                    name: Name::new(name),
                });
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
        let b = name.as_bytes();
        self.table
            .find_entry(hash, |e| e.hash == hash && e.name.as_bytes() == b)
            .map(|e| e.remove())
            .is_ok()
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let hash = self.hash(name);
        let b = name.as_bytes();
        self.table
            .find(hash, |e| e.hash == hash && e.name.as_bytes() == b)
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
    }

    /// The names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.table.iter().map(|e| e.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_kept_found_and_removed() {
        let mut s = NameSet::new();
        let long = "p".repeat(INLINE + 1);
        let edge = "é".repeat(INLINE / 2);
        for n in ["", "a", "user:alice", edge.as_str(), long.as_str()] {
            assert!(s.insert(n), "{n}");
            assert!(!s.insert(n), "{n} twice");
            assert!(s.contains(n));
        }
        assert_eq!(s.len(), 5);
        assert!(!s.contains("user:alic"));
        assert!(!s.contains(&"p".repeat(INLINE)));
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
}
