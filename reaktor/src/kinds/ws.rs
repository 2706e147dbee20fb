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
//! idle_timeout_ms = 60000       # no bytes either way this long: close 1001; 0: never
//! protocols = ["chat"]          # subprotocols, in order of preference
//!
//! [[ws.route]]
//! path = "/ws/echo"             # longest prefix wins; no match: 404
//! to = "echo"
//! ```

use std::time::Duration;

use nukleus_http::ext::RequestHead;
use nukleus_ws::{Route, WsConfig, WsNukleus};
use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Check, Kind, RouteSection, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `ws` kind's declaration.
pub struct Ws;

impl Kind for Ws {
    fn name(&self) -> &'static str {
        "ws"
    }
    fn about(&self) -> &'static str {
        "WebSocket (RFC 6455) over http upgrades: one message stream per socket to the kind its route names"
    }
    fn default_cost(&self) -> f64 {
        1.0
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges]
    }
    fn offers(&self) -> Option<Carries> {
        Some(Carries::WsMessages)
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let ws = tables.section::<WsSection>(self.name(), invalid)?;
        check_limits(&ws, invalid)?;
        sections.insert(ws);
        Ok(())
    }
    fn stream_needs(&self, loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let window = *loaded.section::<WsSection>().window.get_ref();
        vec![StreamNeed::Window {
            setting: format!("[ws] window = {window}"),
            bytes: window as usize,
        }]
    }
    fn validate(&self, check: &Check<'_>) -> Result<(), TopologyError> {
        validate(check)
    }
    fn routes<'a>(&self, loaded: &'a LoadedTopology) -> &'a [RouteSection] {
        &loaded.section::<WsSection>().routes
    }
    fn describe_begin(&self, initial: bool, extension: &[u8]) -> Option<String> {
        let b = nukleus_ws::app::BeginEx::parse(extension).filter(|_| initial)?;
        let head = RequestHead::parse(b.request_head)
            .map(|h| super::http::request_summary(&h))
            .unwrap_or_default();
        Some(format!(
            "websocket protocol={} {head}",
            b.protocol.unwrap_or("-")
        ))
    }
    fn describe_data(&self, extension: &[u8]) -> Option<&'static str> {
        match extension.first() {
            Some(&nukleus_ws::app::KIND_TEXT) => Some("text"),
            Some(&nukleus_ws::app::KIND_BINARY) => Some("binary"),
            _ => None,
        }
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        self::build(build)
    }
}

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
    /// An accepted connection with no bytes either way this long is closed; 0: never.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: Spanned<u64>,
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
            idle_timeout_ms: default_idle_timeout_ms(),
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
fn default_idle_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 60_000)
}

/// Checks the `[ws]` limits on their own.
fn check_limits(ws: &WsSection, invalid: Invalid<'_>) -> Result<(), TopologyError> {
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
    let idle = *ws.idle_timeout_ms.get_ref();
    if idle != 0 && !(100..=86_400_000).contains(&idle) {
        return Err(invalid(
            Some(ws.idle_timeout_ms.span()),
            format!("[ws] idle_timeout_ms {idle} must be 0 (never) or between 100 and 86400000 (one day)"),
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
    Ok(())
}

/// Checks the `[ws]` routes against the placed topology.
fn validate(check: &Check<'_>) -> Result<(), TopologyError> {
    let ws = check.loaded.section::<WsSection>();
    let invalid = check.invalid;
    let placed = |kind: &str| check.placed(kind);
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
        if check.kinds.kind(to).is_some_and(|k| k.offers().is_some()) {
            return Err(invalid(
                Some(route.to.span()),
                format!(
                    "ws route `{}`: `{to}` is not an application nukleus",
                    route.path
                ),
            ));
        }
    }
    if placed("ws") && !check.edges.iter().any(|(_, to)| to == "ws") {
        return Err(invalid(
            None,
            "`ws` is placed on a core but no [[http.route]] leads to it (add e.g. path = \"/ws\", to = \"ws\")".into(),
        ));
    }
    Ok(())
}

fn build(build: Build<'_>) -> Result<BoxedNukleus, StartError> {
    let ws = build.loaded.section::<WsSection>();
    let config = WsConfig {
        routes: ws
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.path.clone(),
                to: r.to.get_ref().clone(),
                key_segment: r.key_segment(build.kinds),
            })
            .collect(),
        protocols: ws.protocols.get_ref().clone(),
        limits: nukleus_ws::session::Config {
            max_frame_size: *ws.max_frame_size.get_ref(),
            max_message_size: *ws.max_message_size.get_ref(),
        },
        window: *ws.window.get_ref(),
        close_timeout: Duration::from_millis(*ws.close_timeout_ms.get_ref()),
        idle_timeout: match *ws.idle_timeout_ms.get_ref() {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        // Their connections' liveness is the application's (the switch's lease).
        idle_exempt: ws
            .routes
            .iter()
            .map(|r| r.to.get_ref())
            .filter(|to| build.kinds.kind(to).is_some_and(|k| k.watches_liveness()))
            .cloned()
            .collect(),
    };
    Ok(Box::new(WsNukleus::new(
        config,
        build.instance.core,
        build.instance.index,
        build.links,
    )))
}
