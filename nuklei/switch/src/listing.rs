//! Listings: ports by prefix, online nodes by prefix, and one node's ports, in pages of at
//! most `max_page` entries with a cursor for the next.
//!
//! * **Ports by prefix** come from every shard's name-ordered index ([`PortShard::list`]):
//!   each shard gives the first `limit` names after the cursor, the pages are merged in name
//!   order and cut at `limit`; the cursor is the last name given. A page costs a descent and
//!   `limit` entries per shard, whatever the number of ports.
//! * **Online nodes** likewise from each home's ordered set of online node ids.
//! * **A node's ports** shard after shard, each shard's part most recently registered first
//!   ([`PortShard::node_page`]); the cursor names the shard and the port the next page starts
//!   at. If that port left the node meanwhile, the shard's part starts again and the page says
//!   `restarted` (the client may see ports twice, never miss one held throughout).
//!
//! Listings are not snapshots: a port registered or released while a listing runs may or may
//! not be in it (watches tell what changed).

use crate::nodes::NodeRegistry;
use crate::ports::{NodeIdx, PortShard};
use crate::switch::{ListedPort, NodeListing, NodePortsListing, PortListing};
use crate::switch::{NodeInfo, Switch, SwitchError};

/// A page request: prefix, cursor, and size (cut to `[1, max_page]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Names starting with this.
    pub prefix: String,
    /// The cursor of the previous page.
    pub after: Option<String>,
    /// Entries wanted.
    pub limit: Option<u64>,
}

