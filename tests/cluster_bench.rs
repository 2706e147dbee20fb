//! The failover benchmark (benches/failover.sh runs it; ignored in CI): a three-member
//! cluster of real processes, `NODES` client nodes holding `PORTS` ports between them, and
//! `ROUNDS` times `kill -9` of the master. Per round: the time from the kill to a new master
//! answering a RegPort (a probe node), the time until every node has registered all its ports
//! again, and a check that no port was granted to two nodes in one epoch (each node also asks
//! for a slice of its neighbour's ports, so grants race). Side by side, the same kill on a
//! three-member etcd cluster: the time from the kill of its leader to the first successful
//! write. Prints one line per round and a summary (p50/p99/max).
//!
//! env: ROUNDS=20 NODES=20 PORTS=1000000 CONTENDED=500 BATCH=10000 WINDOW=1048576 TICK_MS=1 HEARTBEAT_MS=20
//!      ELECTION_MS=150 ETCD_ROUNDS=20 ETCD=/usr/bin/etcd ETCD_CLOCKS="100/1000 20/150"
//!      REAKTOR_CLUSTER_LAUNCH="taskset -c 0" (members and etcd pinned by the script)

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::cluster::{connect_any, json_field, switch_topology, Clocks, Cluster};
use support::wsclient::{Incoming, RawWs};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The nodes b0..b{nodes-1} and the probe b{nodes}, with room for a million ports; `window`
/// is the ws and switch window (bytes of one connection's messages in flight: how much of a
/// node's re-registration backlog can sit in the rings ahead of another connection's request).
fn topology(nodes: u64, window: u64) -> String {
    switch_topology(
        &format!(
            r#"
[ws]
window = {window}

[switch]
lease_ms = 30000
window = {window}

[switch.limits]
max_ports_per_request = 10000
max_ports_per_node = 2000000
"#
        ),
        "b",
        nodes + 1,
    )
}

/// What a node reports after registering everything in one epoch.
struct Done {
    node: u64,
    epoch: u64,
    at: Instant,
    /// Ports of the contended slice this node got (not failed).
    won: Vec<u64>,
    owned: usize,
}

fn port_name(p: u64) -> String {
    format!("p{p:07}")
}

/// Registers `ports` in pipelined batches; returns (epoch, ports owned, contended ports won).
fn register_all(
    ws: &mut RawWs,
    ports: &[u64],
    contended: &[u64],
    batch: usize,
) -> std::io::Result<(u64, usize, Vec<u64>)> {
    let mut requests = Vec::new();
    for chunk in ports.chunks(batch) {
        requests.push((chunk.to_vec(), false));
    }
    for chunk in contended.chunks(batch) {
        requests.push((chunk.to_vec(), true));
    }
    for (id, (chunk, _)) in requests.iter().enumerate() {
        let names: Vec<String> = chunk
            .iter()
            .map(|p| format!("\"{}\"", port_name(*p)))
            .collect();
        ws.send_text(&format!(
            r#"{{"op":"regport","id":{},"ports":[{}]}}"#,
            id + 1,
            names.join(",")
        ))?;
    }
    let (mut epoch, mut owned, mut won) = (0, 0, Vec::new());
    let mut answered = 0;
    while answered < requests.len() {
        let Incoming::Text(reply) = ws.recv(Duration::from_secs(30))? else {
            return Err(std::io::Error::other("closed"));
        };
        if !reply.starts_with('{') {
            continue;
        }
        let id: usize = json_field(&reply, "id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if id == 0 || id > requests.len() {
            continue; // a relet's reply
        }
        let value: serde_json::Value =
            serde_json::from_str(&reply).map_err(std::io::Error::other)?;
        if value.get("error").is_some() {
            return Err(std::io::Error::other(reply));
        }
        epoch = value["epoch"].as_u64().unwrap_or(0);
        let failed: std::collections::HashSet<&str> = value["failed"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["port"].as_str()).collect())
            .unwrap_or_default();
        let (chunk, is_contended) = &requests[id - 1];
        for p in chunk {
            if !failed.contains(port_name(*p).as_str()) {
                owned += 1;
                if *is_contended {
                    won.push(*p);
                }
            }
        }
        answered += 1;
    }
    Ok((epoch, owned, won))
}

