//! The port switch of a three-member cluster, real processes on loopback: followers redirect
//! every switch call to the master (REST, SSE and WebSocket upgrades), the master stamps its
//! epoch on every reply and push batch, a killed master is replaced and its nodes registered
//! again within a second, a stopped (SIGSTOP) master stops serving before another member
//! starts (from the times both sides log), a partitioned master closes its receiving
//! connections with "not master" and the minority never serves.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{assert_no_overlap, get, json_field, location, Clocks, Cluster};
use support::wsclient::{Incoming, RawWs};

const SWITCH: &str = r#"
[[core]]
nuklei = ["tcp", "http", "ws", "echo", "switch", "cluster"]

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/v1/cluster"
to = "cluster"

[[http.route]]
path = "/readyz"
to = "cluster"

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"

[switch]
lease_ms = 3000

[[switch.token]]
token = "tok-n1"
nodes = ["n1"]

[[switch.token]]
token = "tok-n2"
nodes = ["n2"]

[[switch.token]]
token = "tok-admin"
admin = true
"#;

const SECOND: Duration = Duration::from_secs(1);

/// A raw HTTP request on a fresh connection: (status, headers and body as text).
fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let response = support::raw_exchange(addr, request.as_bytes());
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn regport(ws: &mut RawWs, id: u64, ports: &[&str]) -> std::io::Result<String> {
    let ports: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    let request = format!(
        r#"{{"op":"regport","id":{id},"ports":[{}]}}"#,
        ports.join(",")
    );
    ws.call(&request, id, Duration::from_secs(2))
        .map(|(reply, _)| reply)
}

fn epoch_of(reply: &str) -> u64 {
    json_field(reply, "epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {reply}"))
}

#[test]
fn followers_redirect_every_switch_call_and_the_master_stamps_its_epoch() {
    let cluster = Cluster::start(3, Clocks::default(), SWITCH);
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let follower = cluster.members.iter().find(|m| m.id != master).unwrap();
    let master_api = cluster.member(master).api();
    // REST: 307 to the master's same path, JSON leader hint.
    let (status, text) = http(
        follower.addr(),
        "POST /v1/nodes/n1/ports?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-n1\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"ports\":[]}\n",
    );
    assert_eq!(status, 307, "{text}");
    assert!(
        text.contains(&format!("Location: {master_api}/v1/nodes/n1/ports?x=1\r\n")),
        "{text}"
    );
    assert!(text.contains("\"code\":\"not_master\""), "{text}");
    assert!(
        text.contains(&format!(
            "\"leader\":{{\"api\":\"{master_api}\",\"id\":{master}}}"
        )),
        "{text}"
    );
    // SSE WaitMsg: the same.
    let (status, text) = http(
        follower.addr(),
        "GET /v1/nodes/n1/messages HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer tok-n1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 307, "{text}");
    // WebSocket upgrade: 307 to the master's ws:// URL, never a 101.
    let refused = RawWs::open(follower.addr(), "/v1/ws/n1?address=a%3A1", "tok-n1", SECOND)
        .unwrap()
        .err()
        .expect("a follower refuses the upgrade");
    assert_eq!(refused.status, 307);
    let ws_master = master_api.replace("http://", "ws://");
    assert_eq!(
        refused.header("location"),
        Some(format!("{ws_master}/v1/ws/n1?address=a%3A1").as_str())
    );
    assert!(refused.body.contains("\"not_master\""), "{}", refused.body);
    // Following it reaches the master, where replies carry the epoch and a sequence, and a
    // push batch starts with the epoch.
    let (addr, target) = location(refused.header("location").unwrap()).unwrap();
    let mut ws = RawWs::open(addr, &target, "tok-n1", SECOND)
        .unwrap()
        .unwrap();
    let reply = regport(&mut ws, 1, &["p1", "p2"]).unwrap();
    assert_eq!(epoch_of(&reply), epoch, "{reply}");
    let first: u64 = json_field(&reply, "sequence").unwrap().parse().unwrap();
    let (reply, pushes) = ws
        .call(
            r#"{"op":"sendmsg","id":2,"messages":[{"port":"p1","body":"hi"}]}"#,
            2,
            Duration::from_secs(2),
        )
        .unwrap();
    assert_eq!(epoch_of(&reply), epoch);
    let second: u64 = json_field(&reply, "sequence").unwrap().parse().unwrap();
    assert!(second > first, "{first} then {second}");
    let push = match pushes.first() {
        Some(p) => p.clone(),
        None => match ws.recv(Duration::from_secs(2)).unwrap() {
            Incoming::Text(t) => t,
            other => panic!("{other:?}"),
        },
    };
    assert!(
        push.starts_with(&format!(
            "[{{\"type\":\"epoch\",\"epoch\":{epoch}}},{{\"type\":\"msg\""
        )),
        "{push}"
    );
    // Errors carry the epoch too; the member's own metrics stay local on a follower.
    let (status, text) = http(
        cluster.member(master).addr(),
        "POST /v1/nodes/n2/ports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-n2\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"ports\":[\"p3\"]}",
    );
    assert_eq!(status, 409, "{text}");
    assert!(text.contains(&format!("\"epoch\":{epoch},")), "{text}");
    let (status, _) = get(follower.addr(), "/v1/metrics", SECOND).unwrap_or_default();
    assert_eq!(
        status, 401,
        "metrics need the admin token, and are answered locally"
    );
}

#[test]
fn a_killed_master_is_replaced_and_its_node_registered_again_within_a_second() {
    let mut cluster = Cluster::start(3, Clocks::default(), SWITCH);
    cluster.wait_master(Duration::from_secs(10));
    let (mut ws, master, _) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(5));
    let before = epoch_of(&regport(&mut ws, 1, &["p1", "p2"]).unwrap());
    let killed = Instant::now();
    cluster.kill9(master);
    // The node sees its connection end, finds the new master and registers again.
    assert!(
        ws.recv(Duration::from_secs(2)).is_err(),
        "connection ends with the process"
    );
    let (mut ws, next, refusals) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(3));
    let reply = regport(&mut ws, 1, &["p1", "p2"]).unwrap();
    let took = killed.elapsed();
    assert_ne!(next, master);
    assert!(epoch_of(&reply) > before, "{reply}");
    assert_eq!(
        json_field(&reply, "registered"),
        Some("2"),
        "a new master starts empty: {reply}"
    );
    assert!(
        took < SECOND,
        "RegPort answered by the new master {took:?} after the kill; refusals: {refusals:?}"
    );
}

