//! The `http` kind: HTTP/1.1 over a connection kind (tcp or tls); each request becomes an
//! exchange with the kind its `[[http.route]]` names. Settings: `[http]`.

use nukleus_http::ext::{RequestHead, ResponseHead};
use nukleus_http::request::HttpLimits;
use nukleus_http::{HttpConfig, HttpNukleus, Route};
use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{preview, BoxedNukleus, Build, Check, Kind, RouteSection, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections, TCP_OUT};

/// The `http` kind's declaration.
pub struct Http;

impl Kind for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn about(&self) -> &'static str {
        "HTTP/1.1: keep-alive, pipelining, chunked bodies, 100-continue, limits, upgrades; routes requests by path"
    }
    fn default_cost(&self) -> f64 {
        0.7
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::Connection, Carries::SecureConnection]
    }
    fn offers(&self) -> Option<Carries> {
        Some(Carries::HttpExchanges)
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let http = tables.section::<HttpSection>(self.name(), invalid)?;
        // Saturating: a max_header_bytes near usize::MAX overflowed the product (found by
        // fuzzing) and, wrapped in a release build, passed.
        if (http.window as usize) < http.max_header_bytes.saturating_mul(2) {
            return Err(invalid(None, format!(
                "[http] window ({}) must be at least twice max_header_bytes ({}), so a full request head always fits",
                http.window, http.max_header_bytes
            )));
        }
        let buffered = &http.max_buffered_bytes;
        if !(http.window as usize..=1 << 30).contains(buffered.get_ref()) {
            return Err(invalid(
                Some(buffered.span()),
                format!(
                    "[http] max_buffered_bytes {} must be between window ({}) and 1073741824",
                    buffered.get_ref(),
                    http.window
                ),
            ));
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
        sections.insert(http);
        Ok(())
    }
    fn stream_needs(&self, loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let http = loaded.section::<HttpSection>();
        vec![
            StreamNeed::Window {
                setting: format!("[http] window = {}", http.window),
                bytes: http.window as usize,
            },
            // A request head goes to the application whole, in the BEGIN's extension.
            StreamNeed::Record {
                setting: format!("[http] max_header_bytes = {}", http.max_header_bytes),
                bytes: streams::layout::RECORD_HEADER_LENGTH
                    + streams::frame::BEGIN_EXTENSION_OFFSET
                    + http.max_header_bytes,
            },
        ]
    }
    fn validate(&self, check: &Check<'_>) -> Result<(), TopologyError> {
        for route in &check.loaded.section::<HttpSection>().routes {
            if !check.placed(route.to.get_ref()) || route.to.get_ref() == TCP_OUT {
                return Err(check.error(
                    Some(route.to.span()),
                    format!(
                        "route `{}`: nukleus `{}` is not placed on any [[core]]",
                        route.path,
                        route.to.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }
    fn routes<'a>(&self, loaded: &'a LoadedTopology) -> &'a [RouteSection] {
        &loaded.section::<HttpSection>().routes
    }
    fn describe_begin(&self, initial: bool, extension: &[u8]) -> Option<String> {
        if initial {
            RequestHead::parse(extension).map(|h| format!("request {}", request_summary(&h)))
        } else {
            ResponseHead::parse(extension).map(|h| format!("response {}", response_summary(&h)))
        }
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        let http = build.loaded.section::<HttpSection>();
        let config = HttpConfig {
            routes: http
                .routes
                .iter()
                .map(|r| Route {
                    prefix: r.path.clone(),
                    to: r.to.get_ref().clone(),
                    key_segment: r.key_segment(build.kinds),
                })
                .collect(),
            limits: HttpLimits {
                max_header_bytes: http.max_header_bytes,
                max_headers: http.max_headers,
                max_body_bytes: http.max_body_bytes,
                max_pipelined: http.max_pipelined,
            },
            window: http.window,
            idle_timeout: std::time::Duration::from_millis(http.idle_timeout_ms),
            request_timeout: std::time::Duration::from_millis(http.request_timeout_ms),
            max_buffered_bytes: *http.max_buffered_bytes.get_ref(),
        };
        Ok(Box::new(HttpNukleus::new(
            config,
            build.instance.core,
            build.instance.index,
            build.links,
        )))
    }
}

/// A request head in one line: method, target, version and the first headers.
pub fn request_summary(head: &RequestHead<'_>) -> String {
    let mut out = format!(
        "{} {} HTTP/1.{}",
        head.method, head.target, head.minor_version
    );
    for (name, value) in head.raw_headers().take(8) {
        out.push_str(&format!(
            " {}: {}",
            String::from_utf8_lossy(name),
            preview(value, 60)
        ));
    }
    out
}

fn response_summary(head: &ResponseHead<'_>) -> String {
    let mut out = format!("{}", head.status);
    for (name, value) in head.raw_headers().take(8) {
        out.push_str(&format!(
            " {}: {}",
            String::from_utf8_lossy(name),
            preview(value, 60)
        ));
    }
    out
}

/// `[http]`: limits, timeouts, window and `[[http.route]]`s.
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
    #[serde(default = "default_http_window")]
    pub window: u32,
    /// Response bytes one connection may hold for a client that does not read them.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: Spanned<usize>,
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
            window: default_http_window(),
            max_buffered_bytes: default_max_buffered_bytes(),
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

fn default_http_window() -> u32 {
    65536
}

fn default_max_buffered_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 128 * 1024)
}
