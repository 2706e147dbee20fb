//! The topology file: listeners, the nuklei on each core, limits. Errors name the file, the
//! line and the problem.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::kinds::KINDS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub reaktor: ReaktorSection,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerSection>,
    /// With `placement = "auto"` the planner fills in each core's nuklei.
    #[serde(default, rename = "core")]
    pub cores: Vec<CoreSection>,
    #[serde(default)]
    pub tcp: TcpSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub ws: crate::kinds::ws::WsSection,
    #[serde(default)]
    pub switch: crate::kinds::switch::SwitchSection,
    /// `[cost]`: declared per-request cost of a kind (and `hop`) for the planner.
    #[serde(default)]
    pub cost: std::collections::BTreeMap<String, Spanned<f64>>,
}

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
    /// Nuklei from the network inwards, starting with `tcp`: e.g. `["tcp", "http"]`.
    pub chain: Spanned<Vec<String>>,
    #[serde(default = "default_backlog")]
    pub backlog: i32,
    /// `[listener.tls]`: required when the chain contains "tls", refused otherwise.
    pub tls: Option<Spanned<TlsSection>>,
}

/// A TLS listener's settings; paths are relative to the topology file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key.
    pub key: PathBuf,
    /// PEM: the CA(s) that sign client certificates (needed unless client_auth = "off").
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuthSetting,
    /// ALPN protocols in order of preference.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Host names (SNI) served; empty: any.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Close connections whose handshake is not complete this long after accept (ms).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSetting {
    #[default]
    Off,
    Optional,
    Required,
}

fn default_alpn() -> Vec<String> {
    vec!["http/1.1".to_owned()]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSection {
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_window")]
    pub window: u32,
    /// Close a connection whose client takes no reply bytes for this long (milliseconds).
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
}

impl Default for TcpSection {
    fn default() -> Self {
        TcpSection {
            max_connections: default_max_connections(),
            window: default_window(),
            write_timeout_ms: default_write_timeout_ms(),
        }
    }
}

fn default_write_timeout_ms() -> u64 {
    60_000
}

fn default_max_connections() -> usize {
    4096
}

fn default_window() -> u32 {
    65536
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default = "default_max_pipelined")]
    pub max_pipelined: usize,
    /// Close keep-alive connections idle this long (milliseconds).
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Answer 408 to a request head not completed this long after its first byte.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_body_bytes: default_max_body_bytes(),
            max_pipelined: default_max_pipelined(),
            idle_timeout_ms: default_idle_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            window: default_window(),
            routes: Vec::new(),
        }
    }
}

