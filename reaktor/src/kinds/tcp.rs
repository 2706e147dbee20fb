use nukleus_tcp::{ListenerConfig, TcpConfig, TcpNukleus};
use streams::PeerLink;

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::LoadedTopology;

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
    steering: Option<&std::sync::Arc<nukleus_tcp::Steering>>,
) -> Result<TcpNukleus, StartError> {
    let topology = &loaded.topology;
    let listeners = topology
        .listeners
        .iter()
        .zip(&loaded.listener_addresses)
        .map(|(l, address)| ListenerConfig {
            name: l.name.clone(),
            address: *address,
            next: l.chain.get_ref()[1].clone(),
            backlog: l.backlog,
        })
        .collect();
    let config = TcpConfig {
        listeners,
        max_connections: topology.tcp.max_connections,
        window: topology.tcp.window,
        write_timeout: std::time::Duration::from_millis(topology.tcp.write_timeout_ms),
        ..TcpConfig::default()
    };
    let tcp = TcpNukleus::new(config, instance.core, instance.index, links)?;
    Ok(match steering {
        Some(steering) => tcp.with_steering(steering.clone(), usize::from(instance.index)),
        None => tcp,
    })
}
