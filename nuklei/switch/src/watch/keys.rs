//! Matching a name against many watched keys, exact and by prefix, at a cost that does not
//! grow with the number of watches: one lookup for the exact keys and one per distinct
//! prefix length (a thousand watches on `user:` are one key, one lookup). Every registration
//! and release asks, so a name that no prefix can match (its first two bytes begin no watched
//! prefix) is turned away by a bit test before any hashing: 10,000 watches on `w:` cost a
//! RegPort of other names ~155 instructions per port with the look-ups, ~40 with the test
//! (`benches/coord_instructions.sh`).

use hashbrown::HashMap;

/// Values (watch lists, interested homes) by key, exact or prefix.
#[derive(Debug)]
pub struct KeyIndex<V> {
    exact: HashMap<Box<[u8]>, V>,
    prefixes: HashMap<Box<[u8]>, V>,
    /// Distinct prefix lengths in use, ascending, with how many prefixes have each.
    lengths: Vec<(usize, u32)>,
    /// How the watched prefixes begin (`None` while there are none).
    starts: Option<Box<Starts>>,
}

/// The beginnings of a set of prefixes: the first two bytes of every prefix of two or more,
/// and the byte of every one-byte prefix, as bits to test and counts to keep them right when
/// prefixes go. A name that begins with none of them matches no prefix but the empty one.
#[derive(Debug)]
struct Starts {
    pairs: [u64; 1024],
    singles: [u64; 4],
    /// Prefixes per beginning: `b0 << 8 | b1` for a pair, `0x1_0000 | b` for a single byte.
    counts: HashMap<u32, u32>,
}

impl Starts {
    fn new() -> Box<Starts> {
        Box::new(Starts {
            pairs: [0; 1024],
            singles: [0; 4],
            counts: HashMap::new(),
        })
    }

    /// The beginning of `prefix` (`None` for the empty prefix, which every name begins with).
    fn beginning(prefix: &[u8]) -> Option<u32> {
        match *prefix {
            [] => None,
            [b] => Some(0x1_0000 | u32::from(b)),
            [b0, b1, ..] => Some(u32::from(b0) << 8 | u32::from(b1)),
        }
    }

    fn bit(&mut self, beginning: u32, on: bool) {
        let (words, at): (&mut [u64], usize) = if beginning & 0x1_0000 != 0 {
            (&mut self.singles, (beginning & 0xff) as usize)
        } else {
            (&mut self.pairs, beginning as usize)
        };
        if on {
            words[at / 64] |= 1 << (at % 64);
        } else {
            words[at / 64] &= !(1 << (at % 64));
        }
    }

    fn add(&mut self, prefix: &[u8]) {
        if let Some(b) = Starts::beginning(prefix) {
            *self.counts.entry(b).or_default() += 1;
            self.bit(b, true);
        }
    }

