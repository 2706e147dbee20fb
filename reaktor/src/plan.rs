//! From a topology to a placement: which nukleus instances run on which core, and which
//! instances are linked by a pair of streams.

use streams::PeerRole;

use crate::kind::Instance;
use crate::kinds;
use crate::topology::{LoadedTopology, Topology, TCP_OUT};

/// What `reaktor plan` says about a placement, as separate notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementNotes {
    /// One line per core: its cpu and instances.
    pub cores: Vec<String>,
    /// (kind, line) for each kind split into several instances.
    pub kinds: Vec<(String, String)>,
    /// (tcp instance, tcp.out instance, line) for each tcp split by direction.
    pub directions: Vec<(usize, usize, String)>,
    /// One line per link, in `Placement::links` order.
    pub streams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instances: Vec<Instance>,
    /// Pairs of instance indices that exchange streams (each pair gets two rings).
    pub links: Vec<(usize, usize)>,
    /// Kind pairs that talk to each other, from listener chains and routes.
    pub edges: Vec<(String, String)>,
    /// tcp instances split by direction: (the tcp instance, which keeps its links and reads
    /// sockets; the `tcp.out` instance, which reads the rings into it and writes sockets).
    pub direction_pairs: Vec<(usize, usize)>,
}

/// Kind pairs that talk to each other, (network side, application side), from listener
/// chains and routes, plus a self edge for each keyed kind's mesh (also used by the planner,
/// before any core is populated).
pub fn kind_edges(loaded: &LoadedTopology) -> Vec<(String, String)> {
    let mut edges: Vec<(String, String)> = Vec::new();
    let mut add_edge = |a: &str, b: &str| {
        let edge = (a.to_owned(), b.to_owned());
        if a != b && !edges.contains(&edge) && !edges.contains(&(edge.1.clone(), edge.0.clone())) {
            edges.push(edge);
        }
    };
    for listener in &loaded.topology.listeners {
        for pair in listener.chain.get_ref().windows(2) {
            add_edge(&pair[0], &pair[1]);
        }
    }
    for kind in kinds::REGISTRY {
        for route in kind.routes(loaded) {
            add_edge(kind.name(), route.to.get_ref());
        }
    }
    // The instances of a meshed kind talk to each other (the switch's shards and node homes).
    let meshed: Vec<String> = edges
        .iter()
        .flat_map(|(a, b)| [a, b])
        .filter(|k| is_meshed(k))
        .cloned()
        .collect();
    for kind in meshed {
        let edge = (kind.clone(), kind);
        if !edges.contains(&edge) {
            edges.push(edge);
        }
    }
    edges
}

/// Kinds whose instances exchange streams with each other when there are several: the kinds
/// partitioned by key (the switch's port shards and node homes, see `nukleus_switch::cluster`).
pub fn is_meshed(kind: &str) -> bool {
    kinds::kind(kind).is_some_and(|k| k.partitioning().is_keyed())
}

/// The role of a peer of kind `peer`, seen from an instance of kind `own`: which side it is on
/// and what the link carries.
pub fn role(own: &str, peer: &str) -> PeerRole {
    if own == peer {
        return PeerRole::MESH;
    }
    match (kinds::carries(peer, own), kinds::carries(own, peer)) {
        (Some(carries), _) => PeerRole::network(carries),
        (None, Some(carries)) if kinds::kind(peer).is_some_and(|k| k.offers().is_some()) => {
            PeerRole::relay(carries)
        }
        (None, Some(carries)) => PeerRole::application(carries),
        // Validation admits only pairs that fit; a pair that does not carries nothing useful.
        (None, None) => PeerRole::MESH,
    }
}

