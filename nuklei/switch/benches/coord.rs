//! What the coordination features cost the switch itself (issue 15: 10,000 watches on one
//! prefix and a 1M-port listing may slow RegPort and SendMsg by at most 5 %), in one thread,
//! without sockets, so the figures do not depend on how a shared machine schedules the
//! server (the wall-clock on/off run in benches/switch.sh does).
//!
//! ```text
//! cargo bench -p nukleus-switch --bench coord
//! ```
//!
//! * `regport_beside_watches`: RegPort of 200,000 fresh 16-byte ports (requests of 10,000)
//!   into a switch with 0 or 10,000 watches on the prefix `w:` (100 watchers x 100 watches;
//!   as nodes, or as node-less watchers), none of which matches the registered names: the
//!   per-registration cost of the watches is the look-up of interested watches (and the
//!   journal, which is written either way).
//! * `listing_page`: one page of 1,000 ports of a 1,000,000-port table by prefix, from a
//!   cursor: the per-second cost of the benchmark's listing load is its pages per second times
//!   this.
//! * `event_to_watches`: one port event fanned out to 10,000 watches and the pushes drained
//!   as the nukleus drains them: the per-second cost of the benchmark's one event a second.

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use divan::Bencher;
use nukleus_switch::listing::PageRequest;
use nukleus_switch::switch::{Config, Switch};
use nukleus_switch::watch::{WatchKind, WatchRequest};

const PORTS: usize = 200_000;
const BATCH: usize = 10_000;
const WATCHERS: usize = 100;
const WATCHES_EACH: usize = 100;
const LISTED: usize = 1_000_000;
const PAGE: u64 = 1_000;

/// 16-byte names: "p:" + 14 hex digits (none under `w:`).
static NAMES: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..PORTS).map(|i| format!("p:{:014x}", i * 7919)).collect());

fn main() {
    divan::main();
}

fn watch_request() -> WatchRequest {
    WatchRequest {
        id: None,
        kind: WatchKind::Ports,
        key: "w:".into(),
        prefix: true,
        from: None,
    }
}

/// A switch with node `owner` online and `watchers` x 100 watches on `w:` (watcher nodes, or
/// node-less watchers when `node_less`); returns the watchers' indices too.
fn switch_with_watches(watchers: usize, node_less: bool) -> (Switch, Vec<u32>) {
    let mut sw = Switch::new(Config {
        shards: 1,
        ..Config::default()
    });
    let mut out = Vec::new();
    sw.wait_msg("owner", "10.0.0.1:7000", 1, 0, &mut out)
        .unwrap();
    let mut indices = Vec::new();
    for w in 0..watchers {
        let conn = 100 + w as u64;
        let idx = if node_less {
            let s = sw.open_watcher(conn);
            for _ in 0..WATCHES_EACH {
                sw.watcher_watch(s.node, watch_request(), &mut out).unwrap();
            }
            s.node
        } else {
            let node = format!("w{w}");
            let s = sw.wait_msg(&node, "", conn, 0, &mut out).unwrap();
            for _ in 0..WATCHES_EACH {
                sw.watch(&node, watch_request(), &mut out).unwrap();
            }
            s.node
        };
        indices.push(idx);
    }
    (sw, indices)
}

/// RegPort into a switch with no watches, 10,000 watches of watcher nodes, and 10,000
/// watches of node-less watchers (args: "none", "nodes", "node-less").
#[divan::bench(args = ["none", "nodes", "node-less"], sample_count = 30, sample_size = 1)]
fn regport_beside_watches(bencher: Bencher, watches: &str) {
    let names = &*NAMES;
    let (watchers, node_less) = match watches {
        "none" => (0, false),
        "nodes" => (WATCHERS, false),
        _ => (WATCHERS, true),
    };
    bencher
        .counter(ItemsCount::new(PORTS))
        .with_inputs(|| switch_with_watches(watchers, node_less).0)
        .bench_local_values(|mut sw| {
            let mut out = Vec::new();
            for batch in names.chunks(BATCH) {
                let r = sw.reg_port("owner", batch, false, &mut out).unwrap();
                assert_eq!(r.registered, batch.len());
            }
            sw
        });
}

/// A page of 1,000 ports by prefix from a 1,000,000-port table, each page from a cursor
/// further on (as a client paging through the table does).
#[divan::bench(sample_count = 30, sample_size = 100)]
fn listing_page(bencher: Bencher) {
    let mut sw = Switch::new(Config {
        shards: 1,
        ..Config::default()
    });
    let mut out = Vec::new();
    sw.wait_msg("lister", "10.0.0.3:7000", 1, 0, &mut out)
        .unwrap();
    let names: Vec<String> = (0..LISTED).map(|i| format!("l:{i:014}")).collect();
    for batch in names.chunks(BATCH) {
        sw.reg_port("lister", batch, false, &mut out).unwrap();
    }
    let mut after: Option<String> = None;
    let page_after = |after: Option<String>| {
        sw.list_ports(&PageRequest {
            prefix: "l:".into(),
            after,
            limit: Some(PAGE),
        })
        .unwrap()
    };
    bencher.counter(ItemsCount::new(PAGE)).bench_local(|| {
        let mut page = page_after(after.take());
        if page.ports.is_empty() {
            // Past the last page: start again at the first.
            page = page_after(None);
        }
        assert_eq!(page.ports.len() as u64, PAGE);
        after = page.ports.last().map(|p| p.port.clone());
    });
}

/// One port event under `w:` (a registration, then its release) fanned out to the 10,000
/// watches, and every watcher's pushes drained as the nukleus drains them.
#[divan::bench(args = ["nodes", "node-less"], sample_count = 30, sample_size = 1)]
fn event_to_watches(bencher: Bencher, watches: &str) {
    let (mut sw, indices) = switch_with_watches(WATCHERS, watches == "node-less");
    let mut out = Vec::new();
    let mut drained = Vec::with_capacity(1 << 20);
    bencher
        .counter(ItemsCount::new((2 * WATCHERS * WATCHES_EACH) as u64))
        .bench_local(|| {
            sw.reg_port("owner", &["w:trickle"], false, &mut out)
                .unwrap();
            sw.unreg_port("owner", &["w:trickle"], &mut out).unwrap();
            for &idx in &indices {
                drained.clear();
                sw.drain(idx, usize::MAX, &mut drained);
            }
            out.clear();
        });
}
