//! The watches of the nodes homed at one instance: which watch wants which events, and how
//! far each has got from every instance (so an event reaches a watch once, in order, and
//! not before the watch's replay from the journal).

use hashbrown::HashMap;

use super::{Event, KeyIndex, WatchKind};
use crate::ports::NodeIdx;
use crate::switch::types::WatchError;

/// A watch as the mesh names it: its node (index at its home, session) and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchRef {
    /// The watching node's index at its home.
    pub node: NodeIdx,
    /// The node's session (global).
    pub session: u64,
    /// The watch's id in that session.
    pub id: u64,
}

/// A position not reached yet: the watch's replay from that instance has not arrived.
const PENDING: u64 = u64::MAX;

#[derive(Debug)]
struct Watch {
    node: NodeIdx,
    id: u64,
    kind: WatchKind,
    key: Box<str>,
    prefix: bool,
    /// Per instance: the last sequence delivered, or [`PENDING`].
    positions: Vec<u64>,
}

/// What a removed watch was watching (to tell the origins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Ports or nodes.
    pub kind: WatchKind,
    /// The key.
    pub key: Box<str>,
    /// Whether the key is a prefix.
    pub prefix: bool,
}

impl Watched {
    /// Whether a watch of this wants `event`.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        self.kind == event.what.kind()
            && if self.prefix {
                event.key.starts_with(&*self.key)
            } else {
                event.key == &*self.key
            }
    }
}

/// The watches of one home.
#[derive(Debug)]
pub struct Watchers {
    instances: usize,
    slots: Vec<Option<Watch>>,
    free: Vec<u32>,
    index: [KeyIndex<Vec<u32>>; 2],
    by_node: HashMap<NodeIdx, Vec<u32>>,
}

impl Watchers {
    /// No watches, for a switch of `instances` instances.
    pub fn new(instances: usize) -> Watchers {
        Watchers {
            instances: instances.max(1),
            slots: Vec::new(),
            free: Vec::new(),
            index: [KeyIndex::default(), KeyIndex::default()],
            by_node: HashMap::new(),
        }
    }

    /// Whether there is no watch.
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether nobody watches events of `kind`.
    pub fn is_empty_for(&self, kind: WatchKind) -> bool {
        self.index[kind.code() as usize].is_empty()
    }

    /// Whether a watch may want an event of `kind` on `key` (`false`: none does; see
    /// [`KeyIndex::may_match`]).
    #[inline]
    pub fn may_want(&self, kind: WatchKind, key: &str) -> bool {
        self.index[kind.code() as usize].may_match(key)
    }

    /// Adds watch `id` of `node` on `key`, waiting for its replay from every instance;
    /// returns its slot.
    pub fn add(
        &mut self,
        node: NodeIdx,
        id: u64,
        watched: Watched,
        limit: usize,
    ) -> Result<u32, WatchError> {
        let mine = self.by_node.get(&node).map_or(&[][..], Vec::as_slice);
        if mine
            .iter()
            .any(|&s| self.slots[s as usize].as_ref().is_some_and(|w| w.id == id))
        {
            return Err(WatchError::Exists(id));
        }
        if mine.len() >= limit {
            return Err(WatchError::TooMany {
                count: mine.len(),
                limit,
            });
        }
        let watch = Watch {
            node,
            id,
            kind: watched.kind,
            key: watched.key,
            prefix: watched.prefix,
            positions: vec![PENDING; self.instances],
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(watch);
                s
            }
            None => {
                self.slots.push(Some(watch));
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(w) = &self.slots[slot as usize] {
            self.index[w.kind.code() as usize]
                .entry(&w.key, w.prefix)
                .push(slot);
        }
        self.by_node.entry(node).or_default().push(slot);
        Ok(slot)
    }

    /// An id no watch of `node` has (one more than its highest).
    pub fn next_id(&self, node: NodeIdx) -> u64 {
        self.by_node
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|&s| self.slots[s as usize].as_ref().map(|w| w.id))
            .max()
            .map_or(1, |m| m.saturating_add(1))
    }

    /// The slot of watch `id` of `node`.
    pub fn find(&self, node: NodeIdx, id: u64) -> Option<u32> {
        self.by_node
            .get(&node)?
            .iter()
            .copied()
            .find(|&s| self.slots[s as usize].as_ref().is_some_and(|w| w.id == id))
    }

