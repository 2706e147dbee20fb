//! The shard's ports in name order, for listings by prefix: a B+tree of entry indices whose
//! leaves compare names where they lie (in the shard's arena), so a port costs 4 bytes in a
//! leaf and nothing else; internal nodes keep copies of their separators, one per leaf.
//!
//! * A page is a descent (`O(log n)`) and a walk along the leaves: its cost does not grow with
//!   the number of ports beyond the descent.
//! * A leaf that overflows at its end (ascending names, the usual batch) keeps its entries and
//!   starts a new leaf with the new one, so ascending inserts fill leaves completely; elsewhere
//!   it splits in halves. A leaf that falls below a quarter is merged with a neighbour under
//!   the same parent when both fit in one, so memory follows the number of ports after
//!   releases.
//! * The last leaf inserted into is remembered with the bounds its parents give it: a name
//!   between them (the next name of an ascending batch) goes there without a descent.

/// Entries per leaf and children per internal node.
const CAP: usize = 64;
const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Leaf {
    len: u16,
    ids: [u32; CAP],
    next: u32,
    prev: u32,
}

impl Leaf {
    fn empty() -> Leaf {
        Leaf {
            len: 0,
            ids: [0; CAP],
            next: NIL,
            prev: NIL,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Internal {
    /// Children: leaves at the lowest internal level, internal nodes above.
    children: Vec<u32>,
    /// Separators: separator `i` is the first name under `children[i + 1]`, stored one after
    /// the other in `bytes` (ending at `ends[i]`), so a search reads one buffer.
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Internal {
    fn sep(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    fn seps(&self) -> usize {
        self.ends.len()
    }

    fn all_seps(&self) -> Vec<Vec<u8>> {
        (0..self.seps()).map(|k| self.sep(k).to_vec()).collect()
    }

    /// The child a name belongs under: after every separator not greater than it.
    fn child_for(&self, name: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.seps());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.sep(mid) <= name {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn set_seps(&mut self, seps: &[Vec<u8>]) {
        self.bytes.clear();
        self.ends.clear();
        for s in seps {
            self.bytes.extend_from_slice(s);
            self.ends.push(self.bytes.len() as u32);
        }
    }

    /// Inserts separator `sep` at `i` with `child` to its right.
    fn insert_sep(&mut self, i: usize, sep: &[u8], child: u32) {
        let mut seps = self.all_seps();
        seps.insert(i, sep.to_vec());
        self.set_seps(&seps);
        self.children.insert(i + 1, child);
    }

    /// Removes child `pos` and the separator that bounded it.
    fn remove_child(&mut self, pos: usize) {
        let mut seps = self.all_seps();
        if !seps.is_empty() {
            // Child 0 has no separator of its own: its right neighbour's goes instead.
            seps.remove(pos.saturating_sub(1));
        }
        self.set_seps(&seps);
        self.children.remove(pos);
    }

    /// Splits off the children from `at` on; returns the separator that goes up and the new
    /// right node.
    fn split_off(&mut self, at: usize) -> (Vec<u8>, Internal) {
        let seps = self.all_seps();
        let up = seps[at - 1].clone();
        let mut right = Internal {
            children: self.children.split_off(at),
            ..Internal::default()
        };
        right.set_seps(&seps[at..]);
        self.set_seps(&seps[..at - 1]);
        (up, right)
    }
}

/// Where the last insert went: the leaf, its path, and the names its parents bound it by.
#[derive(Clone, Debug, Default)]
struct Finger {
    leaf: Option<u32>,
    path: Vec<(u32, usize)>,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
}

/// Entry indices of one shard in name order.
#[derive(Clone, Debug)]
pub(crate) struct Ordered {
    leaves: Vec<Leaf>,
    internals: Vec<Internal>,
    free_leaves: Vec<u32>,
    free_internals: Vec<u32>,
    /// The root: a leaf when `height` is 0, else an internal node.
    root: u32,
    height: usize,
    len: usize,
    finger: Finger,
}

impl Default for Ordered {
    fn default() -> Self {
        Ordered {
            leaves: vec![Leaf::empty()],
            internals: Vec::new(),
            free_leaves: Vec::new(),
            free_internals: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
            finger: Finger::default(),
        }
    }
}

impl Ordered {
    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes (capacity) of the index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.internals.capacity() * std::mem::size_of::<Internal>()
            + self
                .internals
                .iter()
                .map(|i| i.children.capacity() * 4 + i.ends.capacity() * 4 + i.bytes.capacity())
                .sum::<usize>()
    }

    /// Drops everything (the shard emptied).
    pub(crate) fn clear(&mut self) {
        *self = Ordered::default();
    }

    /// The path from the root to the leaf where `name` belongs.
    fn descend(&self, name: &[u8]) -> (Vec<(u32, usize)>, u32) {
        let mut path = Vec::with_capacity(self.height);
        let mut node = self.root;
        for _ in 0..self.height {
            let internal = &self.internals[node as usize];
            let child = internal.child_for(name);
            path.push((node, child));
            node = internal.children[child];
        }
        (path, node)
    }

    /// The bounds the parents put on the leaf at the end of `path`.
    fn bounds(&self, path: &[(u32, usize)]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let (mut low, mut high) = (None, None);
        for &(node, child) in path.iter().rev() {
            let internal = &self.internals[node as usize];
            if low.is_none() && child > 0 {
                low = Some(internal.sep(child - 1).to_vec());
            }
            if high.is_none() && child < internal.seps() {
                high = Some(internal.sep(child).to_vec());
            }
            if low.is_some() && high.is_some() {
                break;
            }
        }
        (low, high)
    }

    /// Inserts entry `id` named `name` (not present).
    pub(crate) fn insert<'n>(&mut self, id: u32, name: &[u8], name_of: impl Fn(u32) -> &'n [u8]) {
        let hit = self.finger.leaf.filter(|_| {
            self.finger.low.as_deref().is_none_or(|l| l <= name)
                && self.finger.high.as_deref().is_none_or(|h| name < h)
        });
        let (path, leaf) = match hit {
            Some(leaf) => (std::mem::take(&mut self.finger.path), leaf),
            None => self.descend(name),
        };
        let l = &mut self.leaves[leaf as usize];
        let n = l.len as usize;
        let pos = if n > 0 && name_of(l.ids[n - 1]) < name {
            n
        } else {
            l.ids[..n].partition_point(|&x| name_of(x) < name)
        };
        self.len += 1;
        if n < CAP {
            l.ids.copy_within(pos..n, pos + 1);
            l.ids[pos] = id;
            l.len += 1;
            self.remember(leaf, path);
            return;
        }
        // Full: split. At the end, the new leaf starts with the new entry alone.
        let at = if pos == CAP { CAP } else { CAP / 2 };
        let new_leaf = self.alloc_leaf();
        let old_next = self.leaves[leaf as usize].next;
        let mut right = Leaf::empty();
        {
            let left = &mut self.leaves[leaf as usize];
            let moved = CAP - at;
            right.ids[..moved].copy_from_slice(&left.ids[at..CAP]);
            right.len = moved as u16;
            left.len = at as u16;
            right.next = old_next;
            right.prev = leaf;
            left.next = new_leaf;
            let (target, p) = if pos < at || (pos == at && at < CAP) {
                (left, pos)
            } else {
                (&mut right, pos - at)
            };
            let n = target.len as usize;
            target.ids.copy_within(p..n, p + 1);
            target.ids[p] = id;
            target.len += 1;
        }
        self.leaves[new_leaf as usize] = right;
        if old_next != NIL {
            self.leaves[old_next as usize].prev = new_leaf;
        }
        let sep = name_of(self.leaves[new_leaf as usize].ids[0]).to_vec();
        self.insert_up(path, sep, new_leaf);
        self.finger = Finger::default();
    }

    fn remember(&mut self, leaf: u32, path: Vec<(u32, usize)>) {
        if self.finger.leaf != Some(leaf) {
            let (low, high) = self.bounds(&path);
            self.finger.low = low;
            self.finger.high = high;
        }
        self.finger.leaf = Some(leaf);
        self.finger.path = path;
    }

    /// Puts `sep` and its `right` child into the parent at the end of `path`, splitting up.
    fn insert_up(&mut self, mut path: Vec<(u32, usize)>, mut sep: Vec<u8>, mut right: u32) {
        while let Some((node, child)) = path.pop() {
            let internal = &mut self.internals[node as usize];
            internal.insert_sep(child, &sep, right);
            if internal.children.len() <= CAP {
                return;
            }
            let (up, new_internal) = internal.split_off(CAP / 2 + 1);
            sep = up;
            right = self.alloc_internal(new_internal);
        }
        // The root split: a new root above it.
        let mut root = Internal {
            children: vec![self.root, right],
            ..Internal::default()
        };
        root.set_seps(&[sep]);
        self.root = self.alloc_internal(root);
        self.height += 1;
    }

    /// Removes entry `id` named `name`; whether it was there.
    pub(crate) fn remove<'n>(
        &mut self,
        id: u32,
        name: &[u8],
        name_of: impl Fn(u32) -> &'n [u8],
    ) -> bool {
        let (path, leaf) = self.descend(name);
        let l = &mut self.leaves[leaf as usize];
        let n = l.len as usize;
        let pos = l.ids[..n].partition_point(|&x| name_of(x) < name);
        if pos >= n || l.ids[pos] != id {
            return false;
        }
        l.ids.copy_within(pos + 1..n, pos);
        l.len -= 1;
        self.len -= 1;
        self.finger = Finger::default();
        if (l.len as usize) < CAP / 4 {
            self.rebalance(path, leaf);
        }
        true
    }

    /// A leaf fell below a quarter: merge it with a neighbour under the same parent when
    /// both fit in one leaf, or drop it when it is empty.
    fn rebalance(&mut self, mut path: Vec<(u32, usize)>, leaf: u32) {
        let Some(&(parent, child)) = path.last() else {
            return; // the root leaf may be as small as it likes
        };
        let siblings = self.internals[parent as usize].children.len();
        let (left_pos, right_pos) = if child + 1 < siblings {
            (child, child + 1)
        } else if child > 0 {
            (child - 1, child)
        } else {
            // An only child: it goes when empty, and its parent with it.
            if self.leaves[leaf as usize].len == 0 {
                self.unlink_leaf(leaf);
                self.remove_up(&mut path, child);
            }
            return;
        };
        let left = self.internals[parent as usize].children[left_pos];
        let right = self.internals[parent as usize].children[right_pos];
        let (ln, rn) = (
            self.leaves[left as usize].len as usize,
            self.leaves[right as usize].len as usize,
        );
        let gone = if ln + rn <= CAP {
            // The right one moves into the left one.
            let moved = self.leaves[right as usize].ids;
            let l = &mut self.leaves[left as usize];
            l.ids[ln..ln + rn].copy_from_slice(&moved[..rn]);
            l.len = (ln + rn) as u16;
            self.unlink_leaf(right);
            right_pos
        } else if self.leaves[leaf as usize].len == 0 {
            self.unlink_leaf(leaf);
            child
        } else {
            return;
        };
        self.remove_up(&mut path, gone);
    }

    fn unlink_leaf(&mut self, leaf: u32) {
        let (prev, next) = {
            let l = &self.leaves[leaf as usize];
            (l.prev, l.next)
        };
        if prev != NIL {
            self.leaves[prev as usize].next = next;
        }
        if next != NIL {
            self.leaves[next as usize].prev = prev;
        }
        self.leaves[leaf as usize] = Leaf::empty();
        self.free_leaves.push(leaf);
    }

    /// Child `gone` of the last node of `path` was freed: remove it there; a root left with
    /// one child gives way to it, an internal node left with none goes too.
    fn remove_up(&mut self, path: &mut Vec<(u32, usize)>, gone: usize) {
        let Some((parent, _)) = path.pop() else {
            return;
        };
        self.internals[parent as usize].remove_child(gone);
        let left = self.internals[parent as usize].children.len();
        if path.is_empty() && left == 0 {
            // The last entry went: start again from one empty leaf.
            self.clear();
        } else if path.is_empty() && left == 1 {
            // A root with one child gives way to it (and so on down).
            while self.height > 0 && self.internals[self.root as usize].children.len() == 1 {
                let root = self.root;
                self.root = self.internals[root as usize].children[0];
                self.free_internal(root);
                self.height -= 1;
            }
        } else if left == 0 {
            self.free_internal(parent);
            if let Some(&(_, pos)) = path.last() {
                self.remove_up(path, pos);
            }
        }
    }

    fn free_internal(&mut self, node: u32) {
        self.internals[node as usize] = Internal::default();
        self.free_internals.push(node);
    }

    fn alloc_leaf(&mut self) -> u32 {
        match self.free_leaves.pop() {
            Some(l) => l,
            None => {
                self.leaves.push(Leaf::empty());
                (self.leaves.len() - 1) as u32
            }
        }
    }

    fn alloc_internal(&mut self, node: Internal) -> u32 {
        match self.free_internals.pop() {
            Some(i) => {
                self.internals[i as usize] = node;
                i
            }
            None => {
                self.internals.push(node);
                (self.internals.len() - 1) as u32
            }
        }
    }

    /// Up to `limit` entries whose names start with `prefix`, in name order, from the first
    /// name after `after` (or the first with the prefix).
    pub(crate) fn range<'n>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        name_of: impl Fn(u32) -> &'n [u8],
    ) -> Vec<u32> {
        let after = after.filter(|a| *a >= prefix);
        let (_, mut leaf) = self.descend(after.unwrap_or(prefix));
        let l = &self.leaves[leaf as usize];
        let ids = &l.ids[..l.len as usize];
        let mut pos = match after {
            Some(a) => ids.partition_point(|&x| name_of(x) <= a),
            None => ids.partition_point(|&x| name_of(x) < prefix),
        };
        let mut out = Vec::new();
        while out.len() < limit && leaf != NIL {
            let l = &self.leaves[leaf as usize];
            if pos >= l.len as usize {
                leaf = l.next;
                pos = 0;
                continue;
            }
            let id = l.ids[pos];
            if !name_of(id).starts_with(prefix) {
                break;
            }
            out.push(id);
            pos += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Names by id, as the shard's arena would give them.
    struct Names(Vec<String>);

    impl Names {
        fn of<'a>(&'a self) -> impl Fn(u32) -> &'a [u8] + 'a {
            move |id: u32| self.0[id as usize].as_bytes()
        }
    }

    fn check(o: &Ordered, names: &Names, model: &BTreeSet<(String, u32)>) {
        let all = o.range(b"", None, usize::MAX, names.of());
        let want: Vec<u32> = model.iter().map(|(_, id)| *id).collect();
        assert_eq!(all, want);
        assert_eq!(o.len(), model.len());
    }

    #[test]
    fn random_inserts_and_removals_keep_name_order() {
        let mut rng = 0x9e37_79b9_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let names = Names(
            (0..20_000)
                .map(|i| format!("k{:06}", (i * 7919) % 20_000))
                .collect(),
        );
        let mut o = Ordered::default();
        let mut model = BTreeSet::new();
        let mut present = vec![false; names.0.len()];
        for round in 0..80_000 {
            let id = (next() % names.0.len() as u64) as u32;
            let name = names.0[id as usize].clone();
            if present[id as usize] {
                assert!(o.remove(id, name.as_bytes(), names.of()));
                model.remove(&(name, id));
            } else {
                o.insert(id, name.as_bytes(), names.of());
                model.insert((name, id));
            }
            present[id as usize] ^= true;
            if round % 5_000 == 0 {
                check(&o, &names, &model);
            }
        }
        check(&o, &names, &model);
        assert!(!o.remove(u32::MAX - 1, b"nope", |_| b"zz"));
        // Remove everything: the tree shrinks back to one leaf.
        for (name, id) in model.clone() {
            assert!(o.remove(id, name.as_bytes(), names.of()));
        }
        assert_eq!(o.len(), 0);
        assert_eq!(o.height, 0);
        assert_eq!(o.range(b"", None, 9, names.of()), Vec::<u32>::new());
    }

    #[test]
    fn ascending_inserts_fill_leaves() {
        let names = Names((0..100_000).map(|i| format!("p:{i:014x}")).collect());
        let mut o = Ordered::default();
        for (i, n) in names.0.iter().enumerate() {
            o.insert(i as u32, n.as_bytes(), names.of());
        }
        let used = o.leaves.len() - o.free_leaves.len();
        assert!(
            used <= 100_000 / CAP + 2,
            "{used} leaves for 100k ascending names"
        );
        assert_eq!(o.range(b"", None, 3, names.of()), [0, 1, 2]);
        let mut model = BTreeSet::new();
        for (i, n) in names.0.iter().enumerate() {
            model.insert((n.clone(), i as u32));
        }
        check(&o, &names, &model);
    }

    #[test]
    fn pages_by_prefix_and_cursor() {
        let names = Names(
            ["a", "b1", "b2", "b3", "b30", "c"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let mut o = Ordered::default();
        for (i, n) in names.0.iter().enumerate().rev() {
            o.insert(i as u32, n.as_bytes(), names.of());
        }
        let page = |prefix: &[u8], after: Option<&[u8]>, limit| -> Vec<&str> {
            o.range(prefix, after, limit, names.of())
                .into_iter()
                .map(|i| names.0[i as usize].as_str())
                .collect()
        };
        assert_eq!(page(b"b", None, 2), ["b1", "b2"]);
        assert_eq!(page(b"b", Some(b"b2"), 2), ["b3", "b30"]);
        assert_eq!(page(b"b", Some(b"b30"), 2), Vec::<&str>::new());
        assert_eq!(page(b"b3", None, 9), ["b3", "b30"]);
        assert_eq!(page(b"", Some(b"b"), 2), ["b1", "b2"]);
        // A cursor before the prefix starts at the prefix; a removed cursor still works.
        assert_eq!(page(b"c", Some(b"a"), 9), ["c"]);
        assert_eq!(page(b"b", Some(b"b25"), 9), ["b3", "b30"]);
        assert_eq!(page(b"z", None, 9), Vec::<&str>::new());
    }
}
