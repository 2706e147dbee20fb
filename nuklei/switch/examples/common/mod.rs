//! What the cost examples (`cluster_cost`, `fission_cost`, `coord_cost`) share: the same
//! limits and port names, so the fission examples measure the same load, and the mark of a
//! measured phase for callgrind.
#![allow(dead_code)]

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

/// Marks the start and the end of a measured phase: `valgrind --tool=callgrind
/// --dump-before='*phase_mark*'` writes one profile per phase (see each example's docs).
#[inline(never)]
pub fn phase_mark() {
    std::hint::black_box(());
}
