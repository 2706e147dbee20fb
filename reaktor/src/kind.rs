//! What the reaktor knows about a nukleus kind, declared in one place per kind: the [`Kind`]
//! trait. Each kind implements it in its own file under `kinds/`, and `kinds/mod.rs` lists
//! them in one registry; nothing else in the reaktor names a kind.

use std::ops::Range;
use std::sync::Arc;

use streams::{Carries, Nukleus, PeerLink};
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::stats::SharedStats;
use crate::topology::{KindTables, LoadedTopology, Sections};

/// A built nukleus, ready to be polled by a core.
pub type BoxedNukleus = Box<dyn Nukleus + Send>;

/// How a kind runs as several instances (fission) when it is on several cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Any instance serves any exchange: a stream goes to the instance on its own core, else
    /// one chosen by the connection (tcp, tls, http, ws, echo, metrics).
    ByConnection,
    /// The instances partition state by a key that is not the connection (the switch: ports
    /// by name hash, nodes by id hash). A route to the kind hashes path segment
    /// `route_key_segment` (unless the route sets `key_segment`) to reach the instance that
    /// owns the key, and the instances talk to each other over a mesh (one ring pair each).
    ByKey { route_key_segment: usize },
}

impl Partitioning {
    pub fn is_keyed(self) -> bool {
        matches!(self, Partitioning::ByKey { .. })
    }

    /// The path segment a route to this kind hashes by default, if the kind is keyed.
    pub fn route_key_segment(self) -> Option<usize> {
        match self {
            Partitioning::ByKey { route_key_segment } => Some(route_key_segment),
            Partitioning::ByConnection => None,
        }
    }
}

/// A nukleus instance of the placement: its kind, its core, and its index among the
/// instances of its kind (used in stream ids and instance names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub kind: String,
    pub core: usize,
    pub index: u16,
}

impl Instance {
    pub fn name(&self) -> String {
        format!("core{}.{}{}", self.core, self.kind, self.index)
    }
}

/// Finds a kind by name: what a kind asks about another (a route's target) without naming the
/// registry, which sits above every kind.
pub trait Lookup {
    fn kind(&self, name: &str) -> Option<&'static dyn Kind>;
}

/// Builds the nuklei of kinds whose machinery sits above placement: the console plans pasted
/// topologies with the planner, which reads the registry, which lists the console. The runtime
/// hands the machinery to the build, so a kind's declaration never imports what imports it.
pub trait Machinery {
    /// The nukleus of `kind`'s instance, or `None` when this machinery does not build `kind`.
    fn build(&self, kind: &str, build: Build<'_>) -> Option<Result<BoxedNukleus, StartError>>;
}

/// `[[<kind>.route]]`: a path prefix routed to a kind (http's and ws's routes).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub path: String,
    pub to: Spanned<String>,
    /// Route by key: send each request to the instance of `to` that owns the hash of this
    /// path segment (0-based, percent-decoded), instead of the instance on the same core.
    /// Default: the target kind's own (`Partitioning::ByKey`), none for other kinds.
    #[serde(default)]
    pub key_segment: Option<usize>,
}

impl RouteSection {
    /// The path segment whose hash picks the target instance, if this route is keyed.
    pub fn key_segment(&self, kinds: &dyn Lookup) -> Option<usize> {
        self.key_segment.or_else(|| {
            kinds
                .kind(self.to.get_ref())
                .and_then(|k| k.partitioning().route_key_segment())
        })
    }
}

/// What a kind's validation sees: the topology with every core's nuklei placed, the kind
/// pairs that exchange streams, and a way to name a position in the file.
pub struct Check<'a> {
    pub loaded: &'a LoadedTopology,
    /// (network side, application side) kind pairs from listener chains and routes.
    pub edges: &'a [(String, String)],
    pub invalid: Invalid<'a>,
    pub kinds: &'a dyn Lookup,
}

impl Check<'_> {
    /// Whether `kind` runs on some core.
    pub fn placed(&self, kind: &str) -> bool {
        self.loaded
            .topology
            .cores
            .iter()
            .any(|c| c.nuklei.get_ref().iter().any(|k| k == kind))
    }

    pub fn error(&self, span: Option<Range<usize>>, message: String) -> TopologyError {
        (self.invalid)(span, message)
    }
}

/// What a kind's builder gets: the topology, the instance to build, its links (each with the
/// peer's role from the plan) and the reaktor's shared pieces.
pub struct Build<'a> {
    pub loaded: &'a LoadedTopology,
    pub instance: &'a Instance,
    pub links: Vec<PeerLink>,
    pub stats: &'a Arc<SharedStats>,
    /// The re-plan's connection steering, shared by the instances of a network kind.
    pub steering: Option<&'a Arc<nukleus_tcp::Steering>>,
    pub kinds: &'a dyn Lookup,
    /// The doorbell of the instance's core (to be woken by another thread).
    pub doorbell: &'a Arc<streams::Doorbell>,
    /// With `[cluster]`: this member's standing, published by the election (the `raft`
    /// kind) and read by whatever may serve only as master (the switch).
    pub mastership: Option<&'a Arc<streams::Mastership>>,
    /// Where a kind registers what it applies of a topology reloaded while running (SIGHUP),
    /// and how its nuklei ask for a reload.
    pub reloads: &'a Arc<crate::reload::Reloads>,
    /// What builds the kinds whose machinery sits above placement (see [`Machinery`]).
    pub machinery: &'a dyn Machinery,
}

