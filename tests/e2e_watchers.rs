//! End-to-end tests of node-less watchers (issue 15: "a node or any token holder, subject to
//! auth, can watch ports ... and nodes") against the real reaktor, on one switch instance and
//! on two: curl as a dashboard on `GET /v1/watch` (Server-Sent Events) and Python websockets
//! on `/v1/ws/` (tests/python/coordination_e2e.py scenario `watchers`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::Value;
use support::{curl, python, rest_call as call, switch_topology, workspace, Server};

/// The test topology with a short history, a dashboard token `dash` (ports under `leader/`,
/// every node), `ops` (every node), at most 3 watchers per token and 4 in all.
fn watcher_topology(cores: usize) -> String {
    let mut t = switch_topology(262144, cores).replace(
        "[switch.limits]\n",
        "[switch.limits]\nwatch_history = 16\nmax_watchers_per_token = 3\nmax_watchers = 4\n",
    );
    t.push_str(
        "\n[[switch.token]]\ntoken = \"dash\"\nwatch_ports = [\"leader/\"]\nwatch_nodes = [\"\"]\n",
    );
    t.push_str("\n[[switch.token]]\ntoken = \"ops\"\nwatch_nodes = [\"\"]\n");
    t
}

/// A watcher by curl: `GET /v1/watch?{query}` as an event stream; its `data:` and `event:`
/// lines arrive on the channel.
fn watcher(server: &Server, token: &str, query: &str) -> (Child, Receiver<String>) {
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "60"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "Accept: text/event-stream"])
        .arg(server.url(&format!("/v1/watch?{query}")))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !line.is_empty() && tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The pushes of the next `data:` line (an `event: close` line comes back as itself).
fn next(lines: &Receiver<String>) -> Vec<Value> {
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("an SSE event");
    match line.strip_prefix("data: ") {
        Some(data) => match serde_json::from_str::<Value>(data).unwrap() {
            Value::Array(pushes) => pushes,
            detail => vec![detail],
        },
        None => vec![Value::String(line)],
    }
}

/// Watch pushes until `n` have arrived (skipping nothing else silently).
fn watch_pushes(lines: &Receiver<String>, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        for p in next(lines) {
            assert!(
                p["type"] == "watch" || p["type"] == "missed",
                "unexpected push {p} after {got:?}"
            );
            got.push(p);
        }
    }
    got
}

