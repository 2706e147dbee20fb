//! Batching without I/O: calls in, requests out; replies in, each call's part out.
//!
//! [`plan`] merges runs of consecutive calls of the same kind into as few requests as the
//! [`Limits`] allow (a call over a limit is split over several requests), keeping the order
//! of the calls: the switch runs the requests of one connection in order. [`Request::split`]
//! cuts a reply into each call's part. A merged request that the switch refuses as a whole
//! for a reason one call can cause is re-planned one call per request
//! ([`Request::unmergeable`], [`Request::unmerged`]), so only the guilty call fails.

use crate::error::Error;
use crate::types::{FailedPort, FencingToken, Message, NodeInfo, PortOwner};
use crate::wire::{self, Op, Reply};

/// Error codes one call of a merged request can cause for the whole request.
const UNMERGE_CODES: [&str; 5] = [
    "bad_json",
    "bad_request",
    "empty_port",
    "empty_node",
    "limit_exceeded",
];

/// Most items and bytes per request: keep them at or below the switch's
/// `max_ports_per_request`, `max_messages_per_request`, `max_nodes_per_request` and its
/// WebSocket message limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Ports, messages or nodes per request.
    pub max_items: usize,
    /// Bytes per request (estimated before JSON escapes).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_items: 1000,
            max_bytes: 1 << 20,
        }
    }
}

/// A name's share of a request's size: the name, its quotes and a comma.
fn name_size(name: &str) -> usize {
    name.len() + 3
}

/// A message's share of a request's size, before JSON escapes: its body, its targets and
/// the fixed text around them.
fn message_size(m: &Message) -> usize {
    let targets = m.port.as_ref().map_or(0, |p| p.len())
        + m.ports
            .as_ref()
            .map_or(0, |ps| ps.iter().map(|p| p.len() + 3).sum());
    m.body.len() + targets + 24
}

/// Identifies a call across the requests that carry it.
pub type CallId = u64;

/// The items of a call or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Items {
    /// Ports (RegPort, UnRegPort, QueryPort) or node ids (QueryNode).
    Names(Vec<String>),
    /// Messages (SendMsg).
    Messages(Vec<Message>),
    /// None (Relet).
    None,
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Names(v) => v.len(),
            Items::Messages(v) => v.len(),
            Items::None => 0,
        }
    }

    fn size(&self, i: usize) -> usize {
        match self {
            Items::Names(v) => name_size(&v[i]),
            Items::Messages(v) => message_size(&v[i]),
            Items::None => 0,
        }
    }

    /// The sum of every item's [`Items::size`], with one match for the whole vector.
    fn total_size(&self) -> usize {
        match self {
            Items::Names(v) => v.iter().map(|n| name_size(n)).sum(),
            Items::Messages(v) => v.iter().map(message_size).sum(),
            Items::None => 0,
        }
    }

    fn empty_like(&self) -> Items {
        match self {
            Items::Names(_) => Items::Names(Vec::new()),
            Items::Messages(_) => Items::Messages(Vec::new()),
            Items::None => Items::None,
        }
    }

    fn push_from(&mut self, from: &mut Items, i: usize) {
        match (self, from) {
            (Items::Names(to), Items::Names(from)) => to.push(std::mem::take(&mut from[i])),
            (Items::Messages(to), Items::Messages(from)) => to.push(Message {
                port: from[i].port.take(),
                ports: from[i].ports.take(),
                body: std::mem::take(&mut from[i].body),
            }),
            _ => {}
        }
    }

    /// The names, if these are names.
    pub fn names(&self) -> &[String] {
        match self {
            Items::Names(v) => v,
            _ => &[],
        }
    }
}

/// One call as the batcher sees it.
#[derive(Debug)]
pub struct Call {
    /// Its id.
    pub id: CallId,
    /// What it does.
    pub op: Op,
    /// Its items (moved into the requests by [`plan`]).
    pub items: Items,
    /// RegPort: subscribe to the release of ports that fail.
    pub subscribe: bool,
    /// Gets a request of its own (a SendMsg whose counts the caller wants).
    pub exclusive: bool,
}

/// The part of a request that belongs to one call: `items[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// The call.
    pub call: CallId,
    /// First item.
    pub start: usize,
    /// One past the last item.
    pub end: usize,
    /// The call is exclusive.
    pub exclusive: bool,
}

