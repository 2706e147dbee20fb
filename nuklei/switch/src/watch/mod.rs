//! Watches: what happens to ports and nodes, told to the nodes that asked, with sequence
//! numbers and resumption.
//!
//! # Events and their sequence numbers
//!
//! Every change of ownership of a port (acquired, released, moved) and every change of a
//! node's receiving connection (online, offline, replaced) is an [`Event`]. Events are
//! numbered where they happen — a port's events at its shard, a node's at its home — by that
//! switch instance's one sequence ([`Journal`]): with one instance that is one sequence for
//! the whole switch; with several, each instance numbers its own, and a position in the
//! event history is a *cursor*, one sequence number per instance. A port lives on one
//! instance, so its events are numbered in the order they happened. Sequence numbers start
//! from the instance's incarnation (its start time in microseconds), so a cursor from before
//! a restart is recognised as older than anything this incarnation holds.
//!
//! Each instance keeps the last events in a bounded journal (`watch_history`). A watch
//! started `from` a cursor gets every event after it that the journal still holds; what it
//! no longer holds is reported as one `missed` push per instance naming the exact range.
//!
//! # Who gets what
//!
//! A watch belongs to a node's session and delivers on its receiving connection: ports or
//! nodes, by exact name or by prefix ([`keys::KeyIndex`] matches a name against exact keys and
//! every distinct prefix length, so the cost of an event does not grow with the number of
//! watches, only with the distinct prefix lengths). An origin forwards an event once per
//! interested home ([`Interest`]), and the home fans it out to its watches
//! ([`watchers::Watchers`]), skipping what a watch already has (each watch keeps, per
//! instance, the last sequence it delivered).

use crate::nodes::ReleaseReason;

pub mod journal;
pub mod keys;
pub mod single;
pub mod watchers;

pub use journal::{Journal, Replay};
pub use keys::KeyIndex;
pub use single::WatchRequest;
pub use watchers::{WatchRef, Watched, Watchers};

/// What a watch follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// Ports: acquired, released, moved.
    Ports,
    /// Nodes: online, offline, replaced.
    Nodes,
}

impl WatchKind {
    /// The wire name: `ports` or `nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Ports => "ports",
            WatchKind::Nodes => "nodes",
        }
    }

    /// The kind of wire name `name`.
    pub fn from_name(name: &str) -> Option<WatchKind> {
        match name {
            "ports" => Some(WatchKind::Ports),
            "nodes" => Some(WatchKind::Nodes),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            WatchKind::Ports => 0,
            WatchKind::Nodes => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<WatchKind> {
        match code {
            0 => Some(WatchKind::Ports),
            1 => Some(WatchKind::Nodes),
            _ => None,
        }
    }
}

/// Why a node went offline, as node watches are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfflineReason {
    /// Its receiving connection closed.
    Closed,
    /// It did not relet in time.
    LeaseExpired,
    /// Its push queue outgrew its limit.
    SlowConsumer,
    /// The token its receiving connection was opened with was removed or no longer grants
    /// the node.
    TokenRevoked,
}

impl OfflineReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OfflineReason::Closed => "closed",
            OfflineReason::LeaseExpired => "lease_expired",
            OfflineReason::SlowConsumer => "slow_consumer",
            OfflineReason::TokenRevoked => "token_revoked",
        }
    }

    const ALL: [OfflineReason; 4] = [
        OfflineReason::Closed,
        OfflineReason::LeaseExpired,
        OfflineReason::SlowConsumer,
        OfflineReason::TokenRevoked,
    ];
}

const RELEASE_REASONS: [ReleaseReason; 3] = [
    ReleaseReason::Unregistered,
    ReleaseReason::NodeOffline,
    ReleaseReason::Replaced,
];

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// A port got an owner.
    Acquired,
    /// A port lost its owner.
    Released(ReleaseReason),
    /// A port went from one owner to another without being free in between (handover,
    /// compare-and-register).
    Moved,
    /// A node opened its receiving connection.
    Online,
    /// A node's receiving connection ended.
    Offline(OfflineReason),
    /// A node opened a new receiving connection in place of its old one (whose ports were
    /// released).
    Replaced,
}

impl What {
    /// Ports or nodes.
    pub fn kind(self) -> WatchKind {
        match self {
            What::Acquired | What::Released(_) | What::Moved => WatchKind::Ports,
            What::Online | What::Offline(_) | What::Replaced => WatchKind::Nodes,
        }
    }