fn kill(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// The cursor after the `watching` push's and the events'.
fn advance(mut cursor: Vec<u64>, events: &[Value]) -> Vec<u64> {
    for e in events.iter().filter(|e| e["type"] == "watch") {
        let i = e["instance"].as_u64().unwrap() as usize;
        cursor[i] = cursor[i].max(e["seq"].as_u64().unwrap());
    }
    cursor
}

fn curl_watches_ports_resumes_is_limited_and_revoked(cores: usize) {
    let server = Server::start(&watcher_topology(cores));
    // 403 without the grant, with a message that says which grant.
    let (status, body) = call(
        &server,
        "tok-n1",
        "GET",
        "/v1/watch?ports=leader/&prefix=true",
        "",
    );
    assert_eq!(status, 406, "no event-stream accept: {body}");
    let refused = |token: &str, query: &str| {
        let (_, out) = curl(&[
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Accept: text/event-stream",
            &server.url(&format!("/v1/watch?{query}")),
        ]);
        out
    };
    let out = refused("tok-n1", "ports=leader/&prefix=true");
    assert!(out.ends_with("403") && out.contains("watch_ports"), "{out}");
    let out = refused("dash", "ports=other&prefix=true");
    assert!(out.ends_with("403"), "{out}");
    let out = refused("dash", "ports=leader/&from=1,2,3,4,5");
    assert!(out.ends_with("400") && out.contains("bad_cursor"), "{out}");
    let out = refused("nope", "nodes=n");
    assert!(out.ends_with("401"), "{out}");

    let (w, lines) = watcher(&server, "dash", "ports=leader/&prefix=true");
    let greeting = next(&lines);
    assert_eq!(
        (&greeting[0]["type"], &greeting[0]["watcher"]),
        (&"session".into(), &true.into()),
        "{greeting:?}"
    );
    let watching = next(&lines);
    assert_eq!(watching[0]["type"], "watching", "{watching:?}");
    let mut cursor: Vec<u64> = serde_json::from_value(watching[0]["cursor"].clone()).unwrap();
    assert_eq!(cursor.len(), cores);
    // A node registers and releases: the watcher sees both, with the reason.
    let node = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "60",
            "-H",
            "Authorization: Bearer tok-n3",
        ])
        .args(["-H", "Accept: text/event-stream"])
        .arg(server.url("/v1/nodes/n3/messages?address=n3.addr"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let reg = |ports: &str| {
        let mut last = (0, String::new());
        for _ in 0..100 {
            last = call(&server, "tok-n3", "POST", "/v1/nodes/n3/ports", ports);
            if last.0 == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last
    };
    assert_eq!(reg(r#"{"ports":["leader/db","other"]}"#).0, 200);
    let (status, _) = call(
        &server,
        "tok-n3",
        "DELETE",
        "/v1/nodes/n3/ports",
        r#"{"ports":["leader/db"]}"#,
    );
    assert_eq!(status, 200);
    let events = watch_pushes(&lines, 2);
    assert_eq!(
        (
            &events[0]["event"],
            &events[0]["port"],
            &events[0]["owner"],
            &events[0]["address"]
        ),
        (
            &"acquired".into(),
            &"leader/db".into(),
            &"n3".into(),
            &"n3.addr".into()
        ),
        "{events:?}"
    );
    assert_eq!(
        (&events[1]["event"], &events[1]["reason"]),
        (&"released".into(), &"unregistered".into())
    );
    cursor = advance(cursor, &events);
    // Counted as a watcher, not as a node, in the metrics (summed over every instance).
    let (_, metrics) = call(&server, "adm", "GET", "/v1/metrics", "");
    assert!(metrics.contains("\nswitch_watchers 1\n"), "{metrics}");
    assert!(metrics.contains("\nswitch_nodes_online 1\n"), "{metrics}");
    // Not a node: the online nodes are n3 alone.
    let (_, body) = call(&server, "multi", "GET", "/v1/nodes?prefix=", "");
    let nodes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(nodes["nodes"][0]["node"], "n3");
    // Limits: 3 per token; the 4th is 429.
    let (w2, l2) = watcher(&server, "dash", "nodes=n&prefix=true");
    let (w3, l3) = watcher(&server, "dash", "nodes=n&prefix=true");
    next(&l2);
    next(&l3);
    let out = refused("dash", "nodes=n");
    assert!(
        out.ends_with("429") && out.contains("max_watchers_per_token"),
        "{out}"
    );
    // And 4 in all: another token's second is 503.
    let (w4, l4) = watcher(&server, "ops", "nodes=n&prefix=true");
    next(&l4);
    let out = refused("ops", "nodes=n");
    assert!(
        out.ends_with("503") && out.contains("max_watchers)"),
        "{out}"
    );
    kill(w4);
    kill(w2);
    kill(w3);
    // Resumed from its cursor after a disconnect: what happened meanwhile, no gap.
    kill(w);
    assert_eq!(reg(r#"{"ports":["leader/x"]}"#).0, 200);
    let from = cursor
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (w, lines) = {
        // The slots of the killed watchers come free as their connections close.
        let mut opened = None;
        for _ in 0..100 {
            let (c, l) = watcher(
                &server,
                "dash",
                &format!("ports=leader/&prefix=true&from={from}"),
            );
            let first = next(&l);
            if first[0]["type"] == "session" {
                opened = Some((c, l));
                break;
            }
            kill(c);
            std::thread::sleep(Duration::from_millis(50));
        }
        opened.expect("a watcher slot came free")
    };
    let mut replay = Vec::new();
    while replay.iter().all(|p: &Value| p["port"] != "leader/x") {
        replay.extend(next(&lines).into_iter().filter(|p| p["type"] == "watch"));
    }
    assert_eq!(replay.len(), 1, "{replay:?}");
    cursor = advance(cursor, &replay);
    kill(w);
    // Gone while more happened than the history holds: told the exact range it missed.
    let many: Vec<String> = (0..40).map(|i| format!("\"leader/m{i}\"")).collect();
    assert_eq!(reg(&format!(r#"{{"ports":[{}]}}"#, many.join(","))).0, 200);
    let from = cursor
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (w, lines) = watcher(
        &server,
        "dash",
        &format!("ports=leader/&prefix=true&from={from}"),
    );
    let mut missed = None;
    for _ in 0..100 {
        if let Some(m) = next(&lines).into_iter().find(|p| p["type"] == "missed") {
            missed = Some(m);
            break;
        }
    }
    let missed = missed.expect("a missed push");
    let i = missed["instance"].as_u64().unwrap() as usize;
    assert_eq!(missed["from"].as_u64().unwrap(), cursor[i] + 1, "{missed}");
    // The token is removed and reloaded: the watcher is closed with token_revoked.
    let topology = std::fs::read_to_string(&server.topology).unwrap();
    let without = topology.replace(
        "\n[[switch.token]]\ntoken = \"dash\"\nwatch_ports = [\"leader/\"]\nwatch_nodes = [\"\"]\n",
        "",
    );
    assert_ne!(without, topology);
    std::fs::write(&server.topology, without).unwrap();
    let (status, body) = call(&server, "adm", "POST", "/v1/admin/reload", "");
    assert_eq!(status, 200, "{body}");
    let mut closed = None;
    for _ in 0..200 {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the close");
        if line == "event: close" {
            closed = lines.recv_timeout(Duration::from_secs(10)).ok();
            break;
        }
    }
    let closed = closed.expect("event: close");
    assert!(closed.contains("token_revoked"), "{closed}");
    kill(w);
    kill(node);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn curl_watches_ports_resumes_is_limited_and_revoked_on_one_instance() {
    curl_watches_ports_resumes_is_limited_and_revoked(1);
}

#[test]
fn curl_watches_ports_resumes_is_limited_and_revoked_on_two_instances() {
    curl_watches_ports_resumes_is_limited_and_revoked(2);
}

/// Python websockets as a watcher on `/v1/ws/` (scenario `watchers` of
/// tests/python/coordination_e2e.py).
fn websocket_watcher(cores: usize) {
    let server = Server::start(&watcher_topology(cores));
    let output = Command::new(python())
        .arg(workspace().join("tests/python/coordination_e2e.py"))
        .args(["watchers", &server.port.to_string()])
        .arg(&server.topology)
        .arg(server.pid().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (status, log) = server.stop();
    assert!(
        output.status.success() && stdout.contains("ok watchers"),
        "scenario watchers on {cores} instance(s) failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{log}"
    );
    assert!(status.success(), "reaktor exit {status}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_websocket_watcher_follows_nodes_adds_watches_and_is_closed_when_its_token_goes() {
    websocket_watcher(1);
    websocket_watcher(2);
}
