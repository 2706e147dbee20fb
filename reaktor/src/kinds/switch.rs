//! The `switch` kind: the port switch (BYPSS) behind http (REST, Server-Sent Events) and ws
//! (WebSocket), configured by the `[switch]` section of the topology.

use std::sync::Arc;

use nukleus_switch::limits::Limits;
use nukleus_switch::{ClusterGateConfig, Config, SwitchNukleus, SwitchNukleusConfig, TokenGrant};
use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Check, Kind, Partitioning, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `switch` kind's declaration.
pub struct Switch;

impl Kind for Switch {
    fn name(&self) -> &'static str {
        "switch"
    }
    fn about(&self) -> &'static str {
        "the port switch (BYPSS): REST and SSE behind http, WaitMsg behind ws; instances shard ports and home nodes"
    }
    fn default_cost(&self) -> f64 {
        1.0
    }
    /// Ports by name hash, nodes by id hash: a route hashes the node id, path segment 2 of
    /// `/v1/nodes/{node}/...` and `/v1/ws/{node}`, to reach the node's home instance.
    fn partitioning(&self) -> Partitioning {
        Partitioning::ByKey {
            route_key_segment: 2,
        }
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges, Carries::WsMessages]
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let section = tables.section::<SwitchSection>(self.name(), invalid)?;
        check_section(&section, invalid)?;
        sections.insert(section);
        Ok(())
    }
    fn stream_needs(&self, loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let window = *loaded.section::<SwitchSection>().window.get_ref();
        vec![StreamNeed::Window {
            setting: format!("[switch] window = {window}"),
            bytes: window as usize,
        }]
    }
    fn validate(&self, check: &Check<'_>) -> Result<(), TopologyError> {
        let cores: Vec<_> = check
            .loaded
            .topology
            .cores
            .iter()
            .filter(|c| c.nuklei.get_ref().iter().any(|k| k == self.name()))
            .collect();
        if cores.iter().any(|c| {
            c.nuklei
                .get_ref()
                .iter()
                .filter(|k| *k == self.name())
                .count()
                > 1
        }) {
            return Err(check.error(
                cores.first().map(|c| c.nuklei.span()),
                "`switch` is listed twice on one core".into(),
            ));
        }
        if check.loaded.cluster.is_some() && cores.len() > 1 {
            // Fencing tokens are ordered by the one instance that grants every port; across
            // instances a port's grants could complete out of order.
            return Err(check.error(
                cores.get(1).map(|c| c.nuklei.span()),
                "with [cluster] the switch runs as one instance (list `switch` on one [[core]]): a master's fencing tokens are issued in grant order by one instance; several instances per member are not supported yet".into(),
            ));
        }
        Ok(())
    }
    fn watches_liveness(&self) -> bool {
        // A receiving connection whose node does not relet within lease_ms is closed (4001).
        true
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        self::build(build)
    }
}

/// `[switch]`: lease, limits and bearer tokens of the port switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSection {
    /// A node that does not relet within this many milliseconds goes offline.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: Spanned<u64>,
    /// Port-table shards inside the switch when it runs as one instance. With `switch` on
    /// several cores, each instance is one shard of the port table (by port-name hash) and
    /// the home of the nodes whose id hashes to it; this setting is then not used.
    #[serde(default = "default_shards")]
    pub shards: Spanned<usize>,
    /// Window granted for request bodies and WebSocket messages.
    #[serde(default = "default_window")]
    pub window: Spanned<u32>,
    /// Largest REST request body, bytes (else 413).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Largest WebSocket message, bytes (else the socket is closed with 1009).
    #[serde(default = "default_max_request_bytes")]
    pub max_message_bytes: usize,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default, rename = "token")]
    pub tokens: Vec<Spanned<TokenSection>>,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection {
            lease_ms: default_lease_ms(),
            shards: default_shards(),
            window: default_window(),
            max_request_bytes: 8 << 20,
            max_message_bytes: 8 << 20,
            limits: LimitsSection::default(),
            tokens: Vec::new(),
        }
    }
}

fn default_lease_ms() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}
fn default_shards() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}
fn default_window() -> Spanned<u32> {
    Spanned::new(0..0, 65536)
}
fn default_max_request_bytes() -> usize {
    8 << 20
}

/// `[switch.limits]`: every field optional, defaults from [`Limits::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_port_name_len: Option<Spanned<usize>>,
    pub max_ports_per_request: Option<Spanned<usize>>,
    pub max_ports_per_node: Option<Spanned<usize>>,
    pub max_body_len: Option<Spanned<usize>>,
    pub max_queued_bytes: Option<Spanned<usize>>,
    pub max_messages_per_request: Option<Spanned<usize>>,
    pub max_nodes_per_request: Option<Spanned<usize>>,
    pub max_node_id_len: Option<Spanned<usize>>,
    pub max_address_len: Option<Spanned<usize>>,
    /// Events each switch instance keeps for watches to resume from (0: none).
    pub watch_history: Option<Spanned<usize>>,
    pub max_watches_per_node: Option<Spanned<usize>>,
    /// Node-less watchers (`/v1/watch`) open at once, over every switch instance.
    pub max_watchers: Option<Spanned<usize>>,
    /// Node-less watchers open at once with one token.
    pub max_watchers_per_token: Option<Spanned<usize>>,
    /// Most entries in one page of a listing.
    pub max_page: Option<Spanned<usize>>,
    /// How long an acknowledged SendMsg waits for acknowledgements, ms.
    pub ack_timeout_ms: Option<Spanned<usize>>,
}

