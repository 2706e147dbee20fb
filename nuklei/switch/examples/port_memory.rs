//! Registers N ports of 16-byte names in one `PortShard` and prints the RSS growth per port.
//!
//! ```text
//! cargo run --release -p nukleus-switch --example port_memory -- 10000000
//! ```
//!
//! RSS is read from `/proc/self/statm` (Linux). The names are built in a reused buffer, so the
//! only memory that grows is the table's.

use nukleus_switch::PortShard;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let nodes = 1000u32;
    let before = rss_bytes();
    let mut shard = PortShard::new();
    let started = std::time::Instant::now();
    let mut name = String::with_capacity(16);
    // The slowest block of 1,024 registrations: an index growth lands in one block, so this is
    // about the longest stall a growth causes (the core serves nothing else meanwhile).
    let mut block_started = started;
    let mut slowest_block = std::time::Duration::ZERO;
    for i in 0..n {
        if i % 1024 == 1023 {
            let now = std::time::Instant::now();
            slowest_block = slowest_block.max(now - block_started);
            block_started = now;
        }
        name.clear();
        // 16 bytes: "p:" + 14 hex digits.
        use std::fmt::Write;
        let _ = write!(name, "p:{i:014x}");
        debug_assert_eq!(name.len(), 16);
        shard
            .register(&name, i as u32 % nodes)
            .expect("fresh names register");
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    assert_eq!(shard.len(), n);
    let delta = after.saturating_sub(before);
    println!(
        "ports={n} name_len=16 rss_before={:.1}MiB rss_after={:.1}MiB delta={:.1}MiB \
         bytes_per_port={:.1} heap_capacity_per_port={:.1} register_rate={:.2}M/s \
         slowest_1024_block={:.1}ms",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        delta as f64 / 1048576.0,
        delta as f64 / n as f64,
        shard.heap_bytes() as f64 / n as f64,
        n as f64 / elapsed.as_secs_f64() / 1e6,
        slowest_block.as_secs_f64() * 1e3,
    );
    // Release one node's ports to show the per-node path works at this size.
    let started = std::time::Instant::now();
    let released = shard.release_all(7, |_, _| {});
    println!(
        "release_all(node 7): {released} ports in {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}
