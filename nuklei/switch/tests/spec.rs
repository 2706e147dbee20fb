//! The port switch, specified by example.

use std::collections::HashMap;
use std::sync::Arc;

use nukleus_switch::api;
use nukleus_switch::limits::{LimitError, Limits};
use nukleus_switch::switch::{CloseReason, Config, Metrics, Output, Switch, SwitchError};
use nukleus_switch::{NodeIdx, Push, ReleaseReason};

const LEASE: u64 = 1_000;

fn switch(shards: usize) -> Switch {
    Switch::new(Config {
        lease_ms: LEASE,
        shards,
        limits: Limits::default(),
        ..Config::default()
    })
}

fn switch_with(limits: Limits) -> Switch {
    Switch::new(Config {
        lease_ms: LEASE,
        shards: 4,
        limits,
        ..Config::default()
    })
}

/// Bring `node` online on connection `conn` at time 0 with address `<node>.addr:7000`.
fn online(sw: &mut Switch, node: &str, conn: u64) -> NodeIdx {
    let mut out = Vec::new();
    let s = sw
        .wait_msg(node, &format!("{node}.addr:7000"), conn, 0, &mut out)
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
    s.node
}

fn reg(sw: &mut Switch, node: &str, ports: &[&str]) -> Vec<(String, String, String)> {
    reg_sub(sw, node, ports, false)
}

fn reg_sub(
    sw: &mut Switch,
    node: &str,
    ports: &[&str],
    subscribe: bool,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let r = sw.reg_port(node, ports, subscribe, &mut out).unwrap();
    r.failed
        .into_iter()
        .map(|f| {
            (
                ports[f.index].to_string(),
                f.owner.to_string(),
                f.address.to_string(),
            )
        })
        .collect()
}

fn pushes(sw: &mut Switch, node: &str) -> Vec<Push> {
    let idx = sw.node_index(node).expect("node is known");
    std::iter::from_fn(|| sw.pop(idx)).collect()
}

fn released(port: &str, reason: ReleaseReason) -> Push {
    Push::Released {
        port: Arc::from(port),
        reason,
    }
}

fn msg(port: &str, body: &str) -> Push {
    Push::Msg {
        port: Arc::from(port),
        body: Arc::from(body),
    }
}

#[test]
fn a_port_is_owned_by_one_node_at_a_time() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    online(&mut sw, "b", 2);
    assert!(reg(&mut sw, "a", &["user:42"]).is_empty());
    let failed = reg(&mut sw, "b", &["user:42", "user:43"]);
    assert_eq!(
        failed,
        vec![("user:42".into(), "a".into(), "a.addr:7000".into())]
    );
    let owners = sw.query_port(&["user:42", "user:43", "nope"]).unwrap();
    assert_eq!(owners[0].as_ref().unwrap().node.as_ref(), "a");
    assert_eq!(owners[1].as_ref().unwrap().node.as_ref(), "b");
    assert!(owners[2].is_none());
}

#[test]
fn registering_an_own_port_again_is_idempotent() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    let mut out = Vec::new();
    let first = sw.reg_port("a", &["p", "q"], false, &mut out).unwrap();
    let again = sw.reg_port("a", &["p", "q"], false, &mut out).unwrap();
    assert_eq!((first.registered, first.failed.len()), (2, 0));
    assert_eq!((again.registered, again.failed.len()), (0, 0));
    assert_eq!(sw.metrics().ports, 2);
    assert_eq!(sw.query_node(&["a"]).unwrap()[0].as_ref().unwrap().ports, 2);
}

#[test]
fn a_node_must_be_online_to_register() {
    let mut sw = switch(1);
    let mut out = Vec::new();
    assert_eq!(
        sw.reg_port("ghost", &["p"], false, &mut out),
        Err(SwitchError::NotOnline("ghost".into()))
    );
}

