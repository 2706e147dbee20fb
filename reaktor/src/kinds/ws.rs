//! The `ws` kind: WebSocket connections that http upgrades, one message stream each to the
//! application its `[[ws.route]]` names. Settings: the `[ws]` section.
//!
//! ```toml
//! [[http.route]]
//! path = "/ws"
//! to = "ws"
//!
//! [ws]
//! max_frame_size = 16777216     # client frame payload limit, else close 1009
//! max_message_size = 67108864   # client message limit, else close 1009
//! window = 65536                # bytes in flight per connection and direction
//! close_timeout_ms = 5000       # how long a close handshake waits for the other side
//! protocols = ["chat"]          # subprotocols, in order of preference
//!
//! [[ws.route]]
//! path = "/ws/echo"             # longest prefix wins; no match: 404
//! to = "echo"
//! ```

use std::ops::Range;
use std::time::Duration;

use nukleus_ws::{Route, WsConfig, WsNukleus};
use serde::Deserialize;
use streams::{Nukleus, PeerLink};
use toml::Spanned;

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::{LoadedTopology, RouteSection, Topology, TopologyError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSection {
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: Spanned<u64>,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Spanned<u64>,
    #[serde(default = "default_window")]
    pub window: Spanned<u32>,
    #[serde(default = "default_close_timeout_ms")]
    pub close_timeout_ms: Spanned<u64>,
    #[serde(default = "default_protocols")]
    pub protocols: Spanned<Vec<String>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
}

impl Default for WsSection {
    fn default() -> Self {
        WsSection {
            max_frame_size: default_max_frame_size(),
            max_message_size: default_max_message_size(),
            window: default_window(),
            close_timeout_ms: default_close_timeout_ms(),
            protocols: default_protocols(),
            routes: Vec::new(),
        }
    }
}

fn default_max_frame_size() -> Spanned<u64> {
    Spanned::new(0..0, nukleus_ws::session::Config::default().max_frame_size)
}
fn default_max_message_size() -> Spanned<u64> {
    Spanned::new(
        0..0,
        nukleus_ws::session::Config::default().max_message_size,
    )
}
fn default_window() -> Spanned<u32> {
    Spanned::new(0..0, 65536)
}
fn default_protocols() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn default_close_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 5000)
}

/// Checks the `[ws]` section against the rest of the topology.
pub fn validate(
    topology: &Topology,
    invalid: &dyn Fn(Option<Range<usize>>, String) -> TopologyError,
) -> Result<(), TopologyError> {
    let ws = &topology.ws;
    let placed = |kind: &str| {
        topology
            .cores
            .iter()
            .any(|c| c.nuklei.get_ref().iter().any(|k| k == kind))
    };
    let frame = *ws.max_frame_size.get_ref();
    let message = *ws.max_message_size.get_ref();
    if frame == 0 || frame > 1 << 31 {
        return Err(invalid(
            Some(ws.max_frame_size.span()),
            format!("[ws] max_frame_size {frame} must be between 1 and 2147483648 bytes"),
        ));
    }
    if message < frame {
        return Err(invalid(
            Some(ws.max_message_size.span()),
            format!("[ws] max_message_size {message} must be at least max_frame_size {frame}"),
        ));
    }
    if !(1024..=1 << 24).contains(ws.window.get_ref()) {
        return Err(invalid(
            Some(ws.window.span()),
            format!(
                "[ws] window {} must be between 1024 and 16777216 bytes",
                ws.window.get_ref()
            ),
        ));
    }
    if !(10..=600_000).contains(ws.close_timeout_ms.get_ref()) {
        return Err(invalid(
            Some(ws.close_timeout_ms.span()),
            format!(
                "[ws] close_timeout_ms {} must be between 10 and 600000",
                ws.close_timeout_ms.get_ref()
            ),
        ));
    }
    for p in ws.protocols.get_ref() {
        let token = !p.is_empty()
            && p.len() <= 255
            && p.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !token {
            return Err(invalid(
                Some(ws.protocols.span()),
                format!("[ws] protocol `{p}` is not an HTTP token of at most 255 characters"),
            ));
        }
    }
    for route in &ws.routes {
        let to = route.to.get_ref();
        if !route.path.starts_with('/') {
            return Err(invalid(
                Some(route.to.span()),
                format!("[[ws.route]] path `{}` must start with `/`", route.path),
            ));
        }
        if !placed(to) {
            return Err(invalid(
                Some(route.to.span()),
                format!(
                    "ws route `{}`: nukleus `{to}` is not placed on any [[core]]",
                    route.path
                ),
            ));
        }
        if matches!(to.as_str(), "tcp" | "tls" | "http" | "ws") {
            return Err(invalid(
                Some(route.to.span()),
                format!(
                    "ws route `{}`: `{to}` is not an application nukleus",
                    route.path
                ),
            ));
        }
    }
    if placed("ws") && !topology.http.routes.iter().any(|r| r.to.get_ref() == "ws") {
        return Err(invalid(
            None,
            "`ws` is placed on a core but no [[http.route]] leads to it (add e.g. path = \"/ws\", to = \"ws\")".into(),
        ));
    }
    Ok(())
}

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    let ws = &loaded.topology.ws;
    let config = WsConfig {
        routes: ws
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.path.clone(),
                to: r.to.get_ref().clone(),
                key_segment: r.key_segment(),
            })
            .collect(),
        protocols: ws.protocols.get_ref().clone(),
        limits: nukleus_ws::session::Config {
            max_frame_size: *ws.max_frame_size.get_ref(),
            max_message_size: *ws.max_message_size.get_ref(),
        },
        window: *ws.window.get_ref(),
        close_timeout: Duration::from_millis(*ws.close_timeout_ms.get_ref()),
        ..WsConfig::default()
    };
    Ok(Box::new(WsNukleus::new(
        config,
        instance.core,
        instance.index,
        links,
    )))
}