/// One request to the switch.
#[derive(Debug)]
pub struct Request {
    /// What it does.
    pub op: Op,
    /// RegPort subscribe flag.
    pub subscribe: bool,
    /// Its items.
    pub items: Items,
    /// The calls it carries, in order.
    pub parts: Vec<Part>,
    size: usize,
}

/// A call's share of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartResult {
    /// RegPort: owned and failed ports, and the owned ports' fencing tokens (one each, in
    /// order, from a cluster's master; none from a switch that runs alone).
    Reg(Vec<String>, Vec<FailedPort>, Vec<FencingToken>),
    /// UnRegPort: released, not owned, unknown.
    Unreg(Vec<String>, Vec<String>, Vec<String>),
    /// SendMsg: delivered and dropped, for exclusive calls.
    Sent(Option<(u64, u64)>),
    /// QueryPort.
    Ports(Vec<PortOwner>),
    /// QueryNode.
    Nodes(Vec<NodeInfo>),
    /// Relet: the lease.
    Relet(u64),
}

impl Request {
    fn new(op: Op, subscribe: bool, items: Items) -> Request {
        Request {
            op,
            subscribe,
            items,
            parts: Vec::new(),
            size: 0,
        }
    }

    /// The WebSocket message of this request.
    pub fn text(&self, id: u64) -> String {
        // The planned size counts every item's text: no pass over the items to size it.
        let mut out = String::with_capacity(self.size + 64);
        match &self.items {
            Items::Messages(m) => wire::write_request(&mut out, self.op, id, &[], m, false),
            items => wire::write_request(&mut out, self.op, id, items.names(), &[], self.subscribe),
        }
        out
    }

    /// Whether an error reply should be retried with one request per call.
    pub fn unmergeable(&self, error_code: &str) -> bool {
        self.parts.len() > 1 && UNMERGE_CODES.contains(&error_code)
    }

    /// One request per part.
    pub fn unmerged(mut self) -> Vec<Request> {
        let mut out = Vec::with_capacity(self.parts.len());
        for p in std::mem::take(&mut self.parts) {
            let mut r = Request::new(self.op, self.subscribe, self.items.empty_like());
            for i in p.start..p.end {
                r.items.push_from(&mut self.items, i);
            }
            r.parts.push(Part {
                start: 0,
                end: p.end - p.start,
                ..p
            });
            out.push(r);
        }
        out
    }

