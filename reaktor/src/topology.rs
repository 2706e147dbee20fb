//! The topology file as written: the reaktor's own sections (`[reaktor]`, `[[listener]]`,
//! `[[core]]`, `[cost]`) parsed and checked, and every other table kept, with its position,
//! for the kind that owns it (see `kind.rs`). Errors name the file, the line and the problem.
//! Parsing places nothing: with `placement = "auto"` the cores' nuklei are filled in by the
//! placement step (`place.rs`).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::cluster::{Cluster, ClusterSection};
use crate::error::{Invalid, TopologyError};

/// The reaktor's own sections of a topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub reaktor: ReaktorSection,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerSection>,
    /// With `placement = "auto"` the placement step fills in each core's nuklei.
    #[serde(default, rename = "core")]
    pub cores: Vec<CoreSection>,
    /// `[cost]`: declared per-request cost of a kind (and `hop`) for the planner.
    #[serde(default)]
    pub cost: BTreeMap<String, Spanned<f64>>,
    /// `[cluster]`: this reaktor is one member of a port switch cluster (see `cluster.rs`).
    pub cluster: Option<Spanned<ClusterSection>>,
}

/// Top-level keys that are the reaktor's own; every other table belongs to a kind.
const OWN_SECTIONS: [&str; 5] = ["reaktor", "listener", "core", "cost", "cluster"];
/// A listener's own keys; every other table in it belongs to a kind (`[listener.tls]`).
const OWN_LISTENER_KEYS: [&str; 4] = ["name", "address", "chain", "backlog"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaktorSection {
    /// Where stream files live; a `reaktor-<pid>` directory is made inside it.
    /// Default: /dev/shm if it exists, else the system temp dir.
    pub stream_dir: Option<PathBuf>,
    /// Bytes per stream buffer (a power of two).
    #[serde(default = "default_stream_capacity")]
    pub stream_capacity: Spanned<usize>,
    /// Pin each core's thread to its `cpu`.
    #[serde(default = "default_true")]
    pub pin: bool,
    /// Idle strategy: idle iterations spent spinning (lowest wake-up latency, burns CPU)...
    #[serde(default = "default_idle_spins")]
    pub idle_spins: u32,
    /// ...then yielding the CPU, before the core parks in epoll (0% CPU).
    #[serde(default = "default_idle_yields")]
    pub idle_yields: u32,
    /// `"explicit"` (default: every [[core]] lists its nuklei) or `"auto"` (the planner does).
    pub placement: Option<Spanned<PlacementMode>>,
    /// With placement = "auto": this many unpinned cores (instead of [[core]] or `cpus`).
    pub cores: Option<Spanned<usize>>,
    /// With placement = "auto": one core per listed cpu, pinned (instead of [[core]] or `cores`).
    pub cpus: Option<Spanned<Vec<usize>>>,
    /// Runtime re-plan (opt-in): every this many milliseconds, compare the cores' measured cost
    /// per unit of work and move new connections away from a much costlier core (see
    /// `replan.rs`). 0 (default): off.
    #[serde(default = "default_replan")]
    pub replan_interval_ms: Spanned<u64>,
    /// For the planner: how many client connections carry the load at once (default: many).
    /// With fewer connections than cores, a split by connection cannot use every core, and a
    /// tcp split by direction may win.
    pub connections: Option<Spanned<usize>>,
    /// Log lines written per call site (cause) and window at INFO and above, the rest counted
    /// and summarised (see `logging.rs`); 0: no limit.
    #[serde(default = "default_log_burst")]
    pub log_burst: Spanned<u64>,
    /// The window of `log_burst`, in milliseconds.
    #[serde(default = "default_log_window_ms")]
    pub log_window_ms: Spanned<u64>,
    /// Private resident memory above which new connections are refused and the largest
    /// connection buffers shed; 0: three quarters of the machine's (or cgroup's) memory.
    #[serde(default = "default_zero")]
    pub max_memory_bytes: Spanned<u64>,
    /// Graceful stop (SIGTERM): how long in-flight requests may take before the rest is cut.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: Spanned<u64>,
}

fn default_zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

fn default_drain_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

fn default_log_burst() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

fn default_log_window_ms() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

fn default_replan() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementMode {
    Explicit,
    Auto,
}

impl Default for ReaktorSection {
    fn default() -> Self {
        ReaktorSection {
            stream_dir: None,
            stream_capacity: Spanned::new(0..0, default_stream_capacity_value()),
            pin: true,
            idle_spins: default_idle_spins(),
            idle_yields: default_idle_yields(),
            placement: None,
            replan_interval_ms: default_replan(),
            cores: None,
            cpus: None,
            connections: None,
            log_burst: default_log_burst(),
            log_window_ms: default_log_window_ms(),
            max_memory_bytes: default_zero(),
            drain_timeout_ms: default_drain_timeout_ms(),
        }
    }
}

fn default_stream_capacity_value() -> usize {
    16 << 20
}

fn default_stream_capacity() -> Spanned<usize> {
    Spanned::new(0..0, default_stream_capacity_value())
}

fn default_true() -> bool {
    true
}

fn default_idle_spins() -> u32 {
    64
}

fn default_idle_yields() -> u32 {
    16
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: String,
    pub address: Spanned<String>,
    /// Nuklei from the network inwards, starting with a kind that faces the network: e.g.
    /// `["tcp", "http"]`.
    pub chain: Spanned<Vec<String>>,
    #[serde(default = "default_backlog")]
    pub backlog: i32,
}

fn default_backlog() -> i32 {
    1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreSection {
    /// CPU to pin this core's thread to; omitted: not pinned.
    pub cpu: Option<Spanned<usize>>,
    /// Omitted only with placement = "auto" (span 0..0 marks it missing).
    #[serde(default = "no_nuklei")]
    pub nuklei: Spanned<Vec<String>>,
}

fn no_nuklei() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

/// In a [[core]] list: the output half (socket writes) of a tcp instance, which then only
/// accepts and reads. The k-th `tcp.out` of the file pairs with the k-th `tcp`.
pub const TCP_OUT: &str = "tcp.out";

/// Each `tcp.out` needs a `tcp` to pair with, on another core (splitting the directions onto
/// one core only adds the hand-over between them).
pub fn validate_direction_split(
    topology: &Topology,
    invalid: &dyn Fn(Option<std::ops::Range<usize>>, String) -> TopologyError,
) -> Result<(), TopologyError> {
    let mut tcp_cores = Vec::new();
    let mut outs = Vec::new();
    for (core, section) in topology.cores.iter().enumerate() {
        for kind in section.nuklei.get_ref() {
            if kind == "tcp" {
                tcp_cores.push(core);
            } else if kind == TCP_OUT {
                outs.push((core, section.nuklei.span()));
            }
        }
    }
    for (k, (core, span)) in outs.into_iter().enumerate() {
        match tcp_cores.get(k) {
            None => {
                return Err(invalid(
                    Some(span),
                    format!("`{TCP_OUT}` number {} has no tcp instance to pair with: the k-th `{TCP_OUT}` runs the socket writes of the k-th `tcp`, and the topology places {} tcp instance(s); remove this `{TCP_OUT}` or add a tcp", k + 1, tcp_cores.len()),
                ))
            }
            Some(&tcp_core) if tcp_core == core => {
                return Err(invalid(
                    Some(span),
                    format!("`{TCP_OUT}` number {} pairs with the tcp instance on the same core ({core}): splitting a tcp instance by direction only helps across cores; put `{TCP_OUT}` on another [[core]] or remove it", k + 1),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A table of the file that belongs to a kind, with the span of its name.
struct RawTable<'t> {
    key_span: Range<usize>,
    value: Spanned<DeValue<'t>>,
}

/// The tables of the file that belong to kinds, until each kind takes its own: top-level
/// sections (`[http]`, `[[http.route]]`) and per-listener tables (`[listener.tls]`).
pub struct KindTables<'t> {
    top: BTreeMap<String, RawTable<'t>>,
    listeners: Vec<BTreeMap<String, RawTable<'t>>>,
}

fn deserialize<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    invalid: Invalid<'_>,
) -> Result<T, TopologyError> {
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| invalid(e.span(), e.message().to_owned()))
}

impl KindTables<'_> {
    /// Takes the top-level section `[name]` (default if absent).
    pub fn section<T: DeserializeOwned + Default>(
        &mut self,
        name: &str,
        invalid: Invalid<'_>,
    ) -> Result<T, TopologyError> {
        match self.top.remove(name) {
            Some(table) => deserialize(table.value, invalid),
            None => Ok(T::default()),
        }
    }

    /// Takes `[listener.name]` of every listener, in listener order.
    pub fn listener_tables<T: DeserializeOwned>(
        &mut self,
        name: &str,
        invalid: Invalid<'_>,
    ) -> Result<Vec<Option<Spanned<T>>>, TopologyError> {
        self.listeners
            .iter_mut()
            .map(|tables| match tables.remove(name) {
                Some(table) => deserialize(table.value, invalid).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// A table no kind took: (its name, where, whether it is in a listener).
    pub fn leftover(&self) -> Option<(&str, Range<usize>, bool)> {
        if let Some((name, table)) = self.top.iter().next() {
            return Some((name, table.key_span.clone(), false));
        }
        self.listeners
            .iter()
            .flat_map(|tables| tables.iter())
            .next()
            .map(|(name, table)| (name.as_str(), table.key_span.clone(), true))
    }
}

/// The parsed settings of every kind, one value per type (a kind's section type).
#[derive(Default)]
pub struct Sections(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Sections {
    pub fn insert<T: Any + Send + Sync>(&mut self, section: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(section));
    }

    /// The settings stored as `T`. Every registered kind loads its settings before anything
    /// asks, so a missing one is a bug in the kind's `load`.
    pub fn get<T: Any>(&self) -> &T {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|s| s.downcast_ref())
            .unwrap_or_else(|| panic!("no {} was loaded", std::any::type_name::<T>()))
    }
}

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sections({} kinds)", self.0.len())
    }
}

/// A topology and where it came from, with every kind's settings.
#[derive(Debug)]
pub struct LoadedTopology {
    pub path: PathBuf,
    /// The file's text, for the line and column of errors found after parsing.
    pub text: String,
    pub topology: Topology,
    pub listener_addresses: Vec<SocketAddr>,
    pub sections: Sections,
    /// `[cluster]`, checked; `None`: the reaktor runs alone.
    pub cluster: Option<Cluster>,
}

impl LoadedTopology {
    /// The settings a kind stored as `T` (its section).
    pub fn section<T: Any>(&self) -> &T {
        self.sections.get()
    }

    /// An error at `span` of the file.
    pub fn invalid(&self, span: Option<Range<usize>>, message: String) -> TopologyError {
        invalid_at(&self.path, &self.text, span, message)
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// An error at `span` of `text`, the contents of the file at `path`.
pub fn invalid_at(
    path: &Path,
    text: &str,
    span: Option<Range<usize>>,
    message: String,
) -> TopologyError {
    let (line, column) = position(text, span.map_or(0, |s| s.start));
    TopologyError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// Reads a topology file's text.
pub fn read(path: &Path) -> Result<String, TopologyError> {
    std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Moves the tables of `table` whose names are not in `own` out, for the kinds.
fn kind_tables<'t>(table: &mut DeTable<'t>, own: &[&str]) -> BTreeMap<String, RawTable<'t>> {
    let names: Vec<String> = table
        .keys()
        .map(|k| k.get_ref().to_string())
        .filter(|k| !own.contains(&k.as_str()))
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (key, value) = table.remove_entry(name.as_str())?;
            Some((
                name,
                RawTable {
                    key_span: key.span(),
                    value,
                },
            ))
        })
        .collect()
}

/// Parses the reaktor's own sections and sets the kinds' tables aside; checks what needs
/// neither placement nor kinds.
pub fn parse<'t>(
    path: &Path,
    text: &'t str,
) -> Result<(LoadedTopology, KindTables<'t>), TopologyError> {
    let invalid =
        |span: Option<Range<usize>>, message: String| invalid_at(path, text, span, message);
    let root = DeTable::parse(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
    let (span, mut table) = (root.span(), root.into_inner());
    let top = kind_tables(&mut table, &OWN_SECTIONS);
    let mut listeners = Vec::new();
    if let Some(list) = table.get_mut("listener") {
        if let DeValue::Array(array) = list.get_mut() {
            for listener in array.iter_mut() {
                if let DeValue::Table(t) = listener.get_mut() {
                    listeners.push(kind_tables(t, &OWN_LISTENER_KEYS));
                }
            }
        }
    }
    let topology = Topology::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
        .map_err(|e| invalid(e.span(), e.message().to_owned()))?;
    let replan = &topology.reaktor.replan_interval_ms;
    if *replan.get_ref() != 0 && !(100..=3_600_000).contains(replan.get_ref()) {
        return Err(invalid(
            Some(replan.span()),
            format!(
                "replan_interval_ms {} must be 0 (off) or between 100 and 3600000",
                replan.get_ref()
            ),
        ));
    }
    for (key, value, range) in [
        ("log_burst", &topology.reaktor.log_burst, 0..=1_000_000),
        (
            "log_window_ms",
            &topology.reaktor.log_window_ms,
            100..=3_600_000,
        ),
        (
            "drain_timeout_ms",
            &topology.reaktor.drain_timeout_ms,
            0..=3_600_000,
        ),
    ] {
        if !range.contains(value.get_ref()) {
            return Err(invalid(
                Some(value.span()),
                format!(
                    "{key} {} must be between {} and {}",
                    value.get_ref(),
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    let memory = &topology.reaktor.max_memory_bytes;
    if *memory.get_ref() != 0 && *memory.get_ref() < 16 << 20 {
        return Err(invalid(
            Some(memory.span()),
            format!(
                "max_memory_bytes {} must be 0 (three quarters of the machine's memory) or at least 16777216",
                memory.get_ref()
            ),
        ));
    }
    if let Some(connections) = &topology.reaktor.connections {
        if !(1..=1 << 24).contains(connections.get_ref()) {
            return Err(invalid(
                Some(connections.span()),
                format!(
                    "connections {} must be between 1 and 16777216: the number of client connections that carry the load at once",
                    connections.get_ref()
                ),
            ));
        }
    }
    let capacity = &topology.reaktor.stream_capacity;
    if !capacity.get_ref().is_power_of_two() || !(64 * 1024..=1 << 30).contains(capacity.get_ref())
    {
        return Err(invalid(
            Some(capacity.span()),
            format!(
                "stream_capacity {} must be a power of two between 65536 and 1073741824 bytes",
                capacity.get_ref()
            ),
        ));
    }
    let mut listener_addresses = Vec::new();
    for listener in &topology.listeners {
        let address: SocketAddr = listener.address.get_ref().parse().map_err(|_| {
            invalid(
                Some(listener.address.span()),
                format!(
                    "listener `{}`: `{}` is not an IP address with a port, e.g. 127.0.0.1:8080",
                    listener.name,
                    listener.address.get_ref()
                ),
            )
        })?;
        listener_addresses.push(address);
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let cluster = match &topology.cluster {
        Some(section) => Some(crate::cluster::check(section.get_ref(), base, &invalid)?),
        None => None,
    };
    let tables = KindTables { top, listeners };
    Ok((
        LoadedTopology {
            path: path.to_owned(),
            text: text.to_owned(),
            topology,
            listener_addresses,
            sections: Sections::default(),
            cluster,
        },
        tables,
    ))
}