    /// The wire name of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            What::Acquired => "acquired",
            What::Released(_) => "released",
            What::Moved => "moved",
            What::Online => "online",
            What::Offline(_) => "offline",
            What::Replaced => "replaced",
        }
    }

    /// `(event, reason)` codes for the journal and the mesh.
    pub(crate) fn codes(self) -> (u8, u8) {
        let index = |all: &[_], r| all.iter().position(|x| *x == r).unwrap_or(0) as u8;
        match self {
            What::Acquired => (0, 0),
            What::Released(r) => (1, index(&RELEASE_REASONS, r)),
            What::Moved => (2, 0),
            What::Online => (3, 0),
            What::Offline(r) => (4, {
                OfflineReason::ALL.iter().position(|x| *x == r).unwrap_or(0) as u8
            }),
            What::Replaced => (5, 0),
        }
    }

    /// The event of [`What::codes`].
    pub(crate) fn from_codes(what: u8, reason: u8) -> Option<What> {
        Some(match what {
            0 => What::Acquired,
            1 => What::Released(*RELEASE_REASONS.get(reason as usize)?),
            2 => What::Moved,
            3 => What::Online,
            4 => What::Offline(*OfflineReason::ALL.get(reason as usize)?),
            5 => What::Replaced,
            _ => return None,
        })
    }
}

/// One event, borrowed from where it happened (or from the journal or a mesh record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// What happened.
    pub what: What,
    /// The port (port events) or the node (node events).
    pub key: &'a str,
    /// Port events: the owner (the new one for `moved`, the last one for `released`).
    pub owner: &'a str,
    /// The owner's address (`acquired`, `moved`) or the node's (`online`, `replaced`); `""`
    /// if none was announced.
    pub address: &'a str,
    /// `moved`: the previous owner.
    pub from: &'a str,
}

impl<'a> Event<'a> {
    /// A port got `owner` (announcing `address`).
    pub fn acquired(port: &'a str, owner: &'a str, address: &'a str) -> Event<'a> {
        Event {
            what: What::Acquired,
            key: port,
            owner,
            address,
            from: "",
        }
    }

    /// A port of `owner` was released.
    pub fn released(port: &'a str, owner: &'a str, reason: ReleaseReason) -> Event<'a> {
        Event {
            what: What::Released(reason),
            key: port,
            owner,
            address: "",
            from: "",
        }
    }

