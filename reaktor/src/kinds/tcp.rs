//! The `tcp` kind: sockets. It faces the network (listener chains start with it), accepts on
//! each `[[listener]]` address and hands every connection to the next kind of the chain.
//! Settings: `[tcp]`. Split by direction, its socket writes run on a `tcp.out` core.
//!
//! ```toml
//! [tcp]
//! max_connections = 4096      # per tcp instance; beyond it, accept-then-close
//! window = 65536              # reply bytes in flight per connection
//! write_timeout_ms = 60000    # close a connection whose client takes no reply bytes this long
//! accept_retry_ms = 100       # after accept failed (out of descriptors): retry this often
//! ```

use std::sync::Arc;
use std::time::Duration;

use nukleus_tcp::{ListenerConfig, TcpConfig, TcpNukleus};
use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Kind, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `tcp` kind's declaration.
pub struct Tcp;

impl Kind for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }
    fn about(&self) -> &'static str {
        "non-blocking sockets: accepts connections, reads and writes them within the windows"
    }
    fn default_cost(&self) -> f64 {
        6.5
    }
    fn accepts(&self) -> &'static [Carries] {
        &[]
    }
    fn offers(&self) -> Option<Carries> {
        Some(Carries::Connection)
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let tcp = tables.section::<TcpSection>(self.name(), invalid)?;
        check_limits(&tcp, invalid)?;
        sections.insert(tcp);
        Ok(())
    }
    fn stream_needs(&self, loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let window = loaded.section::<TcpSection>().window;
        vec![StreamNeed::Window {
            setting: format!("[tcp] window = {window}"),
            bytes: window as usize,
        }]
    }
    fn describe_begin(&self, initial: bool, extension: &[u8]) -> Option<String> {
        let begin = nukleus_tcp::decode_begin_ex(extension).filter(|_| initial)?;
        Some(format!(
            "tcp connection from {} (listener {})",
            begin.remote, begin.listener
        ))
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        Ok(Box::new(tcp(build)?))
    }
    fn build_split(
        &self,
        build: Build<'_>,
        input_doorbell: Arc<streams::Doorbell>,
        output_doorbell: Arc<streams::Doorbell>,
    ) -> Option<Result<(BoxedNukleus, BoxedNukleus), StartError>> {
        Some(tcp(build).map(|tcp| {
            let (input, output) = tcp.split_directions(Some(input_doorbell), Some(output_doorbell));
            (
                Box::new(input) as BoxedNukleus,
                Box::new(output) as BoxedNukleus,
            )
        }))
    }
}

fn tcp(build: Build<'_>) -> Result<TcpNukleus, StartError> {
    let loaded = build.loaded;
    let section = loaded.section::<TcpSection>();
    let listeners = loaded
        .topology
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
        max_connections: section.max_connections,
        window: section.window,
        write_timeout: Duration::from_millis(section.write_timeout_ms),
        accept_retry: Duration::from_millis(*section.accept_retry_ms.get_ref()),
        ..TcpConfig::default()
    };
    let instance = build.instance;
    let tcp = TcpNukleus::new(config, instance.core, instance.index, build.links)?;
    Ok(match build.steering {
        Some(steering) => tcp.with_steering(steering.clone(), usize::from(instance.index)),
        None => tcp,
    })
}

/// `[tcp]`: connection admission, windows, write timeout.
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
    /// After `accept` failed for want of resources, try again after this many milliseconds.
    #[serde(default = "default_accept_retry_ms")]
    pub accept_retry_ms: Spanned<u64>,
}

impl Default for TcpSection {
    fn default() -> Self {
        TcpSection {
            max_connections: default_max_connections(),
            window: default_window(),
            write_timeout_ms: default_write_timeout_ms(),
            accept_retry_ms: default_accept_retry_ms(),
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

fn default_accept_retry_ms() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

/// Checks the `[tcp]` settings that have bounds.
fn check_limits(tcp: &TcpSection, invalid: Invalid<'_>) -> Result<(), TopologyError> {
    let retry = &tcp.accept_retry_ms;
    if !(1..=60_000).contains(retry.get_ref()) {
        return Err(invalid(
            Some(retry.span()),
            format!(
                "[tcp] accept_retry_ms {} must be between 1 and 60000",
                retry.get_ref()
            ),
        ));
    }
    Ok(())
}
