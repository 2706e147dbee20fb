use nukleus_http::request::HttpLimits;
use nukleus_http::{HttpConfig, HttpNukleus, Route};
use streams::{Nukleus, PeerLink};

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::LoadedTopology;

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    let http = &loaded.topology.http;
    let config = HttpConfig {
        routes: http
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.path.clone(),
                to: r.to.get_ref().clone(),
                key_segment: r.key_segment(),
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
        ..HttpConfig::default()
    };
    Ok(Box::new(HttpNukleus::new(
        config,
        instance.core,
        instance.index,
        links,
    )))
}