/// `[[switch.token]]`: a bearer token and what it may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    pub token: String,
    /// Node ids the token may act for (WaitMsg, Relet, RegPort, UnRegPort).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// May read metrics, and watch every port and node without being a node.
    #[serde(default)]
    pub admin: bool,
    /// Prefixes of the port names a node-less watcher with this token may watch (`""`: all).
    #[serde(default)]
    pub watch_ports: Vec<String>,
    /// Prefixes of the node ids a node-less watcher with this token may watch (`""`: all).
    #[serde(default)]
    pub watch_nodes: Vec<String>,
}

impl LimitsSection {
    /// The limits that must be at least 1 (`watch_history` may be 0: no history).
    fn fields(&self) -> [(&'static str, &Option<Spanned<usize>>); 14] {
        [
            ("max_port_name_len", &self.max_port_name_len),
            ("max_ports_per_request", &self.max_ports_per_request),
            ("max_ports_per_node", &self.max_ports_per_node),
            ("max_body_len", &self.max_body_len),
            ("max_queued_bytes", &self.max_queued_bytes),
            ("max_messages_per_request", &self.max_messages_per_request),
            ("max_nodes_per_request", &self.max_nodes_per_request),
            ("max_node_id_len", &self.max_node_id_len),
            ("max_address_len", &self.max_address_len),
            ("max_watches_per_node", &self.max_watches_per_node),
            ("max_watchers", &self.max_watchers),
            ("max_watchers_per_token", &self.max_watchers_per_token),
            ("max_page", &self.max_page),
            ("ack_timeout_ms", &self.ack_timeout_ms),
        ]
    }

    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let get = |v: &Option<Spanned<usize>>, default: usize| {
            v.as_ref().map_or(default, |s| *s.get_ref())
        };
        Limits {
            max_port_name_len: get(&self.max_port_name_len, d.max_port_name_len),
            max_ports_per_request: get(&self.max_ports_per_request, d.max_ports_per_request),
            max_ports_per_node: get(&self.max_ports_per_node, d.max_ports_per_node),
            max_body_len: get(&self.max_body_len, d.max_body_len),
            max_queued_bytes: get(&self.max_queued_bytes, d.max_queued_bytes),
            max_messages_per_request: get(
                &self.max_messages_per_request,
                d.max_messages_per_request,
            ),
            max_nodes_per_request: get(&self.max_nodes_per_request, d.max_nodes_per_request),
            max_node_id_len: get(&self.max_node_id_len, d.max_node_id_len),
            max_address_len: get(&self.max_address_len, d.max_address_len),
            watch_history: get(&self.watch_history, d.watch_history),
            max_watches_per_node: get(&self.max_watches_per_node, d.max_watches_per_node),
            max_watchers: get(&self.max_watchers, d.max_watchers),
            max_watchers_per_token: get(&self.max_watchers_per_token, d.max_watchers_per_token),
            max_page: get(&self.max_page, d.max_page),
            ack_timeout_ms: get(&self.ack_timeout_ms, d.ack_timeout_ms as usize) as u64,
        }
    }
}

