//! End-to-end tests of issue 15 (the port switch as a coordination service): the defects'
//! regression tests and the coordination features (watches, listings, handover, sessions,
//! token reload, acknowledged delivery) against the real reaktor, with curl and the Python
//! scenarios of tests/python/coordination_e2e.py, on one switch instance and on two.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl, python, rest_call as call, switch_topology, workspace, Server};

/// `node`'s SSE receiving connection by a curl process (no address announced).
fn sse(server: &Server, node: &str) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "-N", "--max-time", "30"])
        .args(["-H", &format!("Authorization: Bearer tok-{node}")])
        .args(["-H", "Accept: text/event-stream"])
        .arg(server.url(&format!("/v1/nodes/{node}/messages")))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed")
}

/// Retries `f` every 20 ms until it returns true or `within` has passed.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Defect 1: curl's SSE receiving connection ends with a normal close (FIN) when curl is
/// killed; the node goes offline at once and its ports are free, although it kept
/// reletting (the old switch kept it online, reported `delivered` for messages to it and
/// held its ports while relets came). Defect 5 on the way: it announced no address, so
/// its address is `null`.
fn a_closed_sse_connection_releases_its_node_at_once(cores: usize) {
    let server = Server::start(&switch_topology(262144, cores));
    let mut curl_sse = sse(&server, "n3");
    assert!(
        eventually(Duration::from_secs(10), || {
            call(
                &server,
                "tok-n3",
                "POST",
                "/v1/nodes/n3/ports",
                r#"{"ports":["held"]}"#,
            ) == (200, r#"{"registered":1,"failed":[]}"#.into())
        }),
        "n3's SSE WaitMsg did not come up"
    );
    let (_, body) = call(
        &server,
        "multi",
        "POST",
        "/v1/ports/query",
        r#"{"ports":["held"]}"#,
    );
    assert_eq!(
        body,
        r#"{"ports":[{"port":"held","owner":"n3","address":null}]}"#
    );
    let (_, body) = call(
        &server,
        "multi",
        "POST",
        "/v1/messages",
        r#"{"messages":[{"port":"held","body":"before"}]}"#,
    );
    assert_eq!(body, r#"{"delivered":1,"dropped":0}"#);
    // curl is killed: the kernel closes its socket with a FIN.
    let _ = Command::new("kill").arg(curl_sse.id().to_string()).status();
    let _ = curl_sse.wait();
    let t0 = Instant::now();
    let released = eventually(Duration::from_secs(3), || {
        // The node keeps reletting, as a client whose SSE reader died would.
        let _ = call(&server, "tok-n3", "POST", "/v1/nodes/n3/relet", "");
        let (_, body) = call(
            &server,
            "multi",
            "POST",
            "/v1/nodes/query",
            r#"{"nodes":["n3"]}"#,
        );
        body.contains(r#""online":false"#)
    });
    assert!(
        released,
        "n3 still online {:?} after its SSE connection closed",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    let (status, body) = call(&server, "tok-n3", "POST", "/v1/nodes/n3/relet", "");
    assert_eq!(status, 409, "{body}");
    let (_, body) = call(
        &server,
        "multi",
        "POST",
        "/v1/messages",
        r#"{"messages":[{"port":"held","body":"after"}]}"#,
    );
    assert_eq!(body, r#"{"delivered":0,"dropped":1}"#);
    let (_, body) = call(
        &server,
        "multi",
        "POST",
        "/v1/ports/query",
        r#"{"ports":["held"]}"#,
    );
    assert_eq!(
        body,
        r#"{"ports":[{"port":"held","owner":null,"address":null}]}"#
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_closed_sse_connection_releases_its_node_at_once_on_one_instance() {
    a_closed_sse_connection_releases_its_node_at_once(1);
}

#[test]
fn a_closed_sse_connection_releases_its_node_at_once_on_two_instances() {
    a_closed_sse_connection_releases_its_node_at_once(2);
}

/// The test topology with a short watch history and acknowledgement timeout.
fn coordination_topology(cores: usize) -> String {
    switch_topology(262144, cores).replace(
        "[switch.limits]\n",
        "[switch.limits]\nwatch_history = 16\nack_timeout_ms = 1000\n",
    )
}

/// Runs scenario `name` of tests/python/coordination_e2e.py against a reaktor whose switch
/// runs on `cores` instances.
fn scenario(name: &str, cores: usize) {
    let server = Server::start(&coordination_topology(cores));
    let output = Command::new(python())
        .arg(workspace().join("tests/python/coordination_e2e.py"))
        .args([name, &server.port.to_string()])
        .arg(&server.topology)
        .arg(server.pid().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (status, server_log) = server.stop();
    assert!(
        output.status.success() && stdout.contains(&format!("ok {name}")),
        "scenario {name} on {cores} instance(s) failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{server_log}"
    );
    assert!(status.success(), "reaktor exit {status}: {server_log}");
    assert!(!server_log.contains("panicked"), "{server_log}");
}

#[test]
fn watches_number_events_resume_from_a_cursor_and_report_what_was_missed() {
    scenario("watches", 1);
    scenario("watches", 2);
}

#[test]
fn listings_are_paginated_bounded_and_list_every_port_once() {
    scenario("listings", 1);
    scenario("listings", 2);
}

#[test]
fn handover_moves_ports_without_freeing_them_and_compare_and_register_needs_the_owner() {
    scenario("handover", 1);
    scenario("handover", 2);
}

#[test]
fn a_rest_call_naming_a_replaced_session_is_refused() {
    scenario("sessions", 1);
    scenario("sessions", 2);
}

#[test]
fn acknowledged_delivery_waits_for_the_receivers_acknowledgement() {
    scenario("acked", 1);
    scenario("acked", 2);
}

#[test]
fn a_token_reload_closes_the_connections_of_removed_tokens() {
    scenario("reload", 1);
    scenario("reload", 2);
}

/// curl as a node: its SSE stream names its session, carries its watch's events and an
/// acknowledged message, which it acknowledges with another curl; listings and a handover
/// by curl.
fn curl_watches_acknowledges_lists_and_hands_over(cores: usize) {
    use std::io::{BufRead, BufReader};
    // curl does not relet: a lease longer than the test takes on a loaded machine (the
    // default 1.5 s ran out before the handover once).
    let topology = coordination_topology(cores).replace("lease_ms = 1500", "lease_ms = 30000");
    assert!(topology.contains("lease_ms = 30000"));
    let server = Server::start(&topology);
    let mut stream = sse(&server, "n3");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = stream.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data: ") {
                if lines_tx.send(data.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    let next = || -> serde_json::Value {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an SSE event");
        serde_json::from_str(&line).unwrap()
    };
    let greeting = next();
    assert_eq!(greeting[0]["type"], "session", "{greeting}");
    let session = greeting[0]["session"].as_u64().unwrap();
    let (status, body) = call(
        &server,
        "tok-n3",
        "POST",
        "/v1/nodes/n3/watches",
        &format!(r#"{{"ports":"c:","prefix":true,"session":{session}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &server,
        "tok-n3",
        "POST",
        "/v1/nodes/n3/ports",
        r#"{"ports":["c:1","c:2","c:3"]}"#,
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"registered":3,"failed":[]}"#)
    );
    let mut acquired = Vec::new();
    while acquired.len() < 3 {
        for e in next().as_array().unwrap() {
            assert_eq!(
                (&e["type"], &e["event"]),
                (&"watch".into(), &"acquired".into())
            );
            acquired.push(e["port"].as_str().unwrap().to_string());
        }
    }
    acquired.sort();
    assert_eq!(acquired, ["c:1", "c:2", "c:3"]);
    // An acknowledged message: the sender's curl waits for the receiver's.
    let url = server.url("/v1/messages");
    let sender = std::thread::spawn(move || {
        curl(&[
            "-H",
            "Authorization: Bearer multi",
            "-d",
            r#"{"messages":[{"port":"c:1","body":"hello"}],"ack":true}"#,
            &url,
        ])
        .1
    });
    let pushed = next();
    assert_eq!(pushed[0]["body"], "hello", "{pushed}");
    let upto = pushed[0]["ack"].as_u64().unwrap();
    let (status, body) = call(
        &server,
        "tok-n3",
        "POST",
        "/v1/nodes/n3/ack",
        &format!(r#"{{"upto":{upto},"session":{session}}}"#),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"acknowledged":1}"#));
    assert_eq!(
        sender.join().unwrap(),
        r#"{"delivered":1,"dropped":0,"acknowledged":1,"unacknowledged":0}"#
    );
    // Listings, page by page.
    let (_, body) = call(&server, "multi", "GET", "/v1/ports?prefix=c:&limit=2", "");
    assert_eq!(
        body,
        r#"{"ports":[{"port":"c:1","owner":"n3","address":null},{"port":"c:2","owner":"n3","address":null}],"next":"c:2"}"#
    );
    let (_, body) = call(
        &server,
        "multi",
        "GET",
        "/v1/ports?prefix=c:&limit=2&after=c:2",
        "",
    );
    assert_eq!(
        body,
        r#"{"ports":[{"port":"c:3","owner":"n3","address":null}],"next":null}"#
    );
    let (_, body) = call(&server, "multi", "GET", "/v1/nodes?prefix=n3", "");
    assert_eq!(
        body,
        r#"{"nodes":[{"node":"n3","address":null,"ports":3}],"next":null}"#
    );
    // A handover to an SSE node: n4 is told, the watcher sees one `moved`.
    let mut stream4 = sse(&server, "n4");
    let online = eventually(Duration::from_secs(10), || {
        call(&server, "tok-n4", "POST", "/v1/nodes/n4/relet", "").0 == 200
    });
    assert!(online, "n4's SSE WaitMsg did not come up");
    let (status, body) = call(
        &server,
        "tok-n3",
        "POST",
        "/v1/nodes/n3/handover",
        r#"{"to":"n4","ports":["c:2"]}"#,
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"moved":["c:2"],"not_owned":[],"unknown":[]}"#)
    );
    let moved = next();
    assert_eq!(
        (
            &moved[0]["event"],
            &moved[0]["port"],
            &moved[0]["owner"],
            &moved[0]["from"]
        ),
        (&"moved".into(), &"c:2".into(), &"n4".into(), &"n3".into()),
        "{moved}"
    );
    let (_, body) = call(&server, "multi", "GET", "/v1/nodes/n4/ports", "");
    assert!(
        body.starts_with(r#"{"ports":["c:2"],"next":null"#),
        "{body}"
    );
    for child in [&mut stream, &mut stream4] {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn curl_watches_acknowledges_lists_and_hands_over_on_one_instance() {
    curl_watches_acknowledges_lists_and_hands_over(1);
}

#[test]
fn curl_watches_acknowledges_lists_and_hands_over_on_two_instances() {
    curl_watches_acknowledges_lists_and_hands_over(2);
}
