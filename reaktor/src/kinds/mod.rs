//! The registry of nukleus kinds: how each kind is built from the topology. Adding a protocol
//! nukleus means a module here, a line in `build`, its name in `KINDS`, and (if it has
//! settings) a section in `topology::Topology`.

mod echo;
mod http;
mod metrics;
pub(crate) mod switch;
mod tcp;
mod tls;
pub(crate) mod ws;

use streams::{Nukleus, PeerLink};

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::LoadedTopology;

/// Nukleus kinds this build knows, as named in topology files.
pub const KINDS: &[&str] = &["tcp", "tls", "http", "echo", "ws", "switch", "metrics"];

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
    stats: &std::sync::Arc<crate::metrics::SharedStats>,
    steering: Option<&std::sync::Arc<nukleus_tcp::Steering>>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    match instance.kind.as_str() {
        "tcp" => tcp::build(loaded, instance, links, steering),
        "tls" => tls::build(loaded, instance, links),
        "http" => http::build(loaded, instance, links),
        "echo" => echo::build(loaded, instance, links),
        "ws" => ws::build(loaded, instance, links),
        "switch" => switch::build(loaded, instance, links),
        "metrics" => Ok(metrics::build(instance, links, stats)),
        other => unreachable!("topology validation admits only known kinds, got {other}"),
    }
}
