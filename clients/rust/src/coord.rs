//! The coordination state of the sans-I/O session (issue 15): who waits for each request
//! outside the batches (watch, unwatch, listings, handover, compare-and-register,
//! acknowledgements), the watches and their cursors (so a watch resumes after a reconnect
//! from the last event it delivered), and the session id of the current connection. The
//! session's calls on it are in `session_coord.rs`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Who waits for a request outside the batches.
pub(crate) enum RawOwner<W> {
    /// The application: its reply as JSON.
    App(W),
    /// A watch starting (`Some`: for the application; `None`: again after a reconnect).
    Watch(u64, Option<W>),
    /// An acknowledgement: nobody.
    Ack,
    /// A request that changes what this node holds: its reply's `moved` ports (a handover)
    /// are no longer held, its `ports` (a compare-and-register) are unless they `failed`.
    Holding(W, Vec<String>),
}

/// A watch the client keeps: what it watches and how far it got.
#[derive(Clone, Debug)]
pub(crate) struct WatchState {
    pub(crate) fields: Map<String, Value>,
    /// Per switch instance, the last sequence delivered (None before the first reply).
    pub(crate) cursor: Option<Vec<u64>>,
    /// Sequences delivered before the first reply (events may come first).
    pub(crate) early: BTreeMap<u64, u64>,
}

impl WatchState {
    pub(crate) fn advance(&mut self, instance: u64, seq: u64) {
        match self
            .cursor
            .as_mut()
            .and_then(|c| c.get_mut(instance as usize))
        {
            Some(c) => *c = (*c).max(seq),
            None => {
                let e = self.early.entry(instance).or_insert(0);
                *e = (*e).max(seq);
            }
        }
    }

    /// The switch's cursor for the watch, never behind what was delivered.
    pub(crate) fn settle(&mut self, reply: &Value) {
        let Some(cursor) = reply["cursor"].as_array() else {
            return;
        };
        let mut merged: Vec<u64> = cursor.iter().filter_map(Value::as_u64).collect();
        for (&i, &seq) in &self.early {
            if let Some(c) = merged.get_mut(i as usize) {
                *c = (*c).max(seq);
            }
        }
        if let Some(old) = &self.cursor {
            if old.len() == merged.len() {
                for (c, o) in merged.iter_mut().zip(old) {
                    *c = (*c).max(*o);
                }
            }
        }
        self.cursor = Some(merged);
        self.early.clear();
    }
}

/// The coordination state of a session.
pub(crate) struct Coord<W> {
    pub(crate) raw: BTreeMap<u64, RawOwner<W>>,
    pub(crate) queued: Vec<(Map<String, Value>, RawOwner<W>)>,
    pub(crate) watches: BTreeMap<u64, WatchState>,
    pub(crate) next_watch: u64,
    pub(crate) session: Option<u64>,
}

impl<W> Default for Coord<W> {
    fn default() -> Self {
        Coord {
            raw: BTreeMap::new(),
            queued: Vec::new(),
            watches: BTreeMap::new(),
            next_watch: 1,
            session: None,
        }
    }
}
