//! The cluster soak (scripts/soak-cluster.sh runs it; ignored in CI): three real members, a
//! few client nodes that register and release ports of a small shared pool (so grants race),
//! sometimes fall silent until their lease expires, and `SOAK_FAULTS` injected faults —
//! `kill -9` of the master or of a follower (restarted with its state directory), SIGSTOP of
//! the master, a partitioned master or follower (healed). Every reply the clients saw goes
//! through the history checker (`support::history`), and the members' serving logs through
//! the overlap check; the soak fails on any violation and prints what it saw.
//!
//! The checker's own tests (not ignored) show it catches what it should.
//!
//! env: SOAK_FAULTS=100 SOAK_NODES=6 SOAK_PORTS=16 SOAK_SEED=<time>

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::cluster::{assert_no_overlap, connect_any, switch_topology, Clocks, Cluster};
use support::history::{check, Reply};
use support::wsclient::Incoming;

/// A reply of `node` on connection `conn`: (epoch, sequence), ports granted and released,
/// sent `ms` after `t` and received a millisecond later.
fn reply(
    node: &str,
    conn: u64,
    token: (u64, u64),
    ports: (&[&str], &[&str]),
    t: Instant,
    ms: u64,
) -> Reply {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Reply {
        node: node.into(),
        conn,
        epoch: token.0,
        sequence: token.1,
        granted: names(ports.0),
        released: names(ports.1),
        sent: t + Duration::from_millis(ms),
        received: t + Duration::from_millis(ms + 1),
    }
}

#[test]
fn the_history_checker_passes_a_correct_history() {
    let t = Instant::now();
    let history = vec![
        reply("a", 1, (3, 1), (&["p"], &[]), t, 0),
        reply("b", 1, (3, 2), (&[], &[]), t, 2), // b's RegPort of p failed
        reply("a", 1, (3, 3), (&[], &["p"]), t, 4), // a releases p
        reply("b", 1, (3, 4), (&["p"], &[]), t, 6), // then b gets it
        reply("a", 2, (4, 1), (&["p"], &[]), t, 8), // a new master, empty: a gets it again
    ];
    let (tally, violations) = check(&history);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!((tally.grants, tally.releases, tally.epochs), (3, 1, 2));
}

#[test]
fn the_history_checker_finds_two_owners_in_one_epoch() {
    let t = Instant::now();
    // a holds p (granted at 1, connection alive at 5); b is granted p at 3.
    let history = vec![
        reply("a", 1, (3, 1), (&["p"], &[]), t, 0),
        reply("b", 1, (3, 3), (&["p"], &[]), t, 2),
        reply("a", 1, (3, 5), (&[], &[]), t, 4),
    ];
    let (_, violations) = check(&history);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].0.contains("while a held it"),
        "{violations:?}"
    );
    // Not if a's connection was last seen alive before b's grant (it may have ended).
    let history = vec![
        reply("a", 1, (3, 1), (&["p"], &[]), t, 0),
        reply("b", 1, (3, 3), (&["p"], &[]), t, 2),
        reply("a", 2, (3, 5), (&[], &[]), t, 4),
    ];
    assert!(check(&history).1.is_empty());
}

