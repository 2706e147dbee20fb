//! What the switch nukleus keeps of node-less watchers (watcher.rs runs them): the counts
//! and permits shared by every instance, a watcher connection's state, and a watch call in
//! flight. Apart from watcher.rs so that the nukleus's own types can hold them without
//! naming the file that implements the nukleus's watcher calls.

use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use crate::limits::Limits;
use crate::watch::WatchKind;

/// The node-less watchers open in a process, per token and in all, shared by every switch
/// instance (their limits are the switch's, wherever a connection landed).
#[derive(Debug, Default)]
pub struct WatcherCounts {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// Why a watcher was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatcherRefusal {
    /// The token has as many watchers open as it may.
    #[error("this token has {count} watchers open, the limit is {limit} per token ([switch.limits] max_watchers_per_token): close one first")]
    PerToken {
        /// Open with the token.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The switch has as many watchers as it takes.
    #[error("the switch has {count} watchers open, the limit is {limit} ([switch.limits] max_watchers): try again later")]
    Total {
        /// Open in all.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// One admitted watcher; dropping it (the exchange ends) gives its place back.
#[derive(Debug)]
pub struct WatcherPermit {
    counts: Arc<WatcherCounts>,
    token: String,
}

impl WatcherCounts {
    /// Admits one more watcher with `token` within `limits`.
    pub fn admit(
        self: &Arc<Self>,
        token: &str,
        limits: &Limits,
    ) -> Result<WatcherPermit, WatcherRefusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_token) = &mut *open;
        let mine = by_token.get(token).copied().unwrap_or(0);
        if mine >= limits.max_watchers_per_token {
            return Err(WatcherRefusal::PerToken {
                count: mine,
                limit: limits.max_watchers_per_token,
            });
        }
        if *total >= limits.max_watchers {
            return Err(WatcherRefusal::Total {
                count: *total,
                limit: limits.max_watchers,
            });
        }
        *total += 1;
        *by_token.entry_ref(token).or_insert(0) += 1;
        Ok(WatcherPermit {
            counts: self.clone(),
            token: token.to_string(),
        })
    }

    /// Watchers open in all.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for WatcherPermit {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_token) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = by_token.get_mut(self.token.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_token.remove(self.token.as_str());
            }
        }
    }
}

/// What a receiving connection that is a node-less watcher has beyond a node's.
pub(super) struct WatcherState {
    /// Its place in the counts.
    pub(super) _permit: WatcherPermit,
    /// Its watches: id, kind, key (a reload checks the token still grants each).
    pub(super) watches: Vec<(u64, WatchKind, Box<str>)>,
}

/// A watch or unwatch of a watcher in flight: where it goes and what it watches.
pub(super) struct WatcherPending {
    pub(super) input: usize,
    pub(super) slot: usize,
    pub(super) id: u64,
    /// A watch's kind and key (`None`: an unwatch).
    pub(super) watched: Option<(WatchKind, Box<str>)>,
    /// The WebSocket request id (`None`: the watch of the query, answered by a push).
    pub(super) ws_id: Option<u64>,
}

/// Whether `path` is a watcher's: `/v1/watch` (SSE) or `/v1/ws/` (WebSocket, no node).
pub fn is_watcher_path(path: &str, ws: bool) -> bool {
    let path = path.trim_end_matches('/');
    if ws {
        path == "/v1/ws"
    } else {
        path == "/v1/watch"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_are_limited_per_token_and_in_all_and_a_closed_one_frees_its_place() {
        let limits = Limits {
            max_watchers: 3,
            max_watchers_per_token: 2,
            ..Limits::default()
        };
        let counts = Arc::new(WatcherCounts::default());
        let a1 = counts.admit("a", &limits).unwrap();
        let _a2 = counts.admit("a", &limits).unwrap();
        assert_eq!(
            counts.admit("a", &limits).unwrap_err(),
            WatcherRefusal::PerToken { count: 2, limit: 2 }
        );
        let _b1 = counts.admit("b", &limits).unwrap();
        let full = counts.admit("b", &limits).unwrap_err();
        assert_eq!(full, WatcherRefusal::Total { count: 3, limit: 3 });
        assert!(full.to_string().contains("max_watchers"), "{full}");
        drop(a1);
        assert_eq!(counts.open(), 2);
        let _b2 = counts.admit("b", &limits).unwrap();
        let _ = counts.admit("a", &limits).unwrap_err();
    }
}
