use nukleus_echo::EchoNukleus;
use streams::{Nukleus, PeerLink};

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::LoadedTopology;

pub fn build(
    _loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    Ok(Box::new(EchoNukleus::new(instance.core, links)))
}