#[test]
fn only_the_owner_can_unregister() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    online(&mut sw, "b", 2);
    reg(&mut sw, "a", &["p", "q"]);
    let mut out = Vec::new();
    let r = sw.unreg_port("b", &["p", "zz"], &mut out).unwrap();
    assert_eq!(
        (r.released, r.not_owned, r.unknown),
        (vec![], vec![0], vec![1])
    );
    assert_eq!(
        sw.query_port(&["p"]).unwrap()[0]
            .as_ref()
            .unwrap()
            .node
            .as_ref(),
        "a"
    );
    let r = sw.unreg_port("a", &["p", "q", "p"], &mut out).unwrap();
    assert_eq!(
        (r.released, r.not_owned, r.unknown),
        (vec![0, 1], vec![], vec![2])
    );
    assert_eq!(sw.metrics().ports, 0);
}

/// Node `a` owns `p`; `b` and `c` fail to register it and subscribe.
fn contested() -> Switch {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    online(&mut sw, "b", 2);
    online(&mut sw, "c", 3);
    reg(&mut sw, "a", &["p", "other"]);
    assert_eq!(reg_sub(&mut sw, "b", &["p"], true).len(), 1);
    assert_eq!(reg_sub(&mut sw, "c", &["p"], true).len(), 1);
    // Subscribing twice is the same as once.
    assert_eq!(reg_sub(&mut sw, "c", &["p"], true).len(), 1);
    sw
}

#[test]
fn unregister_notifies_each_subscriber_exactly_once() {
    let mut sw = contested();
    let mut out = Vec::new();
    sw.unreg_port("a", &["p"], &mut out).unwrap();
    let b = sw.node_index("b").unwrap();
    let c = sw.node_index("c").unwrap();
    assert_eq!(
        out,
        vec![
            Output::Pending { node: b, conn: 2 },
            Output::Pending { node: c, conn: 3 }
        ]
    );
    let note = released("p", ReleaseReason::Unregistered);
    assert_eq!(pushes(&mut sw, "b"), vec![note.clone()]);
    assert_eq!(pushes(&mut sw, "c"), vec![note]);
    assert!(pushes(&mut sw, "a").is_empty());
    // The subscription was consumed: b takes the port, releases it, and nobody hears again.
    assert!(reg(&mut sw, "b", &["p"]).is_empty());
    sw.unreg_port("b", &["p"], &mut out).unwrap();
    assert!(pushes(&mut sw, "c").is_empty());
    assert_eq!(sw.metrics().release_notifications, 2);
}

#[test]
fn lease_expiry_releases_ports_and_notifies_once() {
    let mut sw = contested();
    let mut out = Vec::new();
    // b and c keep their leases; a does not.
    sw.relet("b", 900).unwrap();
    sw.relet("c", 900).unwrap();
    assert_eq!(sw.tick(LEASE - 1, &mut out), 0);
    assert_eq!(sw.tick(LEASE, &mut out), 1);
    assert!(out.contains(&Output::Close {
        node: Arc::from("a"),
        conn: 1,
        reason: CloseReason::LeaseExpired
    }));
    assert_eq!(sw.query_port(&["p", "other"]).unwrap(), vec![None, None]);
    assert!(sw.query_node(&["a"]).unwrap()[0].is_none());
    let note = released("p", ReleaseReason::NodeOffline);
    assert_eq!(pushes(&mut sw, "b"), vec![note.clone()]);
    assert_eq!(pushes(&mut sw, "c"), vec![note]);
    out.clear();
    assert_eq!(sw.tick(LEASE + 1, &mut out), 0);
    assert!(out.is_empty());
    assert_eq!(sw.metrics().lease_expiries, 1);
    // A relet of an expired node fails: it must WaitMsg again.
    assert_eq!(sw.relet("a", 1200), Err(SwitchError::NotOnline("a".into())));
}

#[test]
fn relet_keeps_a_node_alive() {
    let mut sw = switch(2);
    online(&mut sw, "a", 1);
    reg(&mut sw, "a", &["p"]);
    let mut out = Vec::new();
    for now in (500..10_000).step_by(500) {
        assert_eq!(sw.relet("a", now), Ok(now + LEASE));
        assert_eq!(sw.tick(now + LEASE - 1, &mut out), 0);
    }
    assert!(out.is_empty());
    assert_eq!(sw.metrics().ports, 1);
    assert_eq!(sw.next_deadline(), Some(9_500 + LEASE));
}