    /// A port went from `from` to `owner`.
    pub fn moved(port: &'a str, owner: &'a str, address: &'a str, from: &'a str) -> Event<'a> {
        Event {
            what: What::Moved,
            key: port,
            owner,
            address,
            from,
        }
    }

    /// A node event.
    pub fn node(what: What, node: &'a str, address: &'a str) -> Event<'a> {
        Event {
            what,
            key: node,
            owner: "",
            address,
            from: "",
        }
    }

    /// Appends the push of this event for watch `watch`, numbered `seq` at `instance`:
    /// `{"type":"watch","watch":1,"instance":0,"seq":17,"event":"acquired","port":"p",
    /// "owner":"a","address":"10.0.0.1:7000"}` (the fields of the event's kind).
    pub fn encode(&self, watch: u64, instance: usize, seq: u64, out: &mut Vec<u8>) {
        use crate::json::write_string;
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(br#"{"type":"watch","watch":"#);
        out.extend_from_slice(n.format(watch).as_bytes());
        out.extend_from_slice(br#","instance":"#);
        out.extend_from_slice(n.format(instance).as_bytes());
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(n.format(seq).as_bytes());
        out.extend_from_slice(br#","event":""#);
        out.extend_from_slice(self.what.as_str().as_bytes());
        let address = |out: &mut Vec<u8>, a: &str| {
            out.extend_from_slice(br#","address":"#);
            if a.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                write_string(out, a);
            }
        };
        match self.what {
            What::Acquired | What::Released(_) | What::Moved => {
                out.extend_from_slice(br#"","port":"#);
                write_string(out, self.key);
                out.extend_from_slice(br#","owner":"#);
                write_string(out, self.owner);
                match self.what {
                    What::Released(reason) => {
                        out.extend_from_slice(br#","reason":""#);
                        out.extend_from_slice(reason.as_str().as_bytes());
                        out.push(b'"');
                    }
                    What::Moved => {
                        address(out, self.address);
                        out.extend_from_slice(br#","from":"#);
                        write_string(out, self.from);
                    }
                    _ => address(out, self.address),
                }
            }
            What::Online | What::Offline(_) | What::Replaced => {
                out.extend_from_slice(br#"","node":"#);
                write_string(out, self.key);
                match self.what {
                    What::Offline(reason) => {
                        out.extend_from_slice(br#","reason":""#);
                        out.extend_from_slice(reason.as_str().as_bytes());
                        out.push(b'"');
                    }
                    _ => address(out, self.address),
                }
            }
        }
        out.push(b'}');
    }
}

/// Appends the push that tells watch `watch` it missed the events `from..=to` of `instance`
/// (no longer in the history): `{"type":"missed","watch":1,"instance":0,"from":5,"to":12}`.
pub fn encode_missed(watch: u64, instance: usize, from: u64, to: u64, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(br#"{"type":"missed","watch":"#);
    out.extend_from_slice(n.format(watch).as_bytes());
    out.extend_from_slice(br#","instance":"#);
    out.extend_from_slice(n.format(instance).as_bytes());
    out.extend_from_slice(br#","from":"#);
    out.extend_from_slice(n.format(from).as_bytes());
    out.extend_from_slice(br#","to":"#);
    out.extend_from_slice(n.format(to).as_bytes());
    out.push(b'}');
}

/// Which homes want an origin's events (several instances): per key (exact or prefix) of
/// each kind, the interested homes with the number of their watches on it. An origin
/// forwards each event once to each interested home.
#[derive(Debug, Default)]
pub struct Interest {
    keys: [KeyIndex<Vec<(u16, u32)>>; 2],
}

impl Interest {
    /// Whether nobody watches anything here.
    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(KeyIndex::is_empty)
    }

    /// Whether nobody watches events of `kind`.
    pub fn is_empty_for(&self, kind: WatchKind) -> bool {
        self.keys[kind.code() as usize].is_empty()
    }

    /// Whether a home may want an event of `kind` on `key` (`false`: none does; see
    /// [`KeyIndex::may_match`]).
    #[inline]
    pub fn may_want(&self, kind: WatchKind, key: &str) -> bool {
        self.keys[kind.code() as usize].may_match(key)
    }

    /// Home `home` has one more watch on `key`.
    pub fn add(&mut self, kind: WatchKind, key: &str, prefix: bool, home: u16) {
        let homes = self.keys[kind.code() as usize].entry(key, prefix);
        match homes.iter_mut().find(|(h, _)| *h == home) {
            Some((_, n)) => *n += 1,
            None => homes.push((home, 1)),
        }
    }

    /// Home `home` has one watch less on `key`.
    pub fn remove(&mut self, kind: WatchKind, key: &str, prefix: bool, home: u16) {
        self.keys[kind.code() as usize].update(key, prefix, |homes| {
            if let Some(i) = homes.iter().position(|(h, _)| *h == home) {
                homes[i].1 -= 1;
                if homes[i].1 == 0 {
                    homes.swap_remove(i);
                }
            }
            homes.is_empty()
        });
    }

    /// The homes interested in an event of `kind` on `key`, each once.
    pub fn homes(&self, kind: WatchKind, key: &str, into: &mut Vec<u16>) {
        into.clear();
        self.keys[kind.code() as usize].for_each_match(key, |homes| {
            for &(h, _) in homes {
                if !into.contains(&h) {
                    into.push(h);
                }
            }
        });
    }
}

/// Queues event `seq` of `instance` for every watch at this home it matches (see
/// [`Watchers::deliver`]); a watching node whose push queue would overflow is added to
/// `slow` with the bytes it would have queued and its limit (the caller takes it offline).
pub(crate) fn fan_out(
    watchers: &mut Watchers,
    nodes: &mut crate::nodes::NodeRegistry,
    instance: usize,
    seq: u64,
    event: &Event<'_>,
    out: &mut Vec<crate::switch::types::Output>,
    slow: &mut Vec<(crate::ports::NodeIdx, usize, usize)>,
) {
    watchers.deliver(instance, seq, event, |node, watch| {
        let outcome = nodes.push_object(node, |buf| event.encode(watch, instance, seq, buf));
        queued(nodes, node, outcome, out, slow);
    });
}

/// Queues the push `encode` writes for `node` (a watch's replay or `missed`), as
/// [`fan_out`] does.
pub(crate) fn push_to(
    nodes: &mut crate::nodes::NodeRegistry,
    node: crate::ports::NodeIdx,
    encode: impl FnOnce(&mut Vec<u8>),
    out: &mut Vec<crate::switch::types::Output>,
    slow: &mut Vec<(crate::ports::NodeIdx, usize, usize)>,
) {
    let outcome = nodes.push_object(node, encode);
    queued(nodes, node, outcome, out, slow);
}

fn queued(
    nodes: &crate::nodes::NodeRegistry,
    node: crate::ports::NodeIdx,
    outcome: crate::nodes::PushOutcome,
    out: &mut Vec<crate::switch::types::Output>,
    slow: &mut Vec<(crate::ports::NodeIdx, usize, usize)>,
) {
    use crate::nodes::PushOutcome;
    match outcome {
        PushOutcome::Queued { first: true } => {
            if let Some(conn) = nodes.get(node).and_then(crate::nodes::Node::conn) {
                out.push(crate::switch::types::Output::Pending { node, conn });
            }
        }
        PushOutcome::Queued { first: false } | PushOutcome::Offline => {}
        PushOutcome::SlowConsumer { queued, limit } => slow.push((node, queued, limit)),
    }
}

/// Replays to watch `watch` of `node` (watching `watched`) what it missed of `instance`'s
/// journal after `from`: a `missed` push for what the journal no longer holds, then every
/// event it holds that the watch wants. Returns the position the watch then has, or the
/// instance's last sequence if `from` is ahead of it (not a cursor of this switch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn replay(
    journal: &Journal,
    watched: &Watched,
    nodes: &mut crate::nodes::NodeRegistry,
    node: crate::ports::NodeIdx,
    watch: u64,
    instance: usize,
    from: u64,
    out: &mut Vec<crate::switch::types::Output>,
    slow: &mut Vec<(crate::ports::NodeIdx, usize, usize)>,
) -> Result<u64, u64> {
    match journal.replay(from) {
        Replay::Ahead { last } => Err(last),
        Replay::From {
            missed,
            start,
            last,
        } => {
            if let Some((a, b)) = missed {
                push_to(
                    nodes,
                    node,
                    |buf| encode_missed(watch, instance, a, b, buf),
                    out,
                    slow,
                );
            }
            for (seq, event) in journal.since(start) {
                if watched.matches(&event) {
                    push_to(
                        nodes,
                        node,
                        |buf| event.encode(watch, instance, seq, buf),
                        out,
                        slow,
                    );
                }
            }
            Ok(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: Event<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        e.encode(3, 1, 42, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn events_encode_as_their_documented_pushes() {
        assert_eq!(
            json(Event::acquired("p\"1", "a", "")),
            serde_json::json!({"type":"watch","watch":3,"instance":1,"seq":42,"event":"acquired","port":"p\"1","owner":"a","address":null})
        );
        assert_eq!(
            json(Event::released("p", "a", ReleaseReason::NodeOffline))["reason"],
            "node_offline"
        );
        let moved = json(Event::moved("p", "b", "b:1", "a"));
        assert_eq!(
            (&moved["owner"], &moved["from"], &moved["address"]),
            (&"b".into(), &"a".into(), &"b:1".into())
        );
        assert_eq!(
            json(Event::node(
                What::Offline(OfflineReason::TokenRevoked),
                "n",
                ""
            ))["reason"],
            "token_revoked"
        );
        assert_eq!(
            json(Event::node(What::Online, "n", "h:1"))["address"],
            "h:1"
        );
        let mut out = Vec::new();
        encode_missed(3, 0, 5, 12, &mut out);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            serde_json::json!({"type":"missed","watch":3,"instance":0,"from":5,"to":12})
        );
    }

    #[test]
    fn codes_round_trip() {
        for what in [
            What::Acquired,
            What::Released(ReleaseReason::Replaced),
            What::Moved,
            What::Online,
            What::Offline(OfflineReason::SlowConsumer),
            What::Replaced,
        ] {
            let (a, b) = what.codes();
            assert_eq!(What::from_codes(a, b), Some(what));
        }
        assert_eq!(What::from_codes(9, 0), None);
    }

    #[test]
    fn interest_counts_watches_per_home() {
        let mut i = Interest::default();
        let mut homes = Vec::new();
        i.add(WatchKind::Ports, "user:", true, 2);
        i.add(WatchKind::Ports, "user:", true, 2);
        i.add(WatchKind::Ports, "user:1", false, 0);
        i.homes(WatchKind::Ports, "user:1", &mut homes);
        assert_eq!(homes, [0, 2]);
        i.homes(WatchKind::Nodes, "user:1", &mut homes);
        assert!(homes.is_empty());
        i.remove(WatchKind::Ports, "user:", true, 2);
        i.homes(WatchKind::Ports, "user:7", &mut homes);
        assert_eq!(homes, [2]);
        i.remove(WatchKind::Ports, "user:", true, 2);
        i.remove(WatchKind::Ports, "user:1", false, 0);
        assert!(i.is_empty());
    }
}
