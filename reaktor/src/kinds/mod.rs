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

pub type BoxedNukleus = Box<dyn Nukleus + Send>;

/// A tcp instance split by direction: the input half (for the tcp's core) and the output half
/// (for its `tcp.out` instance's core), each with the doorbell of the other's core.
pub fn build_tcp_split(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
    steering: Option<&std::sync::Arc<nukleus_tcp::Steering>>,
    input_doorbell: std::sync::Arc<streams::Doorbell>,
    output_doorbell: std::sync::Arc<streams::Doorbell>,
) -> Result<(BoxedNukleus, BoxedNukleus), StartError> {
    let tcp = tcp::build(loaded, instance, links, steering)?;
    let (input, output) = tcp.split_directions(Some(input_doorbell), Some(output_doorbell));
    Ok((Box::new(input), Box::new(output)))
}

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
    stats: &std::sync::Arc<crate::metrics::SharedStats>,
    steering: Option<&std::sync::Arc<nukleus_tcp::Steering>>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    match instance.kind.as_str() {
        "tcp" => Ok(Box::new(tcp::build(loaded, instance, links, steering)?)),
        "tls" => tls::build(loaded, instance, links),
        "http" => http::build(loaded, instance, links),
        "echo" => echo::build(loaded, instance, links),
        "ws" => ws::build(loaded, instance, links),
        "switch" => switch::build(loaded, instance, links),
        "metrics" => Ok(metrics::build(instance, links, stats)),
        crate::topology::TCP_OUT => {
            unreachable!("the runtime builds tcp.out from its tcp instance")
        }
        other => unreachable!("topology validation admits only known kinds, got {other}"),
    }
}