    /// Each part's result from a successful `reply` (in the order of `parts`). A RegPort's
    /// port names move into the results (the request is spent).
    pub fn split(&mut self, reply: Reply) -> Result<Vec<PartResult>, Error> {
        let op = self.op;
        let bad = |what: &str| Error::Other {
            code: "unexpected_reply".into(),
            message: format!(
                "{} reply {what}: client and switch disagree on the API",
                op.name()
            ),
        };
        if op == Op::RegPort {
            let token = reply
                .epoch
                .zip(reply.sequence)
                .map(|(epoch, sequence)| FencingToken { epoch, sequence });
            let tokens =
                |owned: &Vec<String>| token.map_or_else(Vec::new, |t| vec![t; owned.len()]);
            let failed = reply.failed.ok_or_else(|| bad("without `failed`"))?;
            let failed: std::collections::HashMap<&str, &wire::FailedWire> =
                failed.iter().map(|f| (f.port.as_str(), f)).collect();
            let Items::Names(names) = &mut self.items else {
                return Err(bad("to a request without ports"));
            };
            return Ok(self
                .parts
                .iter()
                .map(|p| {
                    let ports = &mut names[p.start..p.end];
                    if failed.is_empty() {
                        let owned = ports.iter_mut().map(std::mem::take).collect();
                        let tokens = tokens(&owned);
                        return PartResult::Reg(owned, Vec::new(), tokens);
                    }
                    let mut owned = Vec::with_capacity(ports.len());
                    let mut lost = Vec::new();
                    let mut seen = std::collections::HashSet::new();
                    for port in ports.iter_mut() {
                        match failed.get(port.as_str()) {
                            None => owned.push(std::mem::take(port)),
                            Some(f) => {
                                if seen.insert(port.clone()) {
                                    lost.push(FailedPort {
                                        port: std::mem::take(port),
                                        owner: f.owner.clone(),
                                        address: f.address.clone(),
                                    })
                                }
                            }
                        }
                    }
                    let tokens = tokens(&owned);
                    PartResult::Reg(owned, lost, tokens)
                })
                .collect());
        }
        let names = self.items.names();
        Ok(match op {
            Op::RegPort => unreachable!("handled above"),
            Op::UnRegPort => {
                let released: std::collections::HashSet<String> = reply
                    .released
                    .ok_or_else(|| bad("without `released`"))?
                    .into_iter()
                    .collect();
                let not_owned: std::collections::HashSet<String> =
                    reply.not_owned.unwrap_or_default().into_iter().collect();
                self.parts
                    .iter()
                    .map(|p| {
                        let (mut r, mut n, mut u) = (Vec::new(), Vec::new(), Vec::new());
                        for port in &names[p.start..p.end] {
                            if released.contains(port) {
                                r.push(port.clone())
                            } else if not_owned.contains(port) {
                                n.push(port.clone())
                            } else {
                                u.push(port.clone())
                            }
                        }
                        PartResult::Unreg(r, n, u)
                    })
                    .collect()
            }
            Op::SendMsg => {
                let counts = (
                    reply.delivered.ok_or_else(|| bad("without `delivered`"))?,
                    reply.dropped.unwrap_or(0),
                );
                self.parts
                    .iter()
                    .map(|p| PartResult::Sent(p.exclusive.then_some(counts)))
                    .collect()
            }
            Op::QueryPort => {
                let ports = reply.ports.ok_or_else(|| bad("without `ports`"))?;
                if ports.len() != names.len() {
                    return Err(bad("of another length than the request"));
                }
                let infos: Vec<PortOwner> = ports
                    .into_iter()
                    .map(|p| PortOwner {
                        port: p.port,
                        owner: p.owner,
                        address: p.address,
                    })
                    .collect();
                self.parts
                    .iter()
                    .map(|p| PartResult::Ports(infos[p.start..p.end].to_vec()))
                    .collect()
            }
            Op::QueryNode => {
                let nodes = reply.nodes.ok_or_else(|| bad("without `nodes`"))?;
                if nodes.len() != names.len() {
                    return Err(bad("of another length than the request"));
                }
                let infos: Vec<NodeInfo> = nodes
                    .into_iter()
                    .map(|n| NodeInfo {
                        node: n.node,
                        online: n.online,
                        address: n.address,
                        ports: n.ports,
                    })
                    .collect();
                self.parts
                    .iter()
                    .map(|p| PartResult::Nodes(infos[p.start..p.end].to_vec()))
                    .collect()
            }
            Op::Relet => {
                let lease = reply.lease_ms.ok_or_else(|| bad("without `lease_ms`"))?;
                self.parts
                    .iter()
                    .map(|_| PartResult::Relet(lease))
                    .collect()
            }
        })
    }
}

