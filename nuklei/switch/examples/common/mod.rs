//! What the fission cost examples (`cluster_cost`, `fission_cost`) share: the same limits and
//! port names, so both measure the same load.

use nukleus_switch::limits::Limits;

/// Requests carry this many ports or messages.
pub const BATCH: usize = 1000;

/// Limits that no part of the load reaches.
pub fn limits() -> Limits {
    Limits {
        max_ports_per_node: usize::MAX,
        max_queued_bytes: usize::MAX,
        ..Limits::default()
    }
}

/// The `i`-th port: 16 bytes.
pub fn port(i: usize) -> String {
    format!("port-{i:011}")
}