/// Checks `[switch]` on its own; errors carry the offending span.
fn check_section(s: &SwitchSection, invalid: Invalid<'_>) -> Result<(), TopologyError> {
    if !(100..=86_400_000).contains(s.lease_ms.get_ref()) {
        return Err(invalid(
            Some(s.lease_ms.span()),
            format!(
                "[switch] lease_ms {} must be between 100 and 86400000 (one day)",
                s.lease_ms.get_ref()
            ),
        ));
    }
    if !(1..=4096).contains(s.shards.get_ref()) {
        return Err(invalid(
            Some(s.shards.span()),
            format!(
                "[switch] shards {} must be between 1 and 4096",
                s.shards.get_ref()
            ),
        ));
    }
    if *s.window.get_ref() < 4096 {
        return Err(invalid(
            Some(s.window.span()),
            format!(
                "[switch] window {} must be at least 4096 bytes",
                s.window.get_ref()
            ),
        ));
    }
    for (name, value) in s.limits.fields() {
        if let Some(v) = value {
            if *v.get_ref() == 0 {
                return Err(invalid(
                    Some(v.span()),
                    format!("[switch.limits] {name} must be at least 1"),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &s.tokens {
        let token = t.get_ref();
        if token.token.trim().is_empty()
            || token
                .token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                Some(t.span()),
                "[[switch.token]] token must be non-empty, without spaces or control characters"
                    .into(),
            ));
        }
        if !seen.insert(token.token.as_str()) {
            return Err(invalid(
                Some(t.span()),
                "[[switch.token]] this token is declared twice".into(),
            ));
        }
        if token.nodes.is_empty()
            && !token.admin
            && token.watch_ports.is_empty()
            && token.watch_nodes.is_empty()
        {
            return Err(invalid(
                Some(t.span()),
                "[[switch.token]] grants nothing: give it `nodes = [\"...\"]`, `watch_ports` / `watch_nodes` prefixes and/or `admin = true`".into(),
            ));
        }
        if token.nodes.iter().any(String::is_empty) {
            return Err(invalid(
                Some(t.span()),
                "[[switch.token]] node ids must not be empty".into(),
            ));
        }
    }
    Ok(())
}

/// The bearer tokens of `[[switch.token]]` and what each may do. The operator console accepts
/// the admin ones, like the switch's `/v1/metrics`.
pub fn token_grants(loaded: &LoadedTopology) -> Vec<TokenGrant> {
    loaded
        .section::<SwitchSection>()
        .tokens
        .iter()
        .map(|t| TokenGrant {
            token: t.get_ref().token.clone(),
            nodes: t.get_ref().nodes.clone(),
            admin: t.get_ref().admin,
            watch_ports: t.get_ref().watch_ports.clone(),
            watch_nodes: t.get_ref().watch_nodes.clone(),
        })
        .collect()
}

/// This start of the process (see `nukleus_switch::Config::incarnation`): microseconds since
/// the UNIX epoch, taken once so every switch instance of the process agrees.
fn incarnation() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    })
}

/// The node-less watchers open in this process, counted over every switch instance (their
/// limits are the whole switch's, wherever a watcher's connection landed).
fn watcher_counts() -> Arc<nukleus_switch::nukleus::WatcherCounts> {
    static COUNTS: std::sync::OnceLock<Arc<nukleus_switch::nukleus::WatcherCounts>> =
        std::sync::OnceLock::new();
    COUNTS.get_or_init(Arc::default).clone()
}

/// The switch's part of a reload: the tokens of the reloaded topology, published to this
/// instance; and how it asks for a reload (`POST /v1/admin/reload`).
fn reloadable_tokens(build: &Build<'_>) -> nukleus_switch::nukleus::TokenReload {
    let updates = Arc::new(nukleus_switch::auth::TokenUpdates::default());
    let (publish, doorbell) = (updates.clone(), build.doorbell.clone());
    build.reloads.register(Box::new(move |loaded| {
        let grants = token_grants(loaded);
        let n = grants.len();
        publish.publish(grants);
        // An idle core sleeps until rung: it applies the tokens now.
        doorbell.ring_always();
        format!("switch: {n} tokens")
    }));
    let (reloads, published) = (build.reloads.clone(), updates.clone());
    let trigger: nukleus_switch::auth::ReloadTrigger = Arc::new(move || {
        reloads
            .reload()
            .map(|_| published.latest().len())
            .map_err(|e| e.to_string())
    });
    nukleus_switch::nukleus::TokenReload { updates, trigger }
}

fn build(build: Build<'_>) -> Result<BoxedNukleus, StartError> {
    let s = build.loaded.section::<SwitchSection>();
    if s.tokens.is_empty() {
        tracing::warn!(
            "[switch] declares no [[switch.token]]: every switch call will be refused with 401"
        );
    }
    let config = SwitchNukleusConfig {
        switch: Config {
            lease_ms: *s.lease_ms.get_ref(),
            shards: *s.shards.get_ref(),
            limits: s.limits.limits(),
            incarnation: incarnation(),
        },
        tokens: token_grants(build.loaded),
        window: *s.window.get_ref(),
        max_request_bytes: s.max_request_bytes,
        max_message_bytes: s.max_message_bytes,
        cluster: match (&build.loaded.cluster, build.mastership) {
            (Some(cluster), Some(mastership)) => {
                mastership.watch(build.doorbell.clone());
                Some(ClusterGateConfig {
                    mastership: mastership.clone(),
                    me: cluster.id,
                    members: cluster
                        .members
                        .iter()
                        .map(|m| (m.id, m.api.clone()))
                        .collect(),
                    // A heartbeat: a new master serves within a few of them once elected, and a
                    // client polling at this pace adds at most one to its failover.
                    retry_no_master_ms: cluster.election.heartbeat.as_millis() as u64,
                    retry_elected_ms: cluster.election.heartbeat.as_millis() as u64,
                })
            }
            _ => None,
        },
        reload: Some(reloadable_tokens(&build)),
        watchers: watcher_counts(),
    };
    Ok(Box::new(SwitchNukleus::new(
        config,
        build.instance.core,
        build.instance.index,
        build.links,
    )))
}