#[test]
fn a_new_receiving_connection_replaces_the_old_one_and_releases_ports() {
    let mut sw = contested();
    let mut out = Vec::new();
    let s = sw.wait_msg("a", "a.new:7000", 11, 50, &mut out).unwrap();
    assert!(s.replaced);
    let close = out
        .iter()
        .find_map(|o| match o {
            Output::Close { conn, reason, .. } => Some((*conn, reason.to_string())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        close,
        (1, "replaced by a new receiving connection".to_string())
    );
    let note = released("p", ReleaseReason::Replaced);
    assert_eq!(pushes(&mut sw, "b"), vec![note.clone()]);
    assert_eq!(pushes(&mut sw, "c"), vec![note]);
    // a must register again; its new address is what others see.
    assert_eq!(sw.metrics().ports, 0);
    assert!(reg(&mut sw, "a", &["p"]).is_empty());
    assert_eq!(
        reg(&mut sw, "b", &["p"]),
        vec![("p".into(), "a".into(), "a.new:7000".into())]
    );
    // The old connection closing later changes nothing.
    out.clear();
    assert!(!sw.connection_closed(1, &mut out));
    assert!(out.is_empty());
    assert_eq!(sw.metrics().replaced_connections, 1);
}

#[test]
fn closing_the_receiving_connection_releases_ports() {
    let mut sw = contested();
    let mut out = Vec::new();
    assert!(sw.connection_closed(1, &mut out));
    assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })));
    let note = released("p", ReleaseReason::NodeOffline);
    assert_eq!(pushes(&mut sw, "b"), vec![note.clone()]);
    assert_eq!(pushes(&mut sw, "c"), vec![note]);
    assert_eq!(sw.metrics().nodes_online, 2);
    assert!(!sw.connection_closed(1, &mut out));
}

#[test]
fn subscriptions_do_not_survive_the_subscribers_reconnect() {
    let mut sw = contested();
    let mut out = Vec::new();
    // b reconnects: its old subscription belongs to the old session.
    sw.wait_msg("b", "b.addr:7000", 22, 10, &mut out).unwrap();
    sw.unreg_port("a", &["p"], &mut out).unwrap();
    assert!(pushes(&mut sw, "b").is_empty());
    assert_eq!(pushes(&mut sw, "c").len(), 1);
}

#[test]
fn unicast_multicast_and_broadcast_reach_exactly_the_intended_nodes() {
    let mut sw = switch(8);
    for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
        online(&mut sw, n, i as u64 + 1);
        reg(&mut sw, n, &[&format!("{n}:1"), &format!("{n}:2")]);
    }
    let mut out = Vec::new();
    // d goes offline; its ports go with it.
    sw.connection_closed(4, &mut out);
    let r = sw.send(&["a:1"], "uni", &mut out).unwrap();
    assert_eq!((r.delivered, r.dropped), (1, 0));
    let r = sw
        .send(&["b:2", "c:1", "d:1", "zz"], "multi", &mut out)
        .unwrap();
    assert_eq!((r.delivered, r.dropped), (2, 2));
    let r = sw.send(&[""], "all", &mut out).unwrap();
    assert_eq!((r.delivered, r.dropped), (3, 0));
    assert_eq!(
        pushes(&mut sw, "a"),
        vec![msg("a:1", "uni"), msg("", "all")]
    );
    assert_eq!(
        pushes(&mut sw, "b"),
        vec![msg("b:2", "multi"), msg("", "all")]
    );
    assert_eq!(
        pushes(&mut sw, "c"),
        vec![msg("c:1", "multi"), msg("", "all")]
    );
    assert!(sw.node_index("d").is_none());
    let m = sw.metrics();
    assert_eq!((m.messages_sent, m.messages_dropped), (6, 2));
}

#[test]
fn pending_is_reported_once_per_empty_to_non_empty_transition() {
    let mut sw = switch(2);
    let a = online(&mut sw, "a", 1);
    reg(&mut sw, "a", &["p", "q", "r"]);
    let mut out = Vec::new();
    sw.send(&["p", "q", "r"], "x", &mut out).unwrap();
    assert_eq!(out, vec![Output::Pending { node: a, conn: 1 }]);
    let mut frame = Vec::new();
    let d = sw.drain(a, 1 << 20, &mut frame);
    assert_eq!((d.pushes, d.remaining), (3, 0));
    out.clear();
    sw.send(&["p"], "y", &mut out).unwrap();
    assert_eq!(out, vec![Output::Pending { node: a, conn: 1 }]);
}

