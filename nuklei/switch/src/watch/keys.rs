//! Matching a name against many watched keys, exact and by prefix, at a cost that does not
//! grow with the number of watches: one lookup for the exact keys and one per distinct
//! prefix length (a thousand watches on `user:` are one key, one lookup).

use hashbrown::HashMap;

/// Values (watch lists, interested homes) by key, exact or prefix.
#[derive(Debug)]
pub struct KeyIndex<V> {
    exact: HashMap<Box<[u8]>, V>,
    prefixes: HashMap<Box<[u8]>, V>,
    /// Distinct prefix lengths in use, ascending, with how many prefixes have each.
    lengths: Vec<(usize, u32)>,
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex {
            exact: HashMap::new(),
            prefixes: HashMap::new(),
            lengths: Vec::new(),
        }
    }
}

impl<V: Default> KeyIndex<V> {
    /// Whether no key is in the index.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The value of `key` (a prefix if `prefix`), created empty if new.
    pub fn entry(&mut self, key: &str, prefix: bool) -> &mut V {
        let bytes = key.as_bytes();
        if prefix {
            if !self.prefixes.contains_key(bytes) {
                match self.lengths.binary_search_by_key(&bytes.len(), |l| l.0) {
                    Ok(i) => self.lengths[i].1 += 1,
                    Err(i) => self.lengths.insert(i, (bytes.len(), 1)),
                }
            }
            self.prefixes.entry(bytes.into()).or_default()
        } else {
            self.exact.entry(bytes.into()).or_default()
        }
    }

    /// Changes the value of `key` with `f`; removes the key when `f` says it is now empty.
    pub fn update(&mut self, key: &str, prefix: bool, f: impl FnOnce(&mut V) -> bool) {
        let bytes = key.as_bytes();
        let map = if prefix {
            &mut self.prefixes
        } else {
            &mut self.exact
        };
        let Some(v) = map.get_mut(bytes) else {
            return;
        };
        if !f(v) {
            return;
        }
        map.remove(bytes);
        if prefix {
            if let Ok(i) = self.lengths.binary_search_by_key(&bytes.len(), |l| l.0) {
                self.lengths[i].1 -= 1;
                if self.lengths[i].1 == 0 {
                    self.lengths.remove(i);
                }
            }
        }
    }

    /// Calls `f` with the value of every key that matches `name`: the exact key `name`, and
    /// every prefix of it.
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&V)) {
        if self.is_empty() {
            return;
        }
        let bytes = name.as_bytes();
        if let Some(v) = self.exact.get(bytes) {
            f(v);
        }
        for &(len, _) in &self.lengths {
            if len > bytes.len() {
                break;
            }
            if let Some(v) = self.prefixes.get(&bytes[..len]) {
                f(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(index: &KeyIndex<Vec<u32>>, name: &str) -> Vec<u32> {
        let mut got = Vec::new();
        index.for_each_match(name, |v| got.extend(v));
        got.sort();
        got
    }

    #[test]
    fn exact_keys_and_every_prefix_match() {
        let mut index: KeyIndex<Vec<u32>> = KeyIndex::default();
        index.entry("user:", true).push(1);
        index.entry("user:42", false).push(2);
        index.entry("", true).push(3);
        index.entry("user:4", true).push(4);
        index.entry("room:", true).push(5);
        assert_eq!(matches(&index, "user:42"), [1, 2, 3, 4]);
        assert_eq!(matches(&index, "user:420"), [1, 3, 4]);
        assert_eq!(matches(&index, "user"), [3]);
        assert_eq!(matches(&index, "room:1"), [3, 5]);
        // Multi-byte names: a prefix length inside a character is simply no match.
        assert_eq!(matches(&index, "ü"), [3]);
        index.update("user:4", true, |v| {
            v.clear();
            true
        });
        assert_eq!(matches(&index, "user:42"), [1, 2, 3]);
        index.update("user:", true, |v| {
            v.clear();
            true
        });
        index.update("", true, |_| true);
        index.update("room:", true, |_| true);
        index.update("user:42", false, |_| true);
        assert!(index.is_empty());
        assert!(index.lengths.is_empty());
    }
}