fn default_max_header_bytes() -> usize {
    8192
}
fn default_max_headers() -> usize {
    64
}
fn default_max_body_bytes() -> u64 {
    8 << 20
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_max_pipelined() -> usize {
    32
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub path: String,
    pub to: Spanned<String>,
    /// Route by key: send each request to the instance of `to` that owns the hash of this
    /// path segment (0-based, percent-decoded), instead of the instance on the same core.
    /// Default: 2 for `to = "switch"` (the node id in `/v1/nodes/{node}/…` and
    /// `/v1/ws/{node}`, so a node's requests reach its home instance), none otherwise.
    #[serde(default)]
    pub key_segment: Option<usize>,
}

impl RouteSection {
    /// The path segment whose hash picks the target instance, if this route is keyed.
    pub fn key_segment(&self) -> Option<usize> {
        self.key_segment
            .or_else(|| (self.to.get_ref() == "switch").then_some(2))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A validated topology and where it came from.
#[derive(Debug)]
pub struct LoadedTopology {
    pub path: PathBuf,
    pub topology: Topology,
    pub listener_addresses: Vec<SocketAddr>,
    /// The planner's decisions when placement = "auto".
    pub auto_plan: Option<crate::planner::Plan>,
}

/// In a [[core]] list: the output half (socket writes) of a tcp instance, which then only
/// accepts and reads. The k-th `tcp.out` of the file pairs with the k-th `tcp`.
pub const TCP_OUT: &str = "tcp.out";

/// Each `tcp.out` needs a `tcp` to pair with, on another core (splitting the directions onto
/// one core only adds the hand-over between them).
fn validate_direction_split(
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

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

pub fn load(path: &Path) -> Result<LoadedTopology, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<LoadedTopology, TopologyError> {
    let invalid = |span: Option<Range<usize>>, message: String| {
        let (line, column) = position(text, span.map_or(0, |s| s.start));
        TopologyError::Invalid {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    };
    let mut topology: Topology =
        toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
    let auto_plan = crate::planner::apply(&mut topology, &invalid)?;

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
    if topology.cores.is_empty() {
        return Err(invalid(
            None,
            "no [[core]] sections: declare at least one core and the nuklei it runs".into(),
        ));
    }
    let mut placed = BTreeSet::new();
    for core in &topology.cores {
        if core.nuklei.get_ref().is_empty() {
            return Err(invalid(
                Some(core.nuklei.span()),
                "a core must run at least one nukleus".into(),
            ));
        }
        for kind in core.nuklei.get_ref() {
            if !KINDS.contains(&kind.as_str()) && kind != TCP_OUT {
                return Err(invalid(
                    Some(core.nuklei.span()),
                    format!(
                        "unknown nukleus kind `{kind}`; known kinds: {}, and `{TCP_OUT}` (the output half of a tcp instance split by direction)",
                        KINDS.join(", ")
                    ),
                ));
            }
            placed.insert(kind.clone());
        }
        if let Some(cpu) = &core.cpu {
            let available = std::thread::available_parallelism().map_or(1, |n| n.get());
            if *cpu.get_ref() >= available && topology.reaktor.pin {
                return Err(invalid(
                    Some(cpu.span()),
                    format!(
                        "cpu {} does not exist: this machine has cpus 0..{}",
                        cpu.get_ref(),
                        available - 1
                    ),
                ));
            }
        }
    }
    validate_direction_split(&topology, &invalid)?;
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
        let chain = listener.chain.get_ref();
        if chain.first().map(String::as_str) != Some("tcp") || chain.len() < 2 {
            return Err(invalid(
                Some(listener.chain.span()),
                format!("listener `{}`: chain must start with \"tcp\" and name the next nukleus, e.g. [\"tcp\", \"http\"]", listener.name),
            ));
        }
        let has_tls = chain.iter().any(|kind| kind == "tls");
        match &listener.tls {
            None if has_tls => {
                return Err(invalid(
                    Some(listener.chain.span()),
                    format!("listener `{}`: the chain contains \"tls\" but there is no [listener.tls] table with cert and key", listener.name),
                ))
            }
            Some(tls) if !has_tls => {
                return Err(invalid(
                    Some(tls.span()),
                    format!("listener `{}`: [listener.tls] is set but the chain has no \"tls\"; use e.g. [\"tcp\", \"tls\", \"http\"]", listener.name),
                ))
            }
            Some(tls) => {
                let settings = tls.get_ref();
                if settings.client_auth != ClientAuthSetting::Off && settings.client_ca.is_none() {
                    return Err(invalid(
                        Some(tls.span()),
                        format!("listener `{}`: client_auth = \"{}\" needs client_ca, a PEM file of the CA(s) that sign client certificates", listener.name, if settings.client_auth == ClientAuthSetting::Required { "required" } else { "optional" }),
                    ));
                }
                if settings.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
                    return Err(invalid(
                        Some(tls.span()),
                        format!("listener `{}`: alpn entries must be 1 to 255 bytes, e.g. \"http/1.1\"", listener.name),
                    ));
                }
            }
            None => {}
        }
        for kind in chain {
            if kind == TCP_OUT {
                return Err(invalid(
                    Some(listener.chain.span()),
                    format!("listener `{}`: `{TCP_OUT}` is the output half of a tcp instance and goes in a [[core]] list, not in a chain; the chain starts with \"tcp\"", listener.name),
                ));
            }
            if !placed.contains(kind) {
                return Err(invalid(
                    Some(listener.chain.span()),
                    format!(
                        "listener `{}`: nukleus `{kind}` is not placed on any [[core]]",
                        listener.name
                    ),
                ));
            }
        }
    }
    for route in &topology.http.routes {
        if !placed.contains(route.to.get_ref()) || route.to.get_ref() == TCP_OUT {
            return Err(invalid(
                Some(route.to.span()),
                format!(
                    "route `{}`: nukleus `{}` is not placed on any [[core]]",
                    route.path,
                    route.to.get_ref()
                ),
            ));
        }
    }
    let http = &topology.http;
    if (http.window as usize) < 2 * http.max_header_bytes {
        return Err(invalid(None, format!(
            "[http] window ({}) must be at least twice max_header_bytes ({}), so a full request head always fits",
            http.window, http.max_header_bytes
        )));
    }
    if http.max_headers > nukleus_http::request::MAX_HEADERS_CAP {
        return Err(invalid(
            None,
            format!(
                "[http] max_headers may be at most {}",
                nukleus_http::request::MAX_HEADERS_CAP
            ),
        ));
    }
    crate::kinds::switch::validate(&topology, &invalid)?;
    crate::kinds::ws::validate(&topology, &invalid)?;
    Ok(LoadedTopology {
        path: path.to_owned(),
        topology,
        listener_addresses,
        auto_plan,
    })
}