#[test]
fn drain_packs_pushes_into_json_arrays_within_max_bytes() {
    let mut sw = switch(2);
    let a = online(&mut sw, "a", 1);
    online(&mut sw, "b", 2);
    reg(&mut sw, "a", &["p"]);
    reg(&mut sw, "b", &["q"]);
    reg_sub(&mut sw, "a", &["q"], true);
    let mut out = Vec::new();
    for i in 0..10 {
        sw.send(&["p"], &format!("m{i} \"quoted\""), &mut out)
            .unwrap();
    }
    sw.unreg_port("b", &["q"], &mut out).unwrap();
    let mut got = Vec::new();
    loop {
        let mut frame = Vec::new();
        let d = sw.drain(a, 150, &mut frame);
        if d.pushes == 0 {
            assert!(frame.is_empty());
            break;
        }
        assert!(frame.len() <= 150 || d.pushes == 1, "{}", frame.len());
        let v: Vec<serde_json::Value> = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v.len(), d.pushes);
        got.extend(v);
    }
    assert_eq!(got.len(), 11);
    assert_eq!(got[3]["type"], "msg");
    assert_eq!(got[3]["port"], "p");
    assert_eq!(got[3]["body"], "m3 \"quoted\"");
    assert_eq!(
        got[10],
        serde_json::json!({"type":"released","port":"q","reason":"unregistered"})
    );
}

#[test]
fn per_node_fifo_without_duplicates_over_100k_messages_across_shards() {
    let mut sw = switch(8);
    let nodes: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
    let mut owner_of: HashMap<String, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        online(&mut sw, n, i as u64 + 1);
        let ports: Vec<String> = (0..200).map(|p| format!("{n}/port-{p}")).collect();
        let mut out = Vec::new();
        sw.reg_port(n, &ports, false, &mut out).unwrap();
        for p in ports {
            owner_of.insert(p, i);
        }
    }
    let all_ports: Vec<&String> = {
        let mut v: Vec<&String> = owner_of.keys().collect();
        v.sort();
        v
    };
    let mut expected: Vec<Vec<(String, String)>> = vec![Vec::new(); nodes.len()];
    let mut received: Vec<Vec<(String, String)>> = vec![Vec::new(); nodes.len()];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = Vec::new();
    let mut seq = 0u64;
    while seq < 100_000 {
        // A batch of 1..50 messages, each to 1..3 ports spread over all shards (a port drawn
        // twice for one message is one target).
        let batch: Vec<(Vec<String>, String)> = (0..1 + next() % 50)
            .map(|_| {
                let mut targets: Vec<String> = Vec::new();
                for _ in 0..1 + next() % 3 {
                    let t = all_ports[(next() % all_ports.len() as u64) as usize].clone();
                    if !targets.contains(&t) {
                        targets.push(t);
                    }
                }
                seq += 1;
                (targets, format!("#{seq}"))
            })
            .collect();
        for (targets, body) in &batch {
            for t in targets {
                expected[owner_of[t]].push((t.clone(), body.clone()));
            }
        }
        let r = sw
            .send_msg(
                batch.iter().map(|(t, b)| (t.as_slice(), b.as_str())),
                &mut out,
            )
            .unwrap();
        assert_eq!(r.dropped, 0);
        // Drain some nodes now and then, with small frames, as a connection would.
        if next() % 4 == 0 {
            let i = (next() % nodes.len() as u64) as usize;
            drain_into(&mut sw, &nodes[i], &mut received[i]);
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        drain_into(&mut sw, n, &mut received[i]);
        assert_eq!(received[i].len(), expected[i].len(), "{n}");
        assert!(received[i] == expected[i], "{n}: order differs");
    }
    let total: usize = expected.iter().map(Vec::len).sum();
    assert!(total >= 100_000);
    assert_eq!(sw.metrics().messages_sent, total as u64);
}