#[test]
fn a_stopped_master_stops_serving_before_another_member_starts() {
    let mut cluster = Cluster::start(3, Clocks::default(), SWITCH);
    cluster.wait_master(Duration::from_secs(10));
    let (mut ws, master, _) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(5));
    // The node keeps registering until the master is stopped, then with whoever serves.
    let mut seen = Vec::new();
    let mut id = 0;
    let stop_at = Instant::now() + Duration::from_millis(300);
    while Instant::now() < stop_at {
        id += 1;
        seen.push(epoch_of(&regport(&mut ws, id, &["p1"]).unwrap()));
    }
    cluster.signal_stop(master, true);
    let stopped = Instant::now();
    let (mut ws2, next, refusals) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(3));
    assert_ne!(
        next,
        master,
        "stopped {:?} ago; refusals: {refusals:?}",
        stopped.elapsed()
    );
    while stopped.elapsed() < Duration::from_secs(3) {
        id += 1;
        seen.push(epoch_of(&regport(&mut ws2, id, &["p1"]).unwrap()));
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.signal_stop(master, false);
    // Resumed, the old master finds its lease over: its node's connection is closed with
    // "not master" (naming the master if it already knows it), and it serves nothing more.
    let mut closed = None;
    let deadline = Instant::now() + Duration::from_secs(2);
    while closed.is_none() && Instant::now() < deadline {
        match ws.recv(Duration::from_millis(500)) {
            Ok(Incoming::Close(code, reason)) => closed = Some((code, reason)),
            Ok(Incoming::Text(_)) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    let (code, reason) =
        closed.expect("the stopped master's connection is closed after it resumes");
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.starts_with("not master"), "{reason}");
    id += 1;
    seen.push(epoch_of(&regport(&mut ws2, id, &["p1"]).unwrap()));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "epochs went back: {seen:?}"
    );
    let intervals = assert_no_overlap(&cluster);
    eprintln!("serving intervals (member, epoch, first us, last us): {intervals:?}");
    let epochs: std::collections::BTreeSet<u64> = intervals.iter().map(|i| i.1).collect();
    assert!(epochs.len() >= 2, "both masters served: {intervals:?}");
}

#[test]
fn a_partitioned_master_closes_its_connections_and_the_minority_never_serves() {
    let cluster = Cluster::start(3, Clocks::default(), SWITCH);
    cluster.wait_master(Duration::from_secs(10));
    let (mut ws, master, _) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(5));
    regport(&mut ws, 1, &["p1"]).unwrap();
    // A REST call in flight when the lease ends: its body arrives after.
    let mut slow = std::net::TcpStream::connect(cluster.member(master).addr()).unwrap();
    std::io::Write::write_all(
        &mut slow,
        b"POST /v1/nodes/n1/ports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-n1\r\nContent-Length: 16\r\n\r\n{\"ports\":",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    cluster.isolate(master, true);
    let cut = Instant::now();
    match ws.recv(Duration::from_secs(2)).unwrap() {
        Incoming::Close(code, reason) => {
            assert_eq!(code, 4003, "{reason}");
            assert!(reason.starts_with("not master"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        cut.elapsed() < Duration::from_millis(500),
        "closed {:?} after the cut",
        cut.elapsed()
    );
    std::io::Write::write_all(&mut slow, b"[\"p9\"]}").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut slow, &mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 307"),
        "{answer}"
    );
    // The minority (the old master alone) never serves while cut off.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match RawWs::open(cluster.member(master).addr(), "/v1/ws/n2", "tok-n2", SECOND) {
            Ok(Ok(_)) => panic!("the isolated member accepted a receiving connection"),
            Ok(Err(refused)) => assert!(matches!(refused.status, 307 | 503), "{refused:?}"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut ws, next, _) = cluster.connect_node("n1", "tok-n1", Duration::from_secs(3));
    assert_ne!(next, master);
    regport(&mut ws, 1, &["p1"]).unwrap();
    cluster.isolate(master, false);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cluster.wait_master(Duration::from_secs(3)).0, next);
    assert_no_overlap(&cluster);
}