    fn remove(&mut self, prefix: &[u8]) {
        let Some(b) = Starts::beginning(prefix) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&b) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&b);
                self.bit(b, false);
            }
        }
    }

    #[inline]
    fn has_single(&self, b: u8) -> bool {
        self.singles[usize::from(b) / 64] & (1 << (b % 64)) != 0
    }

    #[inline]
    fn has_pair(&self, b0: u8, b1: u8) -> bool {
        let pair = usize::from(b0) << 8 | usize::from(b1);
        self.pairs[pair / 64] & (1 << (pair % 64)) != 0
    }
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex {
            exact: HashMap::new(),
            prefixes: HashMap::new(),
            lengths: Vec::new(),
            starts: None,
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
                self.starts.get_or_insert_with(Starts::new).add(bytes);
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
            if let Some(starts) = &mut self.starts {
                starts.remove(bytes);
            }
            if self.prefixes.is_empty() {
                self.starts = None;
            }
        }
    }

    /// Whether some key may match `name`: `false` means that none does, told without hashing
    /// when there are no exact keys (a bit test of the name's first two bytes), so the caller
    /// can skip the look-up.
    #[inline]
    pub fn may_match(&self, name: &str) -> bool {
        // Nothing watched (the common case): decided here, where the caller is inlined.
        if self.exact.is_empty() && self.lengths.is_empty() {
            return false;
        }
        self.may_match_some(name)
    }

    /// [`KeyIndex::may_match`] when some key is watched: out of line, so the callers on every
    /// registration stay small.
    #[inline(never)]
    fn may_match_some(&self, name: &str) -> bool {
        if !self.exact.is_empty() {
            return true;
        }
        match self.lengths.first() {
            None => false,
            Some(&(0, _)) => true,
            Some(_) => self.prefix_may_match(name.as_bytes()),
        }
    }

    /// Whether a prefix of one byte or more may match `bytes`.
    #[inline]
    fn prefix_may_match(&self, bytes: &[u8]) -> bool {
        let Some(starts) = self.starts.as_deref() else {
            return false;
        };
        match *bytes {
            [] => false,
            [b] => starts.has_single(b),
            [b0, b1, ..] => starts.has_single(b0) || starts.has_pair(b0, b1),
        }
    }

    /// Calls `f` with the value of every key that matches `name`: the exact key `name`, and
    /// every prefix of it.
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&V)) {
        if self.is_empty() {
            return;
        }
        let bytes = name.as_bytes();
        if !self.exact.is_empty() {
            if let Some(v) = self.exact.get(bytes) {
                f(v);
            }
        }
        let starts = self.starts.as_deref();
        // Whether a prefix of one byte, or of two or more, can match at all.
        let single = match (starts, bytes.first()) {
            (Some(s), Some(&b)) => s.has_single(b),
            _ => false,
        };
        let longer = match (starts, bytes) {
            (Some(s), [b0, b1, ..]) => s.has_pair(*b0, *b1),
            _ => false,
        };
        for &(len, _) in &self.lengths {
            if len > bytes.len() || (len >= 2 && !longer) {
                break;
            }
            if len == 1 && !single {
                continue;
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
        assert!(index.starts.is_none());
    }

    /// The bit test that turns names away must never turn away a name a prefix matches: every
    /// prefix length (0, 1, 2, more), names shorter than a prefix, and prefixes removed.
    #[test]
    fn names_no_prefix_can_match_are_turned_away_and_no_other() {
        let mut index: KeyIndex<Vec<u32>> = KeyIndex::default();
        index.entry("w:", true).push(1);
        index.entry("x", true).push(2);
        index.entry("abc", true).push(3);
        assert_eq!(matches(&index, "p:0001"), Vec::<u32>::new());
        assert!(!index.may_match("p:0001"));
        assert_eq!(matches(&index, "w:trickle"), [1]);
        assert_eq!(matches(&index, "w:"), [1]);
        assert_eq!(matches(&index, "w"), Vec::<u32>::new());
        assert_eq!(matches(&index, "x"), [2]);
        assert_eq!(matches(&index, "xy"), [2]);
        assert_eq!(matches(&index, "abcd"), [3]);
        assert_eq!(matches(&index, "abd"), Vec::<u32>::new());
        assert_eq!(matches(&index, "ab"), Vec::<u32>::new());
        assert_eq!(matches(&index, ""), Vec::<u32>::new());
        index.entry("", true).push(4);
        assert_eq!(matches(&index, ""), [4]);
        assert_eq!(matches(&index, "p:0001"), [4]);
        // A removed prefix's beginning no longer lets names through; the others still do.
        index.update("w:", true, |v| {
            v.clear();
            true
        });
        assert_eq!(matches(&index, "w:trickle"), [4]);
        assert_eq!(matches(&index, "abcd"), [3, 4]);
        assert_eq!(matches(&index, "xy"), [2, 4]);
        // Every name against every prefix of it, over a small alphabet, against a plain scan.
        let mut index: KeyIndex<Vec<u32>> = KeyIndex::default();
        let alphabet = ["", "a", "b", "ab", "ba", "aab", "abb", "bab", "bbbb"];
        for (i, p) in alphabet.iter().enumerate().skip(1) {
            index.entry(p, true).push(i as u32);
        }
        let names = [
            "", "a", "b", "aa", "ab", "ba", "bb", "aab", "abba", "babb", "bbbbb",
        ];
        for name in names {
            let want: Vec<u32> = alphabet
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, p)| name.starts_with(*p))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matches(&index, name), want, "{name:?}");
            assert!(
                index.may_match(name) || want.is_empty(),
                "{name:?} turned away"
            );
        }
        // Every prefix gone: nothing may match, and the beginnings are dropped.
        for p in alphabet.iter().skip(1) {
            index.update(p, true, |_| true);
        }
        assert!(!index.may_match("ab") && index.starts.is_none());
    }
}