fn drain_into(sw: &mut Switch, node: &str, into: &mut Vec<(String, String)>) {
    let idx = sw.node_index(node).unwrap();
    loop {
        let mut frame = Vec::new();
        if sw.drain(idx, 4096, &mut frame).pushes == 0 {
            return;
        }
        let v: Vec<serde_json::Value> = serde_json::from_slice(&frame).unwrap();
        into.extend(v.into_iter().map(|p| {
            (
                p["port"].as_str().unwrap().to_string(),
                p["body"].as_str().unwrap().to_string(),
            )
        }));
    }
}

#[test]
fn port_name_length_limit_at_the_edge() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    let ok = "x".repeat(256);
    let over = "y".repeat(257);
    let mut out = Vec::new();
    assert!(sw.reg_port("a", &[&ok], false, &mut out).is_ok());
    let err = sw
        .reg_port("a", &["fine", &over], false, &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        SwitchError::Limit(LimitError::PortNameTooLong {
            len: 257,
            limit: 256
        })
    );
    assert_eq!(
        err.to_string(),
        "port name is 257 bytes, the limit is 256 bytes"
    );
    // Nothing of the rejected request was applied.
    assert!(sw.query_port(&["fine"]).unwrap()[0].is_none());
}

#[test]
fn ports_per_request_limit_at_the_edge() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    let ports: Vec<String> = (0..10_001).map(|i| format!("p{i}")).collect();
    let mut out = Vec::new();
    let r = sw.reg_port("a", &ports[..10_000], false, &mut out).unwrap();
    assert_eq!(r.registered, 10_000);
    let err = sw.reg_port("a", &ports, false, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "request has 10001 ports, the limit is 10000 ports per request"
    );
}

#[test]
fn ports_per_node_limit_at_the_edge_rejects_the_whole_request() {
    let mut sw = switch_with(Limits {
        max_ports_per_node: 5,
        ..Limits::default()
    });
    online(&mut sw, "a", 1);
    reg(&mut sw, "a", &["p1", "p2", "p3"]);
    let mut out = Vec::new();
    // Re-registering own ports does not count; exactly 5 is fine.
    let r = sw
        .reg_port("a", &["p1", "p4", "p2", "p5"], false, &mut out)
        .unwrap();
    assert_eq!(r.registered, 2);
    let err = sw
        .reg_port("a", &["p6", "p7"], false, &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        SwitchError::Limit(LimitError::TooManyPortsForNode { count: 6, limit: 5 })
    );
    assert_eq!(sw.query_port(&["p6", "p7"]).unwrap(), vec![None, None]);
    assert_eq!(sw.metrics().ports, 5);
    // After releasing one, there is room again.
    sw.unreg_port("a", &["p1"], &mut out).unwrap();
    assert_eq!(
        sw.reg_port("a", &["p6"], false, &mut out)
            .unwrap()
            .registered,
        1
    );
}

#[test]
fn body_size_limit_at_the_edge() {
    let mut sw = switch(4);
    online(&mut sw, "a", 1);
    reg(&mut sw, "a", &["p"]);
    let mut out = Vec::new();
    let ok = "b".repeat(64 * 1024);
    let over = "b".repeat(64 * 1024 + 1);
    assert_eq!(sw.send(&["p"], &ok, &mut out).unwrap().delivered, 1);
    let batch = [(&["p"][..], "small"), (&["p"][..], over.as_str())];
    let err = sw.send_msg(batch.iter().copied(), &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "message body is 65537 bytes, the limit is 65536 bytes"
    );
    // The batch was rejected as a whole: "small" was not delivered.
    assert_eq!(pushes(&mut sw, "a").len(), 1);
}

