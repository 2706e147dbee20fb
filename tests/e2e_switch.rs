//! End-to-end tests of the port switch: the real reaktor with tcp, http, ws and switch, driven
//! by real clients — curl for REST, and tests/python/switch_e2e.py (http.client + the
//! `websockets` package, see scripts/setup-test-deps.sh) for concurrent nodes and push.

mod support;

use std::process::Command;

use support::{curl, python, switch_topology, workspace, Server};

fn scenario(name: &str) {
    scenario_on(name, 1);
}

fn scenario_on(name: &str, cores: usize) {
    // The ordering test floods one receiver: give it room (a slow-consumer disconnect is
    // tested in auth_limits with the small queue).
    let queue = if name == "order" { 64 << 20 } else { 262144 };
    let server = Server::start(&switch_topology(queue, cores));
    // The stall scenario stops and continues the server itself.
    let pid = (name == "stall").then(|| server.pid().to_string());
    let output = Command::new(python())
        .arg(workspace().join("tests/python/switch_e2e.py"))
        .args([name, &server.port.to_string()])
        .args(pid)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (status, server_log) = server.stop();
    assert!(
        output.status.success() && stdout.contains(&format!("ok {name}")),
        "scenario {name} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{server_log}"
    );
    assert!(status.success(), "reaktor exit {status}: {server_log}");
    assert!(!server_log.contains("panicked"), "{server_log}");
}

#[test]
fn ownership_is_exclusive_under_concurrent_regport() {
    scenario("exclusive");
}

#[test]
fn releases_notify_subscribers() {
    scenario("release");
}

#[test]
fn hundred_thousand_messages_in_order_without_duplicates() {
    scenario("order");
}

#[test]
fn unicast_multicast_broadcast_reach_exactly_their_nodes() {
    scenario("cast");
}

#[test]
fn auth_and_limit_errors() {
    scenario("auth_limits");
}

/// `kill -STOP` for 2.5 leases, then `kill -CONT`: the nodes that kept reletting during the
/// stall (by ping, by request, by REST for SSE) stay online; a silent one still expires.
#[test]
fn a_server_stall_longer_than_the_lease_releases_only_silent_nodes() {
    scenario("stall");
}

// The same scenarios with the switch split over two instances (fission): ports sharded by
// name, nodes homed by id, batches split and merged across the mesh.

#[test]
fn two_switch_instances_keep_ownership_exclusive_under_concurrent_regport() {
    scenario_on("exclusive", 2);
}

#[test]
fn two_switch_instances_notify_subscribers_of_releases() {
    scenario_on("release", 2);
}

#[test]
fn two_switch_instances_deliver_a_hundred_thousand_messages_in_order_without_duplicates() {
    scenario_on("order", 2);
}

#[test]
fn two_switch_instances_reach_exactly_the_nodes_of_unicast_multicast_broadcast() {
    scenario_on("cast", 2);
}

#[test]
fn two_switch_instances_answer_auth_and_limit_errors() {
    scenario_on("auth_limits", 2);
}

#[test]
fn two_switch_instances_after_a_server_stall_release_only_silent_nodes() {
    scenario_on("stall", 2);
}

/// Plain curl: the REST surface answers JSON with the documented statuses.
#[test]
fn curl_rest_round_trip() {
    let server = Server::start(&switch_topology(262144, 1));
    let auth = "Authorization: Bearer tok-n1";
    // RegPort before WaitMsg: 409 node_not_online.
    let (code, body) = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "POST",
        "-H",
        auth,
        "-d",
        r#"{"ports":["a"]}"#,
        &server.url("/v1/nodes/n1/ports"),
    ]);
    assert_eq!(code, 0);
    assert!(
        body.contains("node_not_online") && body.ends_with(" 409"),
        "{body}"
    );
    // SSE WaitMsg in the background, then RegPort succeeds and a message is pushed to it.
    let sse = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "3", "-H", auth])
        .args(["-H", "Accept: text/event-stream"])
        .arg(server.url("/v1/nodes/n1/messages?address=10.1.1.1:80"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = curl(&[
            "-X",
            "POST",
            "-H",
            auth,
            "-d",
            r#"{"ports":["a"]}"#,
            &server.url("/v1/nodes/n1/ports"),
        ]);
        if body == r#"{"registered":1,"failed":[]}"# {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer tok-n2",
        "-d",
        r#"{"messages":[{"port":"a","body":"hi \"there\""}]}"#,
        &server.url("/v1/messages"),
    ]);
    assert_eq!(body, r#"{"delivered":1,"dropped":0}"#);
    let (_, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer tok-n2",
        "-d",
        r#"{"ports":["a","b"]}"#,
        &server.url("/v1/ports/query"),
    ]);
    assert_eq!(
        body,
        r#"{"ports":[{"port":"a","owner":"n1","address":"10.1.1.1:80"},{"port":"b","owner":null,"address":null}]}"#
    );
    let output = sse.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&output.stdout);
    // The stream opens with the connection's session, then the pushes.
    assert!(
        events.starts_with(r#"data: [{"type":"session","#),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l == r#"data: [{"type":"msg","port":"a","body":"hi \"there\""}]"#),
        "{events}"
    );
    let (_, metrics) = curl(&[
        "-H",
        "Authorization: Bearer adm",
        &server.url("/v1/metrics"),
    ]);
    assert!(
        metrics.contains("switch_messages_sent_total 1"),
        "{metrics}"
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// docs/openapi.yaml is true of the running switch: scripts/schemathesis.sh (about 20 s)
/// fuzzes every REST operation and fails on server errors and schema violations.
#[test]
fn openapi_document_holds_under_schemathesis() {
    let output = Command::new(workspace().join("scripts/schemathesis.sh"))
        .env("REAKTOR_BIN", support::BIN)
        .env("MAX_EXAMPLES", "40")
        .output()
        .expect("run scripts/schemathesis.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("No issues found"),
        "schemathesis found issues\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same for a one-member cluster, whose replies carry the epoch and fencing sequence.
#[test]
fn openapi_document_holds_for_a_cluster_member_under_schemathesis() {
    let output = Command::new(workspace().join("scripts/schemathesis.sh"))
        .env("REAKTOR_BIN", support::BIN)
        .env("MAX_EXAMPLES", "25")
        .env("CLUSTER", "1")
        .output()
        .expect("run scripts/schemathesis.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("No issues found"),
        "schemathesis found issues\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// examples/chat/demo.py runs against examples/default.toml (on a free port, unpinned).
#[test]
fn chat_example_runs_against_the_default_topology() {
    let default = std::fs::read_to_string(workspace().join("examples/default.toml")).unwrap();
    let topology = default
        .replace("127.0.0.1:8080", "127.0.0.1:{PORT}")
        .replace("pin = true", "pin = false")
        .replace("stream_capacity = 16777216", "stream_capacity = 4194304");
    let server = Server::start(&topology);
    let output = Command::new(python())
        .arg(workspace().join("examples/chat/demo.py"))
        .args(["--server", &format!("127.0.0.1:{}", server.port)])
        .output()
        .expect("run demo.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (status, log) = server.stop();
    assert!(
        output.status.success() && stdout.contains("demo: ok"),
        "{stdout}\n{}\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(status.success(), "{log}");
}