impl Placement {
    pub fn from_topology(loaded: &LoadedTopology) -> Placement {
        let topology = &loaded.topology;
        let mut instances = Vec::new();
        for (core, section) in topology.cores.iter().enumerate() {
            for kind in section.nuklei.get_ref() {
                let index = instances
                    .iter()
                    .filter(|i: &&Instance| &i.kind == kind)
                    .count() as u16;
                instances.push(Instance {
                    kind: kind.clone(),
                    core,
                    index,
                });
            }
        }
        let edges = kind_edges(loaded);
        let mut links = Vec::new();
        for (a, b) in &edges {
            for (i, x) in instances.iter().enumerate() {
                for (j, y) in instances.iter().enumerate() {
                    // Every instance of one kind with every instance of the other: same-core
                    // pairs carry fused traffic, cross-core pairs carry split traffic. A meshed
                    // kind links each pair of its own instances once.
                    if &x.kind == a && &y.kind == b && (a != b || i < j) {
                        links.push((i, j));
                    }
                }
            }
        }
        let tcps = instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind == "tcp");
        let outs = instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind == TCP_OUT);
        let direction_pairs = tcps.zip(outs).map(|((t, _), (o, _))| (t, o)).collect();
        Placement {
            instances,
            links,
            edges,
            direction_pairs,
        }
    }

    /// The instance that reads the rings into instance `i`: itself, or its output half.
    pub fn reader(&self, i: usize) -> usize {
        self.direction_pairs
            .iter()
            .find(|(tcp, _)| *tcp == i)
            .map_or(i, |&(_, out)| out)
    }

    /// The core that reads the rings into instance `i`.
    pub fn reader_core(&self, i: usize) -> usize {
        self.instances[self.reader(i)].core
    }

    /// A human-readable account of the placement, for `reaktor plan`.
    pub fn describe(&self, topology: &Topology) -> String {
        let notes = self.notes(topology);
        let mut out = String::new();
        for line in notes.cores.iter().chain(notes.kinds.iter().map(|(_, l)| l)) {
            out.push_str(line);
            out.push('\n');
        }
        for (_, _, line) in &notes.directions {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("streams:\n");
        for line in &notes.streams {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }

    /// The words of `reaktor plan` about the placement, one note per core, split kind,
    /// direction pair and link (in `links` order), for the text and for the operator console.
    pub fn notes(&self, topology: &Topology) -> PlacementNotes {
        let mut notes = PlacementNotes::default();
        for (core, section) in topology.cores.iter().enumerate() {
            let cpu = section
                .cpu
                .as_ref()
                .map_or("unpinned".to_owned(), |c| format!("cpu {}", c.get_ref()));
            let names: Vec<String> = self
                .instances
                .iter()
                .filter(|i| i.core == core)
                .map(|i| i.name())
                .collect();
            let fused = if names.len() > 1 {
                " (fused: one thread polls them in turn)"
            } else {
                ""
            };
            notes
                .cores
                .push(format!("core {core} [{cpu}]: {}{fused}", names.join(", ")));
        }
        for (kind, count) in self.kind_counts() {
            if count > 1 && is_meshed(&kind) {
                let line = format!("{kind}: split into {count} instances (ports by name hash, nodes by id hash; requests for a node go to its home instance, the instances talk over a mesh)");
                notes.kinds.push((kind, line));
            } else if count > 1 {
                let line = format!("{kind}: split into {count} instances (streams routed by key, same core preferred)");
                notes.kinds.push((kind, line));
            }
        }
        for &(tcp, output) in &self.direction_pairs {
            let (x, y) = (&self.instances[tcp], &self.instances[output]);
            notes.directions.push((
                tcp,
                output,
                format!(
                    "{} split by direction: it accepts and reads sockets on core {}, {} writes them on core {}",
                    x.name(),
                    x.core,
                    y.name(),
                    y.core
                ),
            ));
        }
        for &(a, b) in &self.links {
            let (x, y) = (&self.instances[a], &self.instances[b]);
            let (forth, back) = self.hops(a, b);
            notes.streams.push(if forth == back {
                format!("{} <-> {} ({forth})", x.name(), y.name())
            } else {
                format!(
                    "{} -> {} ({forth}), back read on core {} ({back})",
                    x.name(),
                    y.name(),
                    self.reader_core(a)
                )
            });
        }
        notes
    }

    /// Whether each direction of link `(a, b)` stays on one core: ("same core" or
    /// "cross core" from `a` to `b`, the same from `b` to `a`).
    pub fn hops(&self, a: usize, b: usize) -> (&'static str, &'static str) {
        let (x, y) = (&self.instances[a], &self.instances[b]);
        let hop = |writer: usize, reader: usize| {
            if writer == reader {
                "same core"
            } else {
                "cross core"
            }
        };
        (
            hop(x.core, self.reader_core(b)),
            hop(y.core, self.reader_core(a)),
        )
    }

    fn kind_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for i in &self.instances {
            match counts.iter_mut().find(|(k, _)| k == &i.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((i.kind.clone(), 1)),
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(text: &str) -> LoadedTopology {
        let mut loaded = crate::kinds::parse(std::path::Path::new("t.toml"), text).unwrap();
        crate::place::place(&mut loaded).unwrap();
        loaded
    }

    const TWO_SWITCHES: &str = r#"
[[listener]]
name = "http"
address = "127.0.0.1:0"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "ws", "switch"]

[[core]]
nuklei = ["tcp", "http", "ws", "switch"]

[[core]]
nuklei = ["tcp", "http", "ws", "switch"]

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"
"#;

    #[test]
    fn a_tcp_out_pairs_with_the_tcp_of_the_same_rank_and_reads_its_rings() {
        let text = r#"
[[listener]]
name = "http"
address = "127.0.0.1:0"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[core]]
nuklei = ["tcp.out", "tcp.out"]

[[http.route]]
path = "/"
to = "echo"
"#;
        let loaded = placed(text);
        let placement = Placement::from_topology(&loaded);
        let name = |i: usize| placement.instances[i].name();
        let pairs: Vec<(String, String)> = placement
            .direction_pairs
            .iter()
            .map(|&(t, o)| (name(t), name(o)))
            .collect();
        assert_eq!(
            pairs,
            [
                ("core0.tcp0".to_owned(), "core2.tcp.out0".to_owned()),
                ("core1.tcp1".to_owned(), "core2.tcp.out1".to_owned())
            ]
        );
        // tcp.out has no links of its own: it takes its tcp's.
        let out = placement.direction_pairs[0].1;
        assert!(placement.links.iter().all(|&(a, b)| a != out && b != out));
        let tcp1 = placement.direction_pairs[1].0;
        assert_eq!(placement.reader_core(tcp1), 2);
        let http0 = placement
            .instances
            .iter()
            .position(|i| i.name() == "core0.http0")
            .unwrap();
        assert_eq!(
            placement.reader_core(http0),
            0,
            "others read their own rings"
        );
    }

    #[test]
    fn switch_instances_are_meshed_pairwise_and_routes_to_them_are_keyed_by_node() {
        let loaded = placed(TWO_SWITCHES);
        let placement = Placement::from_topology(&loaded);
        let switches: Vec<usize> = placement
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind == "switch")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(switches.len(), 3);
        let mesh: Vec<(usize, usize)> = placement
            .links
            .iter()
            .copied()
            .filter(|(a, b)| switches.contains(a) && switches.contains(b))
            .collect();
        // Each pair once, never an instance with itself.
        assert_eq!(
            mesh,
            [
                (switches[0], switches[1]),
                (switches[0], switches[2]),
                (switches[1], switches[2])
            ]
        );
        let text = placement.describe(&loaded.topology);
        assert!(
            text.contains("core0.switch0 <-> core1.switch1 (cross core)"),
            "{text}"
        );
        // Routes to the switch pick the node's home by the node id (path segment 2).
        let keys: Vec<Option<usize>> = loaded
            .section::<crate::kinds::HttpSection>()
            .routes
            .iter()
            .chain(&loaded.section::<crate::kinds::WsSection>().routes)
            .map(|r| r.key_segment(&crate::kinds::Registry))
            .collect();
        assert_eq!(keys, [Some(2), None, Some(2)]);
    }
}