#[test]
fn slow_consumer_is_disconnected_with_a_reason() {
    let mut sw = switch_with(Limits {
        max_queued_bytes: 1_000,
        ..Limits::default()
    });
    online(&mut sw, "slow", 1);
    online(&mut sw, "watcher", 2);
    reg(&mut sw, "slow", &["s"]);
    reg_sub(&mut sw, "watcher", &["s"], true);
    let mut out = Vec::new();
    // Each push costs 35 + 1 + 64 = 100 bytes: exactly 10 fit in 1,000.
    let body = "z".repeat(64);
    for _ in 0..10 {
        assert_eq!(sw.send(&["s"], &body, &mut out).unwrap().delivered, 1);
    }
    assert_eq!(
        sw.node(sw.node_index("slow").unwrap())
            .unwrap()
            .queued_bytes(),
        1_000
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })));
    let r = sw.send(&["s"], &body, &mut out).unwrap();
    assert_eq!((r.delivered, r.dropped), (0, 1));
    let close = out.iter().find_map(|o| match o {
        Output::Close { conn, reason, .. } => Some((*conn, reason.clone())),
        _ => None,
    });
    assert_eq!(
        close,
        Some((
            1,
            CloseReason::SlowConsumer {
                queued: 1_100,
                limit: 1_000
            }
        ))
    );
    assert_eq!(
        CloseReason::SlowConsumer {
            queued: 1_100,
            limit: 1_000
        }
        .to_string(),
        "slow consumer: 1100 bytes would be queued, the limit is 1000 bytes"
    );
    assert_eq!(
        pushes(&mut sw, "watcher"),
        vec![released("s", ReleaseReason::NodeOffline)]
    );
    let m: Metrics = sw.metrics();
    assert_eq!(m.slow_consumer_disconnects, 1);
    assert_eq!(sw.send(&["s"], "x", &mut out).unwrap().dropped, 1);
}

#[test]
fn wait_msg_rejects_a_connection_of_another_node() {
    let mut sw = switch(1);
    online(&mut sw, "a", 1);
    let mut out = Vec::new();
    assert!(matches!(
        sw.wait_msg("b", "x", 1, 0, &mut out),
        Err(SwitchError::ConnectionInUse { conn: 1, .. })
    ));
    // Repeating WaitMsg on the same connection only renews the lease.
    let s = sw.wait_msg("a", "a.addr:7000", 1, 300, &mut out).unwrap();
    assert!(!s.replaced);
    assert_eq!(s.lease_deadline, 300 + LEASE);
    assert!(out.is_empty());
}

