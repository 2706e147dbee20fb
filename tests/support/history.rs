//! A history checker for the port switch cluster: what clients saw (every RegPort and
//! UnRegPort with its epoch and sequence, every lost connection: expiry, failover), checked
//! for what the cluster promises:
//!
//! 1. **One owner at a time per (port, epoch).** Within an epoch one master orders every
//!    reply by its sequence. A port granted to node A at sequence `a` stays A's until A
//!    releases it, or A's connection ends — and A's connection provably lived until its last
//!    reply's sequence. A grant of the port to another node B at sequence `b` with
//!    `a < b < end` (end = A's release, else A's last reply on that connection) is two owners.
//! 2. **No going back.** The epochs one client sees (replies, in order) never decrease.
//! 3. **Fencing tokens grow in real time.** A grant of a port sent after another grant of it
//!    was received has a higher `(epoch, sequence)`.
//!
//! The checks are sound with respect to what clients can know: they never flag a history the
//! switch may legitimately produce, and the soak shows they are not vacuous
//! (`cluster_soak.rs` feeds them broken histories).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// One reply a client received.
#[derive(Clone, Debug)]
pub struct Reply {
    pub node: String,
    /// The client's connection (a new one after every reconnect).
    pub conn: u64,
    pub epoch: u64,
    pub sequence: u64,
    /// Ports this reply granted (RegPort, not failed).
    pub granted: Vec<String>,
    /// Ports this reply released (UnRegPort).
    pub released: Vec<String>,
    pub sent: Instant,
    pub received: Instant,
}

/// What went wrong, for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

/// Counts of what the history holds.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub replies: usize,
    pub grants: usize,
    pub releases: usize,
    pub epochs: usize,
}

/// Checks a history (every client's replies, each client's in the order it received them).
pub fn check(history: &[Reply]) -> (Tally, Vec<Violation>) {
    let mut violations = Vec::new();
    let mut tally = Tally::default();
    // 2. Per client, epochs never go back.
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for r in history {
        tally.replies += 1;
        tally.grants += r.granted.len();
        tally.releases += r.released.len();
        let last = seen.entry(r.node.as_str()).or_insert(0);
        if r.epoch < *last {
            violations.push(Violation(format!(
                "node {} got a reply in epoch {} after one in epoch {}",
                r.node, r.epoch, last
            )));
        }
        *last = (*last).max(r.epoch);
    }
    // 1. Per epoch and port: ownership intervals in sequence order.
    let mut by_epoch: BTreeMap<u64, Vec<&Reply>> = BTreeMap::new();
    for r in history {
        by_epoch.entry(r.epoch).or_default().push(r);
    }
    tally.epochs = by_epoch.len();
    for (epoch, replies) in &by_epoch {
        // The last sequence each connection was seen alive at.
        let mut alive: HashMap<(&str, u64), u64> = HashMap::new();
        for r in replies {
            let e = alive.entry((r.node.as_str(), r.conn)).or_insert(0);
            *e = (*e).max(r.sequence);
        }
        // Per port: (sequence, node, conn, granted?) events.
        let mut events: HashMap<&str, Vec<(u64, &str, u64, bool)>> = HashMap::new();
        for r in replies {
            for p in &r.granted {
                events
                    .entry(p)
                    .or_default()
                    .push((r.sequence, &r.node, r.conn, true));
            }
            for p in &r.released {
                events
                    .entry(p)
                    .or_default()
                    .push((r.sequence, &r.node, r.conn, false));
            }
        }
        for (port, mut evs) in events {
            evs.sort_unstable();
            // Holders: (node, conn) -> (granted at, proven until).
            let mut holders: Vec<(&str, u64, u64)> = Vec::new();
            for &(seq, node, conn, grant) in &evs {
                if grant {
                    for &(h_node, h_conn, since) in &holders {
                        let until = alive.get(&(h_node, h_conn)).copied().unwrap_or(since);
                        if h_node != node && since < seq && seq < until {
                            violations.push(Violation(format!(
                                "epoch {epoch}: port {port} granted to {node} at sequence {seq} while {h_node} held it (granted at {since}, its connection alive until {until})"
                            )));
                        }
                    }
                    holders.retain(|&(n, c, _)| !(n == node && c == conn));
                    holders.push((node, conn, seq));
                } else {
                    holders.retain(|&(n, c, _)| !(n == node && c == conn));
                }
            }
        }
    }
    // 3. Fencing tokens grow in real time, per port.
    let mut grants: HashMap<&str, Vec<&Reply>> = HashMap::new();
    for r in history {
        for p in &r.granted {
            grants.entry(p).or_default().push(r);
        }
    }
    for (port, gs) in grants {
        for a in &gs {
            for b in &gs {
                if b.sent > a.received && (b.epoch, b.sequence) <= (a.epoch, a.sequence) {
                    violations.push(Violation(format!(
                        "port {port}: token ({}, {}) granted to {} after ({}, {}) granted to {} was received",
                        b.epoch, b.sequence, b.node, a.epoch, a.sequence, a.node
                    )));
                }
            }
        }
    }
    (tally, violations)
}