/// What a kind's settings put into one stream buffer (see [`Kind::stream_needs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamNeed {
    /// Credit the kind grants one stream: a peer may put this much payload into one buffer
    /// before the kind reads it. `setting` names it as in the topology, e.g.
    /// `[http] window = 65536`.
    Window { setting: String, bytes: usize },
    /// A record the kind writes whole (record and frame headers included), such as a request
    /// head in a BEGIN: it must fit in one record of a buffer.
    Record { setting: String, bytes: usize },
}

/// Everything the reaktor knows about one nukleus kind. One implementation per kind, in
/// `kinds/<name>.rs`, and one line in the registry (`kinds/mod.rs`).
pub trait Kind: Sync {
    /// The name in topology files: in `[[core]]` lists, listener chains, route targets, and
    /// the name of its own section (`[<name>]`, `[listener.<name>]`).
    fn name(&self) -> &'static str;

    /// One line: what the kind does (docs and error messages).
    fn about(&self) -> &'static str;

    /// The planner's per-request cost when neither a measurement nor `[cost]` gives one.
    fn default_cost(&self) -> f64;

    fn partitioning(&self) -> Partitioning {
        Partitioning::ByConnection
    }

    /// A kind that exchanges no streams and runs alone on a core of its own (the election:
    /// nothing else on its thread may delay it). It is in no chain and no route.
    fn runs_alone(&self) -> bool {
        false
    }

    /// Whether the topology needs an instance of this kind although no chain or route names
    /// it (the election, when there is a `[cluster]`). With explicit placement and no core
    /// listing it, the placement step adds an unpinned core running it alone.
    fn required(&self, _loaded: &LoadedTopology) -> bool {
        false
    }

    /// What its network side must carry, any one of these. Empty: the kind faces the network
    /// itself and starts listener chains (tcp).
    fn accepts(&self) -> &'static [Carries];

    /// What it offers to its application side. `None`: it is an application, the end of
    /// chains and routes.
    fn offers(&self) -> Option<Carries> {
        None
    }

    /// Takes the kind's own tables out of the file (`tables.section::<T>(self.name())`) and
    /// stores the parsed settings in `sections`, checking what needs no placement.
    fn load(
        &self,
        _tables: &mut KindTables,
        _sections: &mut Sections,
        _invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        Ok(())
    }

    /// What its settings put into one stream buffer, for the check that `stream_capacity`
    /// can carry them.
    fn stream_needs(&self, _loaded: &LoadedTopology) -> Vec<StreamNeed> {
        Vec::new()
    }

    /// Checks its settings against the placed topology.
    fn validate(&self, _check: &Check<'_>) -> Result<(), TopologyError> {
        Ok(())
    }

    /// The routes it declares (exchanges it opens to other kinds by path).
    fn routes<'a>(&self, _loaded: &'a LoadedTopology) -> &'a [RouteSection] {
        &[]
    }

    /// For `reaktor dump`: the BEGIN extension of a stream on a link where this kind is the
    /// network side, on the initial stream (to the application) or the reply (from it).
    fn describe_begin(&self, _initial: bool, _extension: &[u8]) -> Option<String> {
        None
    }

    /// For `reaktor dump`: a word for a DATA frame's extension on such a link.
    fn describe_data(&self, _extension: &[u8]) -> Option<&'static str> {
        None
    }

    /// An application that closes the connections whose client stays silent itself (the
    /// switch, by its lease): ws leaves their liveness to it (no `[ws] idle_timeout_ms`).
    fn watches_liveness(&self) -> bool {
        false
    }

    /// For `reaktor dump`: whether payloads on links to this kind are not to be shown
    /// (ciphertext on one side, another party's plaintext on the other).
    fn secret_payload(&self) -> bool {
        false
    }

    /// Builds one instance.
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError>;

    /// Builds one instance split by direction, for kinds that can run their output half on
    /// another core (`tcp.out`): the input half and the output half, each given the other
    /// core's doorbell. `None`: the kind cannot.
    fn build_split(
        &self,
        _build: Build<'_>,
        _input_doorbell: Arc<streams::Doorbell>,
        _output_doorbell: Arc<streams::Doorbell>,
    ) -> Option<Result<(BoxedNukleus, BoxedNukleus), StartError>> {
        None
    }
}

/// Up to `max` bytes as printable text (escapes for CR, LF and quotes, `.` for the rest), for
/// frame descriptions.
pub fn preview(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push('.'),
        }
    }
    if bytes.len() > max {
        out.push_str("...");
    }
    out
}