#[test]
fn rest_api_end_to_end() {
    let mut sw = switch(4);
    online(&mut sw, "n1", 1);
    online(&mut sw, "n2", 2);
    let mut out = Vec::new();
    let mut call = |sw: &mut Switch, method: &str, path: &str, body: &str| {
        let r = api::handle_rest(sw, method, path, body.as_bytes(), 5, &mut out);
        (
            r.status,
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
        )
    };
    let (s, v) = call(
        &mut sw,
        "POST",
        "/v1/nodes/n1/ports",
        r#"{"ports":["a","b"]}"#,
    );
    assert_eq!(
        (s, v),
        (200, serde_json::json!({"registered":2,"failed":[]}))
    );
    let (s, v) = call(
        &mut sw,
        "POST",
        "/v1/nodes/n2/ports",
        r#"{"ports":["b","c"],"subscribe":true}"#,
    );
    assert_eq!(s, 200);
    assert_eq!(
        v,
        serde_json::json!({"registered":1,"failed":[{"port":"b","owner":"n1","address":"n1.addr:7000"}]})
    );
    let (_, v) = call(
        &mut sw,
        "POST",
        "/v1/messages",
        r#"{"messages":[{"port":"a","body":"hi"},{"ports":["b","c","zz"],"body":"yo"},{"port":"","body":"all"}]}"#,
    );
    assert_eq!(v, serde_json::json!({"delivered":5,"dropped":1}));
    let (_, v) = call(
        &mut sw,
        "DELETE",
        "/v1/nodes/n2/ports",
        r#"{"ports":["a","c","q"]}"#,
    );
    assert_eq!(
        v,
        serde_json::json!({"released":["c"],"not_owned":["a"],"unknown":["q"]})
    );
    let (_, v) = call(&mut sw, "POST", "/v1/ports/query", r#"{"ports":["a","c"]}"#);
    assert_eq!(
        v,
        serde_json::json!({"ports":[{"port":"a","owner":"n1","address":"n1.addr:7000"},{"port":"c","owner":null,"address":null}]})
    );
    let (_, v) = call(
        &mut sw,
        "POST",
        "/v1/nodes/query",
        r#"{"nodes":["n1","n9"]}"#,
    );
    assert_eq!(
        v,
        serde_json::json!({"nodes":[{"node":"n1","online":true,"address":"n1.addr:7000","ports":2},{"node":"n9","online":false,"address":null,"ports":0}]})
    );
    let (s, v) = call(&mut sw, "POST", "/v1/nodes/n1/relet", "");
    assert_eq!(
        (s, v),
        (
            200,
            serde_json::json!({"lease_deadline":1005,"lease_ms":1000})
        )
    );
    let (s, v) = call(&mut sw, "POST", "/v1/nodes/n1/ports", r#"{"ports":[""]}"#);
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "empty_port");
    let (s, v) = call(&mut sw, "POST", "/v1/nodes/n1/ports", "{not json");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_json")));
    let long = format!(r#"{{"ports":["{}"]}}"#, "x".repeat(257));
    let (s, v) = call(&mut sw, "POST", "/v1/nodes/n1/ports", &long);
    assert_eq!(s, 413);
    assert_eq!(
        v["error"]["message"],
        "port name is 257 bytes, the limit is 256 bytes"
    );
    let (s, _) = call(&mut sw, "POST", "/v1/nodes/n3/ports", r#"{"ports":["z"]}"#);
    assert_eq!(s, 409);
    // n1 got: "hi" on a, "yo" on b, "all"; n2 got "yo" on c, "all".
    let n1: Vec<Push> = pushes(&mut sw, "n1");
    assert_eq!(n1, vec![msg("a", "hi"), msg("b", "yo"), msg("", "all")]);
}

#[test]
fn websocket_api_end_to_end() {
    let mut sw = switch(4);
    online(&mut sw, "n1", 1);
    online(&mut sw, "n2", 2);
    let mut out = Vec::new();
    let mut ws = |sw: &mut Switch, node: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(&api::handle_ws(sw, node, text, 7, &mut out))
            .unwrap()
    };
    assert_eq!(
        ws(&mut sw, "n1", r#"{"op":"regport","id":1,"ports":["a"]}"#),
        serde_json::json!({"id":1,"registered":1,"failed":[]})
    );
    assert_eq!(
        ws(
            &mut sw,
            "n2",
            r#"{"op":"regport","id":2,"ports":["a"],"subscribe":true}"#
        ),
        serde_json::json!({"id":2,"registered":0,"failed":[{"port":"a","owner":"n1","address":"n1.addr:7000"}]})
    );
    assert_eq!(
        ws(
            &mut sw,
            "n2",
            r#"{"op":"sendmsg","id":3,"messages":[{"port":"a","body":"x"}]}"#
        ),
        serde_json::json!({"id":3,"delivered":1,"dropped":0})
    );
    assert_eq!(
        ws(&mut sw, "n1", r#"{"op":"unregport","id":4,"ports":["a"]}"#),
        serde_json::json!({"id":4,"released":["a"],"not_owned":[],"unknown":[]})
    );
    assert_eq!(
        ws(&mut sw, "n1", r#"{"op":"queryport","id":5,"ports":["a"]}"#),
        serde_json::json!({"id":5,"ports":[{"port":"a","owner":null,"address":null}]})
    );
    assert_eq!(
        ws(&mut sw, "n1", r#"{"op":"querynode","id":6,"nodes":["n2"]}"#),
        serde_json::json!({"id":6,"nodes":[{"node":"n2","online":true,"address":"n2.addr:7000","ports":0}]})
    );
    assert_eq!(
        ws(&mut sw, "n1", r#"{"op":"relet","id":7}"#),
        serde_json::json!({"id":7,"lease_deadline":1007,"lease_ms":1000})
    );
    let v = ws(&mut sw, "n1", r#"{"op":"explode","id":8}"#);
    assert_eq!(
        (v["id"].as_u64(), v["error"]["code"].as_str()),
        (Some(8), Some("bad_json"))
    );
    assert_eq!(
        pushes(&mut sw, "n2"),
        vec![released("a", ReleaseReason::Unregistered)]
    );
}