/// Merge `calls` (in order) into requests within `limits`. Returns the requests and, for
/// each call, how many requests carry it (0: it had no items and needs no request).
pub fn plan(calls: Vec<Call>, limits: Limits) -> (Vec<Request>, Vec<(CallId, usize)>) {
    let mut requests: Vec<Request> = Vec::new();
    let mut counts = Vec::with_capacity(calls.len());
    let mut open = false; // whether the last request may take more calls
    for mut call in calls {
        if call.op == Op::Relet {
            let mut r = Request::new(Op::Relet, false, Items::None);
            r.parts.push(Part {
                call: call.id,
                start: 0,
                end: 0,
                exclusive: true,
            });
            requests.push(r);
            counts.push((call.id, 1));
            open = false;
            continue;
        }
        let n = call.items.len();
        let mut carried = 0;
        if call.exclusive {
            open = false;
        }
        let mut i = 0;
        while i < n {
            let fits = open
                && requests.last().is_some_and(|r| {
                    r.op == call.op
                        && r.subscribe == call.subscribe
                        && r.items.len() < limits.max_items
                        && r.size < limits.max_bytes
                });
            if !fits {
                requests.push(Request::new(
                    call.op,
                    call.subscribe,
                    call.items.empty_like(),
                ));
            }
            let r = requests.last_mut().expect("a request");
            let start = r.items.len();
            if start == 0 && i == 0 && n <= limits.max_items {
                // A whole call into a request of its own: its items move as one vector, not
                // one by one (a SendMsg of 1,000 messages is the usual call under load).
                let size = call.items.total_size();
                if n == 1 || size <= limits.max_bytes {
                    r.items = std::mem::replace(&mut call.items, Items::None);
                    r.size = size;
                    i = n;
                }
            }
            while i < n && r.items.len() < limits.max_items {
                let size = call.items.size(i);
                if r.items.len() > 0 && r.size + size > limits.max_bytes {
                    break;
                }
                r.items.push_from(&mut call.items, i);
                r.size += size;
                i += 1;
            }
            r.parts.push(Part {
                call: call.id,
                start,
                end: r.items.len(),
                exclusive: call.exclusive,
            });
            carried += 1;
            open = i >= n;
        }
        if call.exclusive {
            open = false;
        }
        counts.push((call.id, carried));
    }
    (requests, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Items {
        Items::Names(v.iter().map(|s| s.to_string()).collect())
    }

    fn call(id: CallId, op: Op, items: Items) -> Call {
        Call {
            id,
            op,
            items,
            subscribe: false,
            exclusive: false,
        }
    }

    fn reply(json: &str) -> Reply {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn consecutive_calls_of_one_kind_go_out_as_one_request_and_split_back() {
        let (mut reqs, counts) = plan(
            vec![
                call(1, Op::RegPort, names(&["a", "b"])),
                call(2, Op::RegPort, names(&["c", "b"])),
            ],
            Limits::default(),
        );
        assert_eq!(counts, vec![(1, 1), (2, 1)]);
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            reqs[0].text(9),
            r#"{"op":"regport","id":9,"ports":["a","b","c","b"]}"#
        );
        let parts = reqs[0]
            .split(reply(
                r#"{"registered":2,"failed":[{"port":"c","owner":"n2","address":"x:1"}]}"#,
            ))
            .unwrap();
        assert_eq!(
            parts,
            vec![
                PartResult::Reg(vec!["a".into(), "b".into()], vec![], vec![]),
                PartResult::Reg(
                    vec!["b".into()],
                    vec![FailedPort::new("c", "n2", Some("x:1"))],
                    vec![]
                ),
            ]
        );
        // A cluster master's reply: every owned port gets (epoch, sequence).
        let mut again = plan(
            vec![Call {
                id: 3,
                op: Op::RegPort,
                items: Items::Names(vec!["a".into(), "c".into()]),
                subscribe: false,
                exclusive: false,
            }],
            Limits::default(),
        )
        .0;
        let parts = again[0]
            .split(reply(
                r#"{"registered":1,"failed":[{"port":"c","owner":"n2"}],"epoch":4,"sequence":9}"#,
            ))
            .unwrap();
        let token = FencingToken {
            epoch: 4,
            sequence: 9,
        };
        assert!(matches!(&parts[0], PartResult::Reg(o, _, t) if o == &["a"] && t == &[token]));
    }

    #[test]
    fn order_across_kinds_and_flags_is_kept() {
        let mut sub = call(5, Op::RegPort, names(&["a"]));
        sub.subscribe = true;
        let (reqs, _) = plan(
            vec![
                call(1, Op::RegPort, names(&["a"])),
                call(2, Op::SendMsg, Items::Messages(vec![Message::to("a", "1")])),
                call(3, Op::SendMsg, Items::Messages(vec![Message::to("a", "2")])),
                call(4, Op::UnRegPort, names(&["a"])),
                sub,
                call(6, Op::RegPort, names(&["b"])),
                call(7, Op::Relet, Items::None),
                call(8, Op::RegPort, names(&["c"])),
            ],
            Limits::default(),
        );
        let shape: Vec<(Op, bool, usize)> = reqs
            .iter()
            .map(|r| (r.op, r.subscribe, r.items.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Op::RegPort, false, 1),
                (Op::SendMsg, false, 2),
                (Op::UnRegPort, false, 1),
                (Op::RegPort, true, 1),
                (Op::RegPort, false, 1),
                (Op::Relet, false, 0),
                (Op::RegPort, false, 1),
            ]
        );
    }

    #[test]
    fn a_call_over_the_limits_is_split() {
        let ports: Vec<String> = (0..250).map(|i| format!("p{i}")).collect();
        let (reqs, counts) = plan(
            vec![
                call(1, Op::RegPort, Items::Names(ports)),
                call(2, Op::RegPort, names(&["q"])),
            ],
            Limits {
                max_items: 100,
                max_bytes: 1 << 20,
            },
        );
        assert_eq!(counts, vec![(1, 3), (2, 1)]);
        let lens: Vec<usize> = reqs.iter().map(|r| r.items.len()).collect();
        assert_eq!(lens, vec![100, 100, 51]);
        let msgs = vec![Message::to("p", "x".repeat(400)); 10];
        let (reqs, _) = plan(
            vec![call(1, Op::SendMsg, Items::Messages(msgs))],
            Limits {
                max_items: 1000,
                max_bytes: 1000,
            },
        );
        assert_eq!(reqs.len(), 5);
        assert!(reqs.iter().all(|r| r.text(1).len() < 1000));
    }

    #[test]
    fn exclusive_sends_have_their_own_request_and_counts() {
        let mut ex = call(2, Op::SendMsg, Items::Messages(vec![Message::to("b", "2")]));
        ex.exclusive = true;
        let (mut reqs, _) = plan(
            vec![
                call(1, Op::SendMsg, Items::Messages(vec![Message::to("a", "1")])),
                ex,
                call(3, Op::SendMsg, Items::Messages(vec![Message::to("c", "3")])),
            ],
            Limits::default(),
        );
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            reqs[1]
                .split(reply(r#"{"delivered":4,"dropped":1}"#))
                .unwrap(),
            vec![PartResult::Sent(Some((4, 1)))]
        );
        assert_eq!(
            reqs[0]
                .split(reply(r#"{"delivered":1,"dropped":0}"#))
                .unwrap(),
            vec![PartResult::Sent(None)]
        );
    }

    #[test]
    fn unregister_and_queries_split_by_membership_and_position() {
        let (mut reqs, _) = plan(
            vec![
                call(1, Op::UnRegPort, names(&["a", "b"])),
                call(2, Op::UnRegPort, names(&["c"])),
            ],
            Limits::default(),
        );
        let parts = reqs[0]
            .split(reply(
                r#"{"released":["a"],"not_owned":["c"],"unknown":["b"]}"#,
            ))
            .unwrap();
        assert_eq!(
            parts,
            vec![
                PartResult::Unreg(vec!["a".into()], vec![], vec!["b".into()]),
                PartResult::Unreg(vec![], vec!["c".into()], vec![]),
            ]
        );
        let (mut reqs, _) = plan(
            vec![
                call(1, Op::QueryNode, names(&["n1"])),
                call(2, Op::QueryNode, names(&["n2"])),
            ],
            Limits::default(),
        );
        let parts = reqs[0]
            .split(reply(
                r#"{"nodes":[{"node":"n1","online":true,"address":"a","ports":2},{"node":"n2","online":false,"address":null,"ports":0}]}"#,
            ))
            .unwrap();
        assert!(matches!(&parts[1], PartResult::Nodes(n) if n[0].node == "n2" && !n[0].online));
        assert!(reqs[0]
            .split(reply(
                r#"{"nodes":[{"node":"n1","online":true,"ports":2}]}"#
            ))
            .is_err());
    }

    #[test]
    fn a_merged_request_refused_as_a_whole_is_unmerged() {
        let (mut reqs, _) = plan(
            vec![
                call(1, Op::RegPort, names(&["fine"])),
                call(2, Op::RegPort, names(&["x", "y"])),
            ],
            Limits::default(),
        );
        let r = reqs.pop().unwrap();
        assert!(r.unmergeable("limit_exceeded"));
        assert!(!r.unmergeable("node_not_online"));
        let one = r.unmerged();
        assert_eq!(one.len(), 2);
        assert_eq!(one[1].items.names(), ["x", "y"]);
        assert_eq!((one[1].parts[0].call, one[1].parts[0].end), (2, 2));
        assert!(!one[0].unmergeable("limit_exceeded"));
    }

    #[test]
    fn empty_calls_need_no_request() {
        let (reqs, counts) = plan(vec![call(1, Op::RegPort, names(&[]))], Limits::default());
        assert!(reqs.is_empty());
        assert_eq!(counts, vec![(1, 0)]);
    }
}