/// A failover's election phases, from the members' logs (raft=info): milliseconds from the
/// kill to the first line of each kind any surviving member wrote after it, and how many
/// (pre-)campaigns it took (more than one: a round was lost — a split vote, an unanswered
/// PreVote).
struct Phases {
    /// (phase, ms after the kill) in the order of the election.
    at: Vec<(&'static str, Option<f64>)>,
    pre_campaigns: usize,
    campaigns: usize,
}

/// What each phase's first log line contains.
const PHASE_LINES: [(&str, &[&str]); 5] = [
    (
        "a follower's election timeout (pre-candidate)",
        &["became pre-candidate"],
    ),
    ("PreVote won (candidate)", &["became candidate"]),
    ("vote won (leader)", &["became leader"]),
    (
        "a follower learns the leader",
        &["leader changed", "leader=Some"],
    ),
    ("lease granted (serving)", &["this member is the master"]),
];

/// Seconds since midnight UTC of an RFC 3339 log timestamp (`2026-12-03T03:40:01.123456Z`).
fn log_seconds(line: &str) -> Option<f64> {
    let time = line.get(11..26)?;
    let (h, m, s) = (
        time.get(0..2)?.parse::<f64>().ok()?,
        time.get(3..5)?.parse::<f64>().ok()?,
        time.get(6..)?.parse::<f64>().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

impl Phases {
    /// Reads what each member logged after `marks` (its log's length before the kill).
    fn read(cluster: &Cluster, marks: &[usize], killed: SystemTime) -> Phases {
        let since_midnight = killed.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0;
        let after = |line: &str| {
            log_seconds(line).map(|t| ((t - since_midnight + 86_400.0) % 86_400.0) * 1000.0)
        };
        let lines: Vec<String> = cluster
            .members
            .iter()
            .zip(marks)
            .flat_map(|(m, &mark)| {
                let text = m.log_text();
                text.get(mark..)
                    .unwrap_or("")
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        let first = |needles: &[&str]| {
            lines
                .iter()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .filter_map(|l| after(l))
                .min_by(|a, b| a.partial_cmp(b).unwrap())
        };
        Phases {
            at: PHASE_LINES
                .iter()
                .map(|(name, needle)| (*name, first(needle)))
                .collect(),
            pre_campaigns: lines
                .iter()
                .filter(|l| l.contains("became pre-candidate"))
                .count(),
            campaigns: lines
                .iter()
                .filter(|l| l.contains("became candidate"))
                .count(),
        }
    }

    fn add_to(&self, values: &mut Vec<(&'static str, Vec<f64>)>) {
        for (name, at) in &self.at {
            if let Some(at) = at {
                phase_values_push(values, name, *at);
            }
        }
    }
}

fn phase_values_push(values: &mut Vec<(&'static str, Vec<f64>)>, name: &'static str, at: f64) {
    match values.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => v.push(at),
        None => values.push((name, vec![at])),
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, at) in &self.at {
            match at {
                Some(ms) => write!(f, "{name} {ms:.0}, ")?,
                None => write!(f, "{name} not logged, ")?,
            }
        }
        write!(
            f,
            "pre-campaigns {}, campaigns {}",
            self.pre_campaigns, self.campaigns
        )
    }
}

/// (epoch, port) -> the nodes it was granted to.
type Grants = HashMap<(u64, u64), Vec<u64>>;

/// Waits until every node reported a registration in an epoch after `after`, all in the same
/// epoch (a new master that lost its lease again sends its nodes on to the next one: the
/// round ends when they all hold their ports at one master); records the contended grants of
/// every report.
fn wait_all(
    rx: &mpsc::Receiver<Done>,
    nodes: u64,
    after: u64,
    grants: &mut Grants,
) -> HashMap<u64, Done> {
    let mut done: HashMap<u64, Done> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let settled = |done: &HashMap<u64, Done>| {
        done.len() == nodes as usize && {
            let top = done.values().map(|d| d.epoch).max().unwrap_or(0);
            done.values().all(|d| d.epoch == top)
        }
    };
    while !settled(&done) {
        let d = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("every node registers again, all at one master");
        for p in &d.won {
            grants.entry((d.epoch, *p)).or_default().push(d.node);
        }
        if d.epoch > after {
            done.insert(d.node, d);
        }
    }
    done
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * q).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(name: &str, values: &mut [f64]) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "summary {name}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms min={:.0} ms",
        values.len(),
        percentile(values, 0.5),
        percentile(values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
        values.first().copied().unwrap_or(f64::NAN)
    );
}

#[test]
#[ignore = "a benchmark: benches/failover.sh"]
fn switch_failover() {
    let rounds = env("ROUNDS", 20);
    let nodes = env("NODES", 20);
    let ports = env("PORTS", 1_000_000);
    let contended = env("CONTENDED", 500);
    let batch = env("BATCH", 10_000) as usize;
    let clocks = Clocks {
        tick_ms: env("TICK_MS", 1),
        heartbeat_ms: env("HEARTBEAT_MS", 20),
        election_timeout_ms: env("ELECTION_MS", 150),
    };
    println!(
        "switch failover: {rounds} rounds, {nodes} nodes, {ports} ports ({contended} contended per node, batches of {batch}), ws/switch window {}, clocks {clocks:?}",
        env("WINDOW", 1_048_576)
    );
    let window = env("WINDOW", 1_048_576);
    let mut cluster = Cluster::start_direct(3, clocks, &topology(nodes, window));
    cluster.wait_master(Duration::from_secs(20));
    let addrs = cluster.addrs();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Done>();
    let per_node = ports / nodes;
    let mut threads = Vec::new();
    for n in 0..nodes {
        let (addrs, stop, tx) = (addrs.clone(), stop.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let own: Vec<u64> = (n * per_node..(n + 1) * per_node).collect();
            let next = (n + 1) % nodes;
            let theirs: Vec<u64> = (next * per_node..next * per_node + contended).collect();
            let node = format!("b{n}");
            let token = format!("tok-b{n}");
            while !stop.load(Ordering::Relaxed) {
                let (mut ws, _, _) = connect_any(&addrs, &node, &token, Duration::from_secs(60));
                let Ok((epoch, owned, won)) = register_all(&mut ws, &own, &theirs, batch) else {
                    continue;
                };
                let at = Instant::now();
                let _ = tx.send(Done {
                    node: n,
                    epoch,
                    at,
                    won,
                    owned,
                });
                // Hold the connection until it is lost (the master killed) or the end.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match ws.recv(Duration::from_millis(200)) {
                        Ok(Incoming::Close(..)) => break,
                        Ok(Incoming::Text(_)) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            // Keep the lease: any message renews it.
                            let _ = ws.send_text(r#"{"op":"relet","id":999999}"#);
                        }
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    drop(tx);
    // (epoch, port) -> nodes granted it.
    let mut grants = Grants::new();
    let first = wait_all(&rx, nodes, 0, &mut grants);
    let mut epoch = first.values().map(|d| d.epoch).max().unwrap();
    println!("initial registration done in epoch {epoch}");
    let (mut failovers, mut all_back, mut back_after) = (Vec::new(), Vec::new(), Vec::new());
    let mut cascades = 0;
    let mut phase_values: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for round in 1..=rounds {
        let (master, serving) = cluster.wait_master(Duration::from_secs(20));
        if serving != epoch {
            println!("round {round}: an election between rounds (epoch {epoch} -> {serving}); waiting for the nodes");
            let done = wait_all(&rx, nodes, epoch, &mut grants);
            epoch = done.values().map(|d| d.epoch).max().unwrap();
        }
        // Let the followers' state settle (they heard the master's heartbeats).
        std::thread::sleep(Duration::from_millis(300));
        let probe_addrs = addrs.clone();
        let log_marks: Vec<usize> = cluster.members.iter().map(|m| m.log_text().len()).collect();
        let survivors: Vec<u32> = cluster
            .members
            .iter()
            .filter(|m| m.id != master)
            .filter_map(|m| m.pid())
            .collect();
        let cpu_before: u64 = survivors.iter().map(|&p| cpu_ticks(p)).sum();
        let killed = Instant::now();
        let killed_wall = SystemTime::now();
        cluster.kill9(master);
        // The probe: a node that only registers one port, as soon as any member serves.
        let probe = std::thread::spawn(move || loop {
            let (mut ws, _, refusals) = connect_any(
                &probe_addrs,
                &format!("b{nodes}"),
                &format!("tok-b{nodes}"),
                Duration::from_secs(30),
            );
            let connected = Instant::now();
            if let Ok((reply, _)) = ws.call(
                r#"{"op":"regport","id":1,"ports":["probe"]}"#,
                1,
                Duration::from_secs(5),
            ) {
                let e: u64 = json_field(&reply, "epoch")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if e > 0 {
                    return (Instant::now(), e, refusals.len(), connected);
                }
            }
        });
        let done = wait_all(&rx, nodes, epoch, &mut grants);
        let survivors_cpu_ms =
            (survivors.iter().map(|&p| cpu_ticks(p)).sum::<u64>() - cpu_before) * 10;
        let (first_answer, probe_epoch, probe_refusals, probe_connected) = probe.join().unwrap();
        let last = done.values().map(|d| d.at).max().unwrap();
        let new_epoch = done.values().map(|d| d.epoch).max().unwrap();
        let owned: usize = done.values().map(|d| d.owned).sum();
        let failover = first_answer.duration_since(killed).as_secs_f64() * 1000.0;
        let back = last.duration_since(killed).as_secs_f64() * 1000.0;
        let again = if new_epoch > probe_epoch {
            cascades += 1;
            format!(" (the first new master lost its lease: the nodes hold their ports in epoch {new_epoch})")
        } else {
            String::new()
        };
        println!(
            "round {round}: killed member {master} (epoch {epoch}); probe RegPort answered in epoch {probe_epoch} after {failover:.0} ms; all {nodes} nodes' ports back after {back:.0} ms ({:.0} ms after the first answer); ports owned {owned}{again}; the two members' cpu from the kill to all back {survivors_cpu_ms} ms; load {}",
            back - failover,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?")
        );
        let phases = Phases::read(&cluster, &log_marks, killed_wall);
        println!(
            "round {round} phases (ms after the kill): {phases}; the probe's handshake at the new master {:.0} (refused {probe_refusals} times before), its RegPort answered {failover:.0}",
            probe_connected.duration_since(killed).as_secs_f64() * 1000.0
        );
        phase_values_push(
            &mut phase_values,
            "the probe's handshake at the new master",
            probe_connected.duration_since(killed).as_secs_f64() * 1000.0,
        );
        phases.add_to(&mut phase_values);
        failovers.push(failover);
        all_back.push(back);
        back_after.push(back - failover);
        epoch = new_epoch;
        cluster.start_member(master);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let double: Vec<_> = grants
        .iter()
        .filter(|(_, n)| {
            let mut n = (*n).clone();
            n.sort_unstable();
            n.dedup();
            n.len() > 1
        })
        .collect();
    println!("double ownership: {} (port, epoch) pairs granted to two nodes, of {} contended grants checked", double.len(), grants.len());
    println!("rounds where the first new master lost its lease before the nodes were back: {cascades} of {rounds}");
    for (name, values) in &mut phase_values {
        summary(&format!("kill -> {name}"), values);
    }
    summary("kill -> new master answers RegPort", &mut failovers);
    summary("kill -> all ports back", &mut all_back);
    summary("first answer -> all ports back", &mut back_after);
    assert!(double.is_empty(), "{double:?}");
}

// ---------------------------------------------------------------------------------------
// etcd, side by side

struct Etcd {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

fn etcd_request(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default(),
    ))
}

fn start_etcd(e: &mut Etcd, cluster: &str, state: &str, clocks: (u64, u64)) {
    let bin = std::env::var("ETCD").unwrap_or_else(|_| "etcd".into());
    let launch = std::env::var("REAKTOR_CLUSTER_LAUNCH").unwrap_or_default();
    let mut words = launch.split_whitespace();
    let mut command = match words.next() {
        Some(p) => {
            let mut c = Command::new(p);
            c.args(words).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let log = std::fs::File::create(e.dir.with_extension("log")).unwrap();
    e.child = Some(
        command
            .args(["--name", &e.name, "--data-dir"])
            .arg(&e.dir)
            .args([
                "--listen-client-urls",
                &format!("http://{}", e.client),
                "--advertise-client-urls",
                &format!("http://{}", e.client),
                "--listen-peer-urls",
                &format!("http://{}", e.peer),
                "--initial-advertise-peer-urls",
                &format!("http://{}", e.peer),
                "--initial-cluster",
                cluster,
                "--initial-cluster-state",
                state,
                "--heartbeat-interval",
                &clocks.0.to_string(),
                "--election-timeout",
                &clocks.1.to_string(),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd (scripts/install-bench-deps.sh installs it)"),
    );
}

/// The member id of the leader, as member `e` sees it.
fn etcd_leader(e: &Etcd) -> Option<(u64, u64)> {
    let (status, body) = etcd_request(
        e.client,
        "/v3/maintenance/status",
        "{}",
        Duration::from_millis(500),
    )?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let num = |x: &serde_json::Value| {
        x.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| x.as_u64())
    };
    Some((num(&v["header"]["member_id"])?, num(&v["leader"])?))
}

#[test]
#[ignore = "a benchmark: benches/failover.sh"]
fn etcd_failover() {
    let rounds = env("ETCD_ROUNDS", 20);
    let clock_sets = std::env::var("ETCD_CLOCKS").unwrap_or_else(|_| "100/1000 20/150".into());
    for set in clock_sets.split_whitespace() {
        let (hb, el) = set
            .split_once('/')
            .expect("ETCD_CLOCKS: heartbeat/election ms");
        let clocks: (u64, u64) = (hb.parse().unwrap(), el.parse().unwrap());
        let dir = support::TempDir::new("etcd");
        let mut members: Vec<Etcd> = (0..3)
            .map(|k| Etcd {
                name: format!("e{k}"),
                client: SocketAddr::from(([127, 0, 0, 1], support::free_port())),
                peer: SocketAddr::from(([127, 0, 0, 1], support::free_port())),
                dir: dir.0.join(format!("e{k}")),
                child: None,
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|e| format!("{}=http://{}", e.name, e.peer))
            .collect();
        let initial = initial.join(",");
        for e in &mut members {
            start_etcd(e, &initial, "new", clocks);
        }
        let mut times = Vec::new();
        println!(
            "etcd failover: {rounds} rounds, heartbeat {} ms, election timeout {} ms",
            clocks.0, clocks.1
        );
        let mut key = 0u64;
        for round in 1..=rounds {
            // Wait for a leader every member agrees on, and a write through it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let leader = loop {
                let views: Vec<Option<(u64, u64)>> = members.iter().map(etcd_leader).collect();
                if let Some(Some((_, l))) = views.first() {
                    if *l != 0 && views.iter().all(|v| v.is_some_and(|(_, x)| x == *l)) {
                        if let Some(k) = views.iter().position(|v| v.is_some_and(|(me, x)| me == x))
                        {
                            break k;
                        }
                    }
                }
                assert!(Instant::now() < deadline, "etcd has no leader");
                std::thread::sleep(Duration::from_millis(20));
            };
            std::thread::sleep(Duration::from_millis(300));
            let killed = Instant::now();
            let mut child = members[leader].child.take().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            let others: Vec<SocketAddr> = members
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != leader)
                .map(|(_, e)| e.client)
                .collect();
            let mut k = 0;
            let written = loop {
                key += 1;
                // base64 of "k" and "v": a put of a fresh key, 200 ms per attempt.
                let body = format!(r#"{{"key":"{}","value":"dg=="}}"#, b64(&format!("k{key}")));
                if let Some((200, reply)) = etcd_request(
                    others[k % 2],
                    "/v3/kv/put",
                    &body,
                    Duration::from_millis(200),
                ) {
                    if reply.contains("\"revision\"") {
                        break Instant::now();
                    }
                }
                k += 1;
                assert!(
                    killed.elapsed() < Duration::from_secs(30),
                    "no write within 30 s"
                );
            };
            let ms = written.duration_since(killed).as_secs_f64() * 1000.0;
            println!("etcd round {round}: leader e{leader} killed; first successful write after {ms:.0} ms");
            times.push(ms);
            // The killed member rejoins with its data directory.
            let initial = initial.clone();
            start_etcd(&mut members[leader], &initial, "existing", clocks);
        }
        summary(
            &format!("etcd {}/{} ms: kill -> first write", clocks.0, clocks.1),
            &mut times,
        );
        for e in &mut members {
            if let Some(mut c) = e.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The election thread's timeliness while the master's switch core is saturated

/// `reaktor_raft_<name>` of a member's `/metrics`.
fn raft_gauge(addr: SocketAddr, name: &str) -> Option<u64> {
    let (status, body) = support::cluster::get(addr, "/metrics", Duration::from_secs(2))?;
    if status != 200 {
        return None;
    }
    body.lines()
        .find(|l| l.starts_with(&format!("reaktor_raft_{name}")))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// CPU time (user + system, clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |x| x.1)
        .split_whitespace()
        .collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

#[test]
#[ignore = "a benchmark: benches/failover.sh (JITTER=1)"]
fn election_thread_under_a_saturated_switch() {
    let seconds = env("JITTER_SECONDS", 20);
    let loaders = env("JITTER_CLIENTS", 4);
    let extra = format!(
        "{}\n[[core]]\nnuklei = [\"metrics\"]\n\n[[http.route]]\npath = \"/metrics\"\nto = \"metrics\"\n",
        topology(loaders, env("WINDOW", 1_048_576))
    );
    let clocks = Clocks {
        tick_ms: env("TICK_MS", 1),
        heartbeat_ms: env("HEARTBEAT_MS", 20),
        election_timeout_ms: env("ELECTION_MS", 150),
    };
    let cluster = Cluster::start_direct(3, clocks, &extra);
    let (master, epoch) = cluster.wait_master(Duration::from_secs(20));
    let addr = cluster.member(master).addr();
    let pid = cluster.member(master).pid().unwrap();
    // Each member's count of leader changes (a saturated master may answer slowly: retried).
    let changes = |c: &Cluster| -> Vec<u64> {
        c.members
            .iter()
            .map(|m| {
                (0..10)
                    .find_map(|_| raft_gauge(m.addr(), "leader_changes_total"))
                    .expect("a member's /metrics")
            })
            .collect()
    };
    let measure = |label: &str, load: bool| {
        let before_changes = changes(&cluster);
        let wakeups0 = raft_gauge(addr, "wakeups_total").unwrap_or(0);
        let late = || {
            ["1ms", "4ms", "16ms", "65ms"]
                .map(|t| raft_gauge(addr, &format!("wakeups_late_{t}_total")).unwrap_or(0))
        };
        let late0 = late();
        let cpu0 = cpu_ticks(pid);
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if load {
            for n in 0..loaders {
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    let (mut ws, _) = match RawWs::open(
                        addr,
                        &format!("/v1/ws/b{n}"),
                        &format!("tok-b{n}"),
                        Duration::from_secs(2),
                    ) {
                        Ok(Ok(ws)) => (ws, ()),
                        other => panic!("load client: {:?}", other.err()),
                    };
                    let mut next = n * 1_000_000_000;
                    let mut inflight = 0;
                    while !stop.load(Ordering::Relaxed) {
                        while inflight < 4 {
                            let names: Vec<String> =
                                (next..next + 10_000).map(|p| format!("\"q{p}\"")).collect();
                            next += 10_000;
                            ws.send_text(&format!(
                                r#"{{"op":"regport","id":1,"ports":[{}]}}"#,
                                names.join(",")
                            ))
                            .unwrap();
                            inflight += 1;
                        }
                        if let Ok(Incoming::Text(_)) = ws.recv(Duration::from_secs(5)) {
                            inflight -= 1;
                        }
                    }
                }));
            }
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / elapsed * 100.0;
        let after_changes = changes(&cluster);
        let late1 = late();
        let over: Vec<u64> = late1.iter().zip(late0).map(|(a, b)| a - b).collect();
        println!(
            "{label}: {seconds} s, master process cpu {cpu:.0}% of one core; election-thread wake-ups {}: late by >= 1 ms {}, >= 4 ms {}, >= 16 ms {}, >= 65 ms {} (the longest since start {} us); leader changes per member {:?} -> {:?}",
            raft_gauge(addr, "wakeups_total").unwrap_or(0) - wakeups0,
            over[0],
            over[1],
            over[2],
            over[3],
            raft_gauge(addr, "wakeup_late_max_us").unwrap_or(0),
            before_changes,
            after_changes
        );
        before_changes == after_changes
    };
    // Every member has counted the master's election (a follower that heard of it late would
    // count it during the first measurement and look like an election there).
    let deadline = Instant::now() + Duration::from_secs(5);
    while changes(&cluster).contains(&0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let quiet_idle = measure("idle", false);
    let quiet_loaded = measure("switch saturated by RegPort floods", true);
    let (still, still_epoch) = cluster.wait_master(Duration::from_secs(5));
    println!(
        "master before {master} (epoch {epoch}), after {still} (epoch {still_epoch}); no election while idle: {quiet_idle}, while saturated: {quiet_loaded}"
    );
    assert_eq!((still, still_epoch), (master, epoch), "a spurious election");
}