    /// The node and id of the watch in `slot`.
    pub fn owner(&self, slot: u32) -> Option<(NodeIdx, u64)> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|w| (w.node, w.id))
    }

    /// The watch in `slot` has everything from `instance` up to `seq`.
    pub fn set_position(&mut self, slot: u32, instance: usize, seq: u64) {
        if let Some(Some(w)) = self.slots.get_mut(slot as usize) {
            if let Some(p) = w.positions.get_mut(instance) {
                *p = seq;
            }
        }
    }

    /// The positions of the watch in `slot` (its cursor), once every instance answered.
    pub fn cursor(&self, slot: u32) -> Option<Vec<u64>> {
        let w = self.slots.get(slot as usize)?.as_ref()?;
        (!w.positions.contains(&PENDING)).then(|| w.positions.clone())
    }

    /// Removes watch `id` of `node`; what it watched.
    pub fn remove(&mut self, node: NodeIdx, id: u64) -> Option<Watched> {
        let slot = self.find(node, id)?;
        self.remove_slot(slot)
    }

    /// Removes every watch of `node` (its session ended); what they watched.
    pub fn remove_node(&mut self, node: NodeIdx) -> Vec<Watched> {
        let slots = self.by_node.get(&node).cloned().unwrap_or_default();
        slots
            .into_iter()
            .filter_map(|s| self.remove_slot(s))
            .collect()
    }

    fn remove_slot(&mut self, slot: u32) -> Option<Watched> {
        let w = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.index[w.kind.code() as usize].update(&w.key, w.prefix, |slots| {
            if let Some(i) = slots.iter().position(|&s| s == slot) {
                slots.swap_remove(i);
            }
            slots.is_empty()
        });
        if let Some(mine) = self.by_node.get_mut(&w.node) {
            mine.retain(|&s| s != slot);
            if mine.is_empty() {
                self.by_node.remove(&w.node);
            }
        }
        Some(Watched {
            kind: w.kind,
            key: w.key,
            prefix: w.prefix,
        })
    }

    /// Event `seq` of `instance`: `push(node, watch id)` for every watch it matches that has
    /// not had it (and is past its replay from that instance).
    pub fn deliver(
        &mut self,
        instance: usize,
        seq: u64,
        event: &Event<'_>,
        mut push: impl FnMut(NodeIdx, u64),
    ) {
        let kind = event.what.kind();
        let slots = &mut self.slots;
        self.index[kind.code() as usize].for_each_match(event.key, |matching| {
            for &s in matching {
                let Some(w) = slots[s as usize].as_mut() else {
                    continue;
                };
                let Some(p) = w.positions.get_mut(instance) else {
                    continue;
                };
                if *p == PENDING || seq <= *p {
                    continue;
                }
                *p = seq;
                push(w.node, w.id);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::What;

    fn ports(key: &str, prefix: bool) -> Watched {
        Watched {
            kind: WatchKind::Ports,
            key: key.into(),
            prefix,
        }
    }

    #[test]
    fn an_event_reaches_each_matching_watch_once_after_its_replay() {
        let mut w = Watchers::new(2);
        let a = w.add(7, 1, ports("user:", true), 10).unwrap();
        let b = w.add(8, 1, ports("user:1", false), 10).unwrap();
        assert_eq!(
            w.add(7, 1, ports("x", true), 10),
            Err(WatchError::Exists(1))
        );
        let e = Event::acquired("user:1", "n", "");
        let mut got = Vec::new();
        w.deliver(0, 5, &e, |n, id| got.push((n, id)));
        assert!(got.is_empty(), "before the replay from instance 0: {got:?}");
        w.set_position(a, 0, 5);
        w.set_position(b, 0, 3);
        w.deliver(0, 5, &e, |n, id| got.push((n, id)));
        assert_eq!(got, [(8, 1)], "a already had 5");
        w.deliver(0, 6, &e, |n, id| got.push((n, id)));
        w.deliver(0, 6, &e, |n, id| got.push((n, id)));
        assert_eq!(got, [(8, 1), (8, 1), (7, 1)]);
        assert_eq!(w.cursor(a), None, "instance 1 has not answered");
        w.set_position(a, 1, 0);
        assert_eq!(w.cursor(a), Some(vec![6, 0]));
        let node_event = Event::node(What::Online, "user:1", "");
        w.deliver(0, 9, &node_event, |n, id| got.push((n, id)));
        assert_eq!(got.len(), 3, "a node event does not reach port watches");
        assert_eq!(w.remove_node(7), vec![ports("user:", true)]);
        assert_eq!(w.remove(8, 1), Some(ports("user:1", false)));
        assert!(w.is_empty() && w.is_empty_for(WatchKind::Ports));
    }

    #[test]
    fn watches_per_node_are_limited() {
        let mut w = Watchers::new(1);
        w.add(1, 1, ports("a", true), 2).unwrap();
        w.add(1, 2, ports("b", true), 2).unwrap();
        assert_eq!(
            w.add(1, 3, ports("c", true), 2),
            Err(WatchError::TooMany { count: 2, limit: 2 })
        );
        w.add(2, 3, ports("c", true), 2).unwrap();
        assert_eq!(w.len(), 3);
    }
}