#[test]
fn the_history_checker_finds_an_epoch_going_back_and_a_token_that_shrinks() {
    let t = Instant::now();
    let history = vec![
        reply("a", 1, (4, 9), (&["p"], &[]), t, 0),
        reply("a", 2, (3, 20), (&["q"], &[]), t, 10),
    ];
    let (_, violations) = check(&history);
    assert!(
        violations
            .iter()
            .any(|v| v.0.contains("epoch 3 after one in epoch 4")),
        "{violations:?}"
    );
    // b's grant of p was sent after a's was received, yet its token is lower.
    let history = vec![
        reply("a", 1, (4, 9), (&["p"], &[]), t, 0),
        reply("b", 1, (4, 8), (&["p"], &[]), t, 10),
    ];
    let (_, violations) = check(&history);
    assert!(
        violations.iter().any(|v| v.0.contains("token (4, 8)")),
        "{violations:?}"
    );
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator (seeded, so a soak can be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const LEASE_MS: u64 = 1500;

fn topology(nodes: u64) -> String {
    switch_topology(&format!("\n[switch]\nlease_ms = {LEASE_MS}\n"), "s", nodes)
}

/// One client node: register and release ports of the pool, sometimes fall silent.
fn node_loop(
    n: u64,
    addrs: Vec<std::net::SocketAddr>,
    pool: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Reply>>>,
    counts: Arc<[AtomicU64; 3]>,
) {
    let node = format!("s{n}");
    let token = format!("tok-s{n}");
    let mut rng = Rng(seed | 1);
    let mut conn = 0u64;
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        conn += 1;
        let (mut ws, _, _) = connect_any(&addrs, &node, &token, Duration::from_secs(60));
        let mut owned: Vec<String> = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            id += 1;
            let roll = rng.below(1000);
            if roll < 2 {
                // Fall silent: the switch expires the node (4001) and releases its ports.
                std::thread::sleep(Duration::from_millis(LEASE_MS + 800));
                if let Ok(Incoming::Close(4001, _)) = ws.recv(Duration::from_secs(2)) {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            let (request, releasing) = if roll < 600 || owned.is_empty() {
                let ports: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| format!("\"x{}\"", rng.below(pool)))
                    .collect();
                (
                    format!(
                        r#"{{"op":"regport","id":{id},"ports":[{}]}}"#,
                        ports.join(",")
                    ),
                    false,
                )
            } else {
                let p = owned[rng.below(owned.len() as u64) as usize].clone();
                (
                    format!(r#"{{"op":"unregport","id":{id},"ports":["{p}"]}}"#),
                    true,
                )
            };
            let sent = Instant::now();
            let Ok((text, _)) = ws.call(&request, id, Duration::from_secs(2)) else {
                counts[1].fetch_add(1, Ordering::Relaxed);
                break; // lost (failover, stop, partition): reconnect
            };
            let received = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let (Some(epoch), Some(sequence)) = (v["epoch"].as_u64(), v["sequence"].as_u64())
            else {
                continue;
            };
            if v.get("error").is_some() {
                continue;
            }
            let mut r = Reply {
                node: node.clone(),
                conn,
                epoch,
                sequence,
                granted: Vec::new(),
                released: Vec::new(),
                sent,
                received,
            };
            if releasing {
                r.released = v["released"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                owned.retain(|p| !r.released.contains(p));
            } else {
                let failed: Vec<&str> = v["failed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|f| f["port"].as_str())
                    .collect();
                let asked: serde_json::Value = serde_json::from_str(&request).unwrap();
                for p in asked["ports"].as_array().unwrap() {
                    let p = p.as_str().unwrap();
                    if !failed.contains(&p) {
                        r.granted.push(p.to_string());
                        if !owned.iter().any(|o| o == p) {
                            owned.push(p.to_string());
                        }
                    }
                }
            }
            history.lock().unwrap().push(r);
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }
    }
}

#[test]
#[ignore = "a soak: scripts/soak-cluster.sh"]
fn cluster_soak() {
    let faults = env("SOAK_FAULTS", 100);
    let nodes = env("SOAK_NODES", 6);
    let pool = env("SOAK_PORTS", 16);
    let seed = env(
        "SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!("cluster soak: {faults} faults, {nodes} nodes on {pool} ports, seed {seed}");
    let mut cluster = Cluster::start(3, Clocks::default(), &topology(nodes));
    cluster.wait_master(Duration::from_secs(20));
    let addrs = cluster.addrs();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let counts: Arc<[AtomicU64; 3]> =
        Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let threads: Vec<_> = (0..nodes)
        .map(|n| {
            let (addrs, stop, history, counts) =
                (addrs.clone(), stop.clone(), history.clone(), counts.clone());
            let seed = seed.wrapping_mul(n + 7);
            std::thread::spawn(move || node_loop(n, addrs, pool, seed, stop, history, counts))
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
    let started = Instant::now();
    for f in 1..=faults {
        std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
        let (master, _) = cluster.wait_master(Duration::from_secs(30));
        let follower = (1..=3).find(|&m| m != master).unwrap();
        let kind = match rng.below(6) {
            0 => {
                cluster.kill9(master);
                std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
                cluster.start_member(master);
                "kill -9 master"
            }
            1 => {
                cluster.kill9(follower);
                std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
                cluster.start_member(follower);
                "kill -9 follower"
            }
            2 => {
                cluster.signal_stop(master, true);
                std::thread::sleep(Duration::from_millis(300 + rng.below(2700)));
                cluster.signal_stop(master, false);
                "SIGSTOP master"
            }
            3 | 4 => {
                cluster.isolate(master, true);
                std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
                cluster.isolate(master, false);
                "partition master"
            }
            _ => {
                cluster.isolate(follower, true);
                std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
                cluster.isolate(follower, false);
                "partition follower"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        if f % 10 == 0 {
            println!("{f} faults after {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let history = history.lock().unwrap();
    let (tally, violations) = check(&history);
    let intervals = assert_no_overlap(&cluster);
    println!("faults injected: {kinds:?}");
    println!(
        "history: {} replies, {} grants, {} releases, {} epochs; {} expiries and {} lost connections seen by clients; {} serving intervals, none overlapping",
        tally.replies,
        tally.grants,
        tally.releases,
        tally.epochs,
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        intervals.len()
    );
    println!("violations: {}", violations.len());
    for v in violations.iter().take(20) {
        println!("  {}", v.0);
    }
    assert!(violations.is_empty());
}