impl PageRequest {
    /// The page size: the limit asked for, cut to `[1, max_page]`.
    pub fn size(&self, max_page: usize) -> usize {
        self.limit
            .map_or(max_page, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .clamp(1, max_page.max(1))
    }
}

/// Merges pages sorted by `key` (each at most `limit` long, `full` if it may have more) into
/// one of at most `limit`; the cursor is the last key taken if anything may follow.
pub fn merge<T>(
    pages: Vec<(Vec<T>, bool)>,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    let more_somewhere = pages.iter().any(|(_, full)| *full);
    let mut all: Vec<T> = pages.into_iter().flat_map(|(p, _)| p).collect();
    all.sort_by(|a, b| key(a).cmp(key(b)));
    let cut = all.len() > limit;
    all.truncate(limit);
    let next = (cut || more_somewhere)
        .then(|| all.last().map(|t| key(t).to_string()))
        .flatten();
    (all, next)
}

/// The cursor of a node's-ports page: the shard and the port its next page starts at.
pub fn node_cursor(shard: usize, port: &str) -> String {
    let mut out = format!("{shard}:");
    for b in port.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The shard and port of a node's-ports cursor.
pub fn parse_node_cursor(cursor: &str, shards: usize) -> Result<(usize, String), SwitchError> {
    let bad = || {
        SwitchError::BadCursor(format!(
            "{cursor:?} is not a cursor of a node's ports: pass the `next` of the previous page"
        ))
    };
    let (shard, hex) = cursor.split_once(':').ok_or_else(bad)?;
    let shard: usize = shard.parse().map_err(|_| bad())?;
    if shard >= shards || hex.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    let port = String::from_utf8(bytes).map_err(|_| bad())?;
    Ok((shard, port))
}

/// A node's ports from shard `first` on, `start` in it, until `limit` (the single switch
/// and each instance of a cluster walk their shards alike).
pub(crate) fn node_ports_from(
    shards: &[&PortShard],
    node: impl Fn(usize) -> Option<NodeIdx>,
    first: usize,
    mut start: Option<String>,
    limit: usize,
) -> NodePortsListing {
    let mut listing = NodePortsListing::default();
    for (k, shard) in shards.iter().enumerate().skip(first) {
        let Some(idx) = node(k) else {
            start = None;
            continue;
        };
        let page = shard.node_page(idx, start.take().as_deref(), limit - listing.ports.len());
        listing.restarted |= page.restarted;
        listing
            .ports
            .extend(page.ports.iter().map(|p| p.to_string()));
        if let Some(next) = page.next {
            listing.next = Some(node_cursor(k, next));
            return listing;
        }
        if listing.ports.len() == limit {
            if k + 1 < shards.len() {
                listing.next = Some(node_cursor(k + 1, ""));
            }
            return listing;
        }
    }
    listing
}

/// Up to `limit` online nodes of `nodes` for `page`, in id order, and whether the page is full
/// (there may be more).
pub(crate) fn online_nodes(
    nodes: &NodeRegistry,
    page: &PageRequest,
    limit: usize,
) -> (Vec<NodeInfo>, bool) {
    let idxs = nodes.list_online(&page.prefix, page.after.as_deref(), limit);
    let full = idxs.len() == limit;
    let infos = idxs
        .into_iter()
        .filter_map(|i| nodes.get(i))
        .map(|n| NodeInfo {
            node: n.id().clone(),
            address: n.address().clone(),
            ports: n.ports(),
            lease_deadline: n.lease_deadline(),
            queued_bytes: n.queued_bytes(),
        })
        .collect();
    (infos, full)
}

impl Switch {
    /// Ports whose names start with `page.prefix`, in name order.
    pub fn list_ports(&self, page: &PageRequest) -> Result<PortListing, SwitchError> {
        self.limits.check_port_name(&page.prefix)?;
        let limit = page.size(self.limits.max_page);
        let pages = self
            .shards
            .iter()
            .map(|s| {
                let got = s.list(&page.prefix, page.after.as_deref(), limit);
                let full = got.len() == limit;
                let ports = got
                    .into_iter()
                    .filter_map(|(port, owner)| {
                        let n = self.nodes.get(owner)?;
                        Some(ListedPort {
                            port: port.to_string(),
                            owner: n.id().clone(),
                            address: n.address().clone(),
                        })
                    })
                    .collect();
                (ports, full)
            })
            .collect();
        let (ports, next) = merge(pages, limit, |p: &ListedPort| &p.port);
        Ok(PortListing { ports, next })
    }

    /// Online nodes whose ids start with `page.prefix`, in id order.
    pub fn list_nodes(&self, page: &PageRequest) -> Result<NodeListing, SwitchError> {
        self.limits.check_node_id(&page.prefix)?;
        let limit = page.size(self.limits.max_page);
        let (nodes, full) = online_nodes(&self.nodes, page, limit);
        let next = full
            .then(|| nodes.last().map(|n| n.node.to_string()))
            .flatten();
        Ok(NodeListing { nodes, next })
    }

    /// A page of `node`'s ports (it need not be online: an offline node has none).
    pub fn node_ports(
        &self,
        node: &str,
        after: Option<&str>,
        limit: Option<u64>,
    ) -> Result<NodePortsListing, SwitchError> {
        let size = PageRequest {
            limit,
            ..PageRequest::default()
        }
        .size(self.limits.max_page);
        let (first, start) = match after {
            None => (0, None),
            Some(c) => {
                let (shard, port) = parse_node_cursor(c, self.shards.len())?;
                (shard, (!port.is_empty()).then_some(port))
            }
        };
        let idx = self.nodes.lookup(node);
        let shards: Vec<&PortShard> = self.shards.iter().collect();
        Ok(node_ports_from(&shards, |_| idx, first, start, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_in_order_and_say_whether_more_follow() {
        let pages = vec![(vec!["a", "d", "e"], true), (vec!["b", "c"], false)];
        let (all, next) = merge(pages, 3, |s: &&str| s);
        assert_eq!(all, ["a", "b", "c"]);
        assert_eq!(next.as_deref(), Some("c"));
        let (all, next) = merge(vec![(vec!["x"], false), (vec![], false)], 3, |s: &&str| s);
        assert_eq!((all, next), (vec!["x"], None));
    }

    #[test]
    fn node_cursors_round_trip_and_bad_ones_are_refused() {
        let c = node_cursor(3, "user:ü");
        assert_eq!(parse_node_cursor(&c, 4), Ok((3, "user:ü".into())));
        assert_eq!(
            parse_node_cursor(&node_cursor(1, ""), 2),
            Ok((1, String::new()))
        );
        for bad in ["", "x", "9:00", "0:zz", "0:0", "0:ff"] {
            assert!(parse_node_cursor(bad, 4).is_err(), "{bad}");
        }
    }
}
