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
//! transport = "epoll"         # or "io_uring" (falls back to epoll, logged, where unavailable)
//! ```

use std::sync::Arc;
use std::time::Duration;

use nukleus_tcp::{ListenerConfig, TcpConfig, TcpError, TcpNukleus, UringTcpNukleus};
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
        if build.loaded.section::<TcpSection>().transport == Transport::IoUring {
            if build.steering.is_some() {
                warn_fallback(build.instance.core, "the re-plan's connection steering ([reaktor] replan_interval_ms) needs the epoll transport".into());
            } else {
                return uring_or_epoll(build);
            }
        }
        Ok(Box::new(tcp(build)?))
    }
    fn build_split(
        &self,
        build: Build<'_>,
        input_doorbell: Arc<streams::Doorbell>,
        output_doorbell: Arc<streams::Doorbell>,
    ) -> Option<Result<(BoxedNukleus, BoxedNukleus), StartError>> {
        if build.loaded.section::<TcpSection>().transport == Transport::IoUring {
            warn_fallback(
                build.instance.core,
                "a tcp split by direction (tcp.out) needs the epoll transport".into(),
            );
        }
        Some(tcp(build).map(|tcp| {
            let (input, output) = tcp.split_directions(Some(input_doorbell), Some(output_doorbell));
            (
                Box::new(input) as BoxedNukleus,
                Box::new(output) as BoxedNukleus,
            )
        }))
    }
}

/// The io_uring transport, or the epoll one (with one log line saying why) where io_uring
/// cannot be set up.
fn uring_or_epoll(build: Build<'_>) -> Result<BoxedNukleus, StartError> {
    let config = tcp_config(build.loaded);
    let instance = build.instance;
    match UringTcpNukleus::new(config, instance.core, instance.index, build.links) {
        Ok(tcp) => {
            tracing::debug!(core = instance.core, "tcp on io_uring");
            Ok(Box::new(tcp))
        }
        Err((TcpError::IoUring { source }, links)) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|v| format!("kernel.io_uring_disabled = {}", v.trim()))
                .unwrap_or_else(|_| "kernel.io_uring_disabled unreadable".into());
            warn_fallback(
                instance.core,
                format!("io_uring setup failed: {source} ({sysctl}; a seccomp filter, as in containers, also refuses it)"),
            );
            let tcp = TcpNukleus::new(
                tcp_config(build.loaded),
                instance.core,
                instance.index,
                links,
            )?;
            Ok(Box::new(tcp))
        }
        Err((other, _)) => Err(other.into()),
    }
}

fn warn_fallback(core: usize, why: String) {
    tracing::warn!(
        core,
        "[tcp] transport = \"io_uring\" not used, falling back to epoll: {why}"
    );
}

fn tcp_config(loaded: &LoadedTopology) -> TcpConfig {
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
    TcpConfig {
        listeners,
        max_connections: section.max_connections,
        window: section.window,
        write_timeout: Duration::from_millis(section.write_timeout_ms),
        accept_retry: Duration::from_millis(*section.accept_retry_ms.get_ref()),
        io_uring_buffers: *section.io_uring_buffers.get_ref(),
        io_uring_buffer_size: section.io_uring_buffer_size,
        ..TcpConfig::default()
    }
}

fn tcp(build: Build<'_>) -> Result<TcpNukleus, StartError> {
    let config = tcp_config(build.loaded);
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
    /// How sockets are driven: `epoll` (readiness, one system call per read and write) or
    /// `io_uring` (multishot accept and receive, batched sends).
    #[serde(default)]
    pub transport: Transport,
    /// io_uring: provided receive buffers per tcp instance (a power of two, 1 ..= 32768).
    #[serde(default = "default_io_uring_buffers")]
    pub io_uring_buffers: Spanned<u16>,
    /// io_uring: bytes per provided buffer (the most one receive carries).
    #[serde(default = "default_io_uring_buffer_size")]
    pub io_uring_buffer_size: u32,
}

/// `[tcp] transport`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    Epoll,
    IoUring,
}

fn default_io_uring_buffers() -> Spanned<u16> {
    Spanned::new(0..0, 256)
}

fn default_io_uring_buffer_size() -> u32 {
    4096
}

impl Default for TcpSection {
    fn default() -> Self {
        TcpSection {
            max_connections: default_max_connections(),
            window: default_window(),
            write_timeout_ms: default_write_timeout_ms(),
            accept_retry_ms: default_accept_retry_ms(),
            transport: Transport::default(),
            io_uring_buffers: default_io_uring_buffers(),
            io_uring_buffer_size: default_io_uring_buffer_size(),
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
    let buffers = &tcp.io_uring_buffers;
    if !buffers.get_ref().is_power_of_two() {
        return Err(invalid(
            Some(buffers.span()),
            format!(
                "[tcp] io_uring_buffers {} must be a power of two between 1 and 32768",
                buffers.get_ref()
            ),
        ));
    }
    if !(512..=1 << 20).contains(&tcp.io_uring_buffer_size) {
        return Err(invalid(
            None,
            format!(
                "[tcp] io_uring_buffer_size {} must be between 512 and 1048576",
                tcp.io_uring_buffer_size
            ),
        ));
    }
    Ok(())
}
