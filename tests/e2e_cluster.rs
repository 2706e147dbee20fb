//! A port switch cluster of three real `reaktor` processes on loopback: the election, the
//! members' views (`/v1/cluster`, `/readyz`, `reaktor cluster status`), a master killed with
//! `kill -9` and replaced, the killed member rejoining from its state directory, a partitioned
//! minority that never serves, and one process per state directory.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::{get, json_field, Clocks, Cluster};

/// Every member: echo for /healthz, the cluster's view at /v1/cluster and /readyz.
const STATUS_ONLY: &str = r#"
[[core]]
nuklei = ["tcp", "http", "echo", "cluster"]

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/v1/cluster"
to = "cluster"

[[http.route]]
path = "/readyz"
to = "cluster"
"#;

fn readyz(cluster: &Cluster, id: u64) -> Option<u16> {
    get(
        cluster.member(id).addr(),
        "/readyz",
        Duration::from_millis(500),
    )
    .map(|(s, _)| s)
}

#[test]
fn three_members_elect_one_master_and_every_member_says_so() {
    let cluster = Cluster::start(3, Clocks::default(), STATUS_ONLY);
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    // Give the followers a heartbeat to learn the leader.
    std::thread::sleep(Duration::from_millis(100));
    for m in &cluster.members {
        let body = cluster.status(m.id).expect("status answered");
        assert_eq!(json_field(&body, "id"), Some(m.id.to_string().as_str()));
        let leader = format!(
            "{{\"id\":{master},\"api\":\"{}\"}}",
            cluster.member(master).api()
        );
        assert!(body.contains(&leader), "member {}: {body}", m.id);
        let want = if m.id == master { 200 } else { 503 };
        assert_eq!(readyz(&cluster, m.id), Some(want), "member {}", m.id);
        let (status, body) = get(m.addr(), "/healthz", Duration::from_secs(1)).unwrap();
        assert_eq!((status, body.trim()), (200, "ok"));
    }
    let body = cluster.status(master).unwrap();
    assert_eq!(json_field(&body, "role"), Some("leader"));
    assert_eq!(json_field(&body, "epoch"), Some(epoch.to_string().as_str()));
    let lease: u64 = json_field(&body, "lease_remaining_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(lease > 0 && lease < 200, "lease {lease} ms");
    // The operator's view: one line per member, the master marked, exit status 0.
    let output = Command::new(support::BIN)
        .args(["cluster", "status", "--url", &cluster.member(1).api()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!("master: member {master} in epoch {epoch}")),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with('*')).count(),
        1,
        "{text}"
    );
}

