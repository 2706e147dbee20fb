//! Batched RegPort of 16-byte port names.
//!
//! ```text
//! cargo bench -p nukleus-switch --bench regport
//! ```
//!
//! Throughput is reported as items (ports) per second. Each sample registers 200,000 fresh
//! names into an empty switch in requests of 10,000 ports (the default per-request limit), so
//! table growth is included, as after a switch failover when every node re-registers.

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use divan::Bencher;
use nukleus_switch::switch::{Config, Switch};
use nukleus_switch::PortShard;

const PORTS: usize = 200_000;
const BATCH: usize = 10_000;

/// 16-byte names: "p:" + 14 hex digits.
static NAMES: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..PORTS).map(|i| format!("p:{:014x}", i * 7919)).collect());

fn online_switch(shards: usize) -> Switch {
    let mut sw = Switch::new(Config {
        shards,
        ..Config::default()
    });
    let mut out = Vec::new();
    sw.wait_msg("owner", "10.0.0.1:7000", 1, 0, &mut out)
        .unwrap();
    sw.wait_msg("rival", "10.0.0.2:7000", 2, 0, &mut out)
        .unwrap();
    sw
}

fn main() {
    divan::main();
}

/// RegPort batches into an empty switch with 1 or 4 shards (all in this thread).
#[divan::bench(args = [1, 4], sample_count = 20, sample_size = 1)]
fn regport_fresh(bencher: Bencher, shards: usize) {
    let names = &*NAMES;
    bencher
        .counter(ItemsCount::new(PORTS))
        .with_inputs(|| online_switch(shards))
        .bench_local_values(|mut sw| {
            let mut out = Vec::new();
            for batch in names.chunks(BATCH) {
                let r = sw.reg_port("owner", batch, false, &mut out).unwrap();
                assert_eq!(r.registered, batch.len());
            }
            sw
        });
}

/// RegPort batches that all fail (every port owned by another node): the discovery path,
/// building the failed list with owner id and address.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn regport_conflicts(bencher: Bencher) {
    let names = &*NAMES;
    let mut sw = online_switch(1);
    let mut out = Vec::new();
    for batch in names.chunks(BATCH) {
        sw.reg_port("owner", batch, false, &mut out).unwrap();
    }
    bencher.counter(ItemsCount::new(PORTS)).bench_local(|| {
        let mut failed = 0;
        for batch in names.chunks(BATCH) {
            failed += sw
                .reg_port("rival", batch, false, &mut out)
                .unwrap()
                .failed
                .len();
        }
        assert_eq!(failed, PORTS);
    });
}

/// The bare shard table, without request validation or node bookkeeping.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn shard_register_fresh(bencher: Bencher) {
    let names = &*NAMES;
    bencher
        .counter(ItemsCount::new(PORTS))
        .with_inputs(PortShard::new)
        .bench_local_values(|mut shard| {
            for (i, n) in names.iter().enumerate() {
                shard.register(n, i as u32 & 1023).unwrap();
            }
            shard
        });
}