#[test]
fn a_killed_master_is_replaced_within_a_second_and_rejoins_as_a_follower() {
    let mut cluster = Cluster::start(3, Clocks::default(), STATUS_ONLY);
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    let killed = Instant::now();
    cluster.kill9(master);
    let (next, next_epoch) = cluster.wait_master(Duration::from_secs(5));
    let took = killed.elapsed();
    assert_ne!(next, master);
    assert!(next_epoch > epoch, "epoch {next_epoch} after {epoch}");
    assert!(took < Duration::from_secs(1), "a new master after {took:?}");
    // The killed member comes back with its state directory: a follower of the new master.
    cluster.start_member(master);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = cluster.status(master).unwrap_or_default();
        if json_field(&body, "leader").is_some_and(|l| l.contains(&format!("\"id\":{next}")))
            || body.contains(&format!("\"leader\":{{\"id\":{next},"))
        {
            assert_eq!(json_field(&body, "role"), Some("follower"), "{body}");
            assert_eq!(json_field(&body, "serving"), Some("false"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member {master} did not rejoin: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        cluster.wait_master(Duration::from_secs(1)),
        (next, next_epoch)
    );
}

#[test]
fn a_partitioned_master_stops_serving_and_the_minority_never_serves() {
    let cluster = Cluster::start(3, Clocks::default(), STATUS_ONLY);
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    cluster.isolate(master, true);
    // The majority elects another master; the old one stops, and stays out while cut off.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (next, next_epoch) = loop {
        if let Some(&(id, epoch)) = cluster.serving().iter().find(|(id, _)| *id != master) {
            break (id, epoch);
        }
        assert!(
            Instant::now() < deadline,
            "no new master: {}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(next_epoch > epoch);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_ne!(
            readyz(&cluster, master),
            Some(200),
            "the isolated member serves"
        );
        cluster.serving();
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.isolate(master, false);
    std::thread::sleep(Duration::from_millis(700));
    let (after, _) = cluster.wait_master(Duration::from_secs(5));
    assert_eq!(cluster.serving().len(), 1);
    // PreVote: the member that was cut off did not disrupt the healthy master on its return.
    assert_eq!(after, next, "{}", cluster.logs());
}

#[test]
fn a_second_member_on_the_same_state_directory_is_refused() {
    let cluster = Cluster::start(1, Clocks::default(), STATUS_ONLY);
    cluster.wait_master(Duration::from_secs(10));
    let text = std::fs::read_to_string(&cluster.member(1).topology).unwrap();
    let api = cluster.member(1).api_port.to_string();
    let other = support::free_port().to_string();
    let copy = cluster.dir.0.join("again.toml");
    // Same state directory (relative to the same directory), another API port and peer port.
    let peer = json_field(
        &text.replace(" = ", "\":").replace("peer\":", "\"peer\":"),
        "peer",
    )
    .map(str::to_owned);
    let mut again = text.replace(
        &format!("127.0.0.1:{api}\""),
        &format!("127.0.0.1:{other}\""),
    );
    if let Some(peer) = peer {
        again = again.replace(&peer, &format!("127.0.0.1:{}", support::free_port()));
    }
    std::fs::write(&copy, again).unwrap();
    let output = Command::new(support::BIN)
        .args(["run", "--topology"])
        .arg(&copy)
        .arg("--stream-dir")
        .arg(cluster.dir.0.join("streams-again"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("in use by another running member"),
        "{stderr}"
    );
    // The first member still serves.
    assert_eq!(cluster.serving().len(), 1);
}

/// Members' ports come from outside the ephemeral range and are never handed out twice while
/// this process lives: a killed member's port taken by another test (its member then received
/// the old peers' HELLOs) or by an outgoing connection's source port (the restart failed with
/// "Address already in use") were the cluster tests' unexplained flakes.
#[test]
fn test_ports_are_not_ephemeral_and_stay_reserved() {
    let (first, last) = support::reserved_port_range();
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let bounds: Vec<u16> = ephemeral
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let port = support::free_port();
        assert!(
            (first..=last).contains(&port) && !(bounds[0]..=bounds[1]).contains(&port),
            "port {port} is in the ephemeral range {bounds:?}"
        );
        assert!(seen.insert(port), "port {port} handed out twice");
        // Another process (here: another open of the lock file) cannot reserve it.
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .open(
                std::env::temp_dir()
                    .join("reaktor-test-ports")
                    .join(port.to_string()),
            )
            .unwrap();
        assert!(lock.try_lock().is_err(), "port {port} is not reserved");
    }
}

/// A member with `/metrics`, for the election thread's counters.
const WITH_METRICS: &str = r#"
[[core]]
nuklei = ["tcp", "http", "cluster", "metrics"]

[[http.route]]
path = "/readyz"
to = "cluster"

[[http.route]]
path = "/v1/cluster"
to = "cluster"

[[http.route]]
path = "/metrics"
to = "metrics"
"#;

/// The election thread's polls and deadline wake-ups so far, from `/metrics`.
fn election_polls_and_wakeups(cluster: &Cluster) -> (u64, u64) {
    let (status, body) = get(cluster.member(1).addr(), "/metrics", Duration::from_secs(2))
        .expect("metrics answered");
    assert_eq!(status, 200, "{body}");
    let value = |line: &str| {
        line.split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
    };
    let polls = body
        .lines()
        .find(|l| l.starts_with("reaktor_nukleus_polls_total{") && l.contains("kind=\"raft\""))
        .and_then(value)
        .expect("the raft instance's polls");
    let wakeups = body
        .lines()
        .find(|l| l.starts_with("reaktor_raft_wakeups_total"))
        .and_then(value)
        .expect("the election's wake-ups");
    (polls, wakeups)
}

/// The election's core reads no rings, so it parks as soon as a poll finds nothing to do
/// (`IdleStrategy::alone`, given by the wiring to a core whose kind runs alone): spinning
/// after each of its 200 wake-ups a second (64 polls, 16 yields, ~82 polls per wake-up) took
/// ~2 % of the master's cpu under SCHED_FIFO, in bursts the switch on the same cpu waited
/// through (issue 14, BENCHMARKS.md "RegPort and SendMsg with `[cluster]` on and off"). Seen
/// end to end, from the member's own counters.
#[test]
fn the_election_thread_parks_after_each_wake_up_instead_of_spinning() {
    let cluster = Cluster::start_direct(1, Clocks::default(), WITH_METRICS);
    cluster.wait_master(Duration::from_secs(10));
    let (polls0, wakeups0) = election_polls_and_wakeups(&cluster);
    std::thread::sleep(Duration::from_secs(1));
    let (polls1, wakeups1) = election_polls_and_wakeups(&cluster);
    let (polls, wakeups) = (polls1 - polls0, wakeups1 - wakeups0);
    // tick_ms = 5: ~200 deadline wake-ups in the second (fewer on a busy machine).
    assert!(wakeups >= 20, "{wakeups} wake-ups in 1 s");
    // A wake-up polls, polls once more after work, then parks; early wake-ups (epoll's
    // millisecond timeouts) add a few. Spinning was ~80 polls per wake-up.
    assert!(
        polls <= 4 * wakeups + 20,
        "{polls} polls for {wakeups} wake-ups: the election core spins"
    );
}
