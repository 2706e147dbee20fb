//! Node-less watchers (a dashboard, an operator's tool), specified on the engine interface
//! (sans I/O), on one instance and on a cluster of three: the same events, sequence numbers,
//! resumption and `missed` ranges as a node's watches, from every instance, on a receiving
//! connection that is no node (no ports, no lease, not listed, no node events of its own),
//! ended by its connection, closed as a slow consumer or for a revoked token.

mod common;

use std::collections::BTreeSet;

use common::{for_each_size, Net, LEASE};
use nukleus_switch::engine::WatcherCall;
use nukleus_switch::limits::Limits;
use nukleus_switch::switch::CloseReason;
use nukleus_switch::watch::{WatchKind, WatchRequest};
use serde_json::{json, Value};

fn watch(kind: WatchKind, key: &str, prefix: bool, from: Option<Vec<u64>>) -> WatcherCall {
    WatcherCall::Watch(WatchRequest {
        id: None,
        kind,
        key: key.into(),
        prefix,
        from,
    })
}

fn reg(net: &mut Net, node: &str, ports: &[&str]) -> Value {
    net.rest(
        "POST",
        &format!("/v1/nodes/{node}/ports"),
        json!({ "ports": ports }),
    )
    .unwrap()
}

/// `(port or node, event[:reason])` of the watch pushes.
fn what(pushes: &[Value]) -> BTreeSet<(String, String)> {
    pushes
        .iter()
        .filter(|e| e["type"] == "watch")
        .map(|e| {
            let key = e.get("port").or_else(|| e.get("node")).unwrap();
            let mut what = e["event"].as_str().unwrap().to_string();
            if let Some(r) = e.get("reason") {
                what = format!("{what}:{}", r.as_str().unwrap());
            }
            (key.as_str().unwrap().to_string(), what)
        })
        .collect()
}

fn set(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn cursor_of(reply: &Value) -> Vec<u64> {
    reply["cursor"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn a_watcher_sees_ports_and_nodes_from_every_instance_without_being_a_node() {
    for_each_size(Limits::default(), |net| {
        let at = net.size() - 1;
        let (conn, w) = net.open_watcher(at);
        let r = net
            .watcher_call(at, w, watch(WatchKind::Ports, "leader/", true, None))
            .unwrap();
        assert_eq!(
            (r["watch"].as_u64(), cursor_of(&r).len()),
            (Some(1), net.size())
        );
        let r = net
            .watcher_call(at, w, watch(WatchKind::Nodes, "", true, None))
            .unwrap();
        assert_eq!(r["watch"], 2, "{r}");
        let a = net.online("a");
        net.online("b");
        let ports: Vec<String> = net.spread("leader/", 1);
        let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
        reg(net, "a", &ports);
        reg(net, "a", &["other"]);
        net.rest("DELETE", "/v1/nodes/a/ports", json!({"ports":[ports[0]]}))
            .unwrap();
        net.close(a);
        let got = net.watcher_pushes(at, w);
        let mut want = set(&[
            ("a", "online"),
            ("b", "online"),
            ("a", "offline:closed"),
            (ports[0], "acquired"),
            (ports[0], "released:unregistered"),
        ]);
        for p in &ports[1..] {
            want.insert((p.to_string(), "acquired".into()));
            want.insert((p.to_string(), "released:node_offline".into()));
        }
        assert_eq!(what(&got), want, "size {}", net.size());
        assert_eq!(got.len(), want.len(), "each event once: {got:?}");
        // Not a node: not listed, not counted, not a target of a broadcast.
        let here = net.engines[at].metrics();
        assert_eq!(here.watchers, 1, "counted as a watcher at its instance");
        let online: u64 = net.engines.iter().map(|e| e.metrics().nodes_online).sum();
        assert_eq!(online, 1, "b alone is an online node");
        let nodes = net.rest("GET", "/v1/nodes?prefix=", json!(null)).unwrap();
        let listed: Vec<&str> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap())
            .collect();
        assert_eq!(listed, ["b"], "size {}", net.size());
        let sent = net
            .rest(
                "POST",
                "/v1/messages",
                json!({"messages":[{"port":"","body":"hi"}]}),
            )
            .unwrap();
        assert_eq!(sent["delivered"], 1, "{sent}");
        assert!(net.watcher_pushes(at, w).iter().all(|p| p["type"] != "msg"));
        // It ends with its connection: no node event, and nothing more reaches it.
        let closes = net.closed.len();
        assert!(net.close(conn));
        assert_eq!(net.closed.len(), closes, "its own close is no Close output");
        reg(net, "b", &["leader/x"]);
        assert!(net.watcher_pushes(at, w).is_empty());
        let w2 = net.online("w2");
        let r = net.ws("w2", json!({"op":"watch","id":1,"nodes":"","prefix":true}));
        assert_eq!(r["watch"], 1);
        let (c, w3) = net.open_watcher(at);
        net.close(c);
        assert!(
            net.pushes("w2").iter().all(|p| p["type"] != "watch"),
            "a watcher going is no node event"
        );
        assert_eq!(
            net.watcher_call(at, w3, watch(WatchKind::Ports, "p", false, None))
                .unwrap_err()
                .1["error"]["code"],
            "watcher_gone"
        );
        let _ = w2;
    });
}

#[test]
fn a_watcher_resumes_from_its_cursor_or_learns_the_exact_range_it_missed() {
    let limits = Limits {
        watch_history: 3,
        ..Limits::default()
    };
    for_each_size(limits, |net| {
        let at = 0;
        net.online("a");
        let (conn, w) = net.open_watcher(at);
        let r = net
            .watcher_call(at, w, watch(WatchKind::Ports, "q", true, None))
            .unwrap();
        let mut cursor = cursor_of(&r);
        reg(net, "a", &["q1"]);
        for e in net.watcher_pushes(at, w) {
            let i = e["instance"].as_u64().unwrap() as usize;
            cursor[i] = cursor[i].max(e["seq"].as_u64().unwrap());
        }
        net.close(conn);
        // Gone for one event: resumed without a gap or a duplicate.
        reg(net, "a", &["q2"]);
        let (conn, w) = net.open_watcher(at);
        let r = net
            .watcher_call(
                at,
                w,
                watch(WatchKind::Ports, "q", true, Some(cursor.clone())),
            )
            .unwrap();
        let got = net.watcher_pushes(at, w);
        assert_eq!(what(&got), set(&[("q2", "acquired")]), "{got:?}");
        assert!(got.iter().all(|e| e["type"] == "watch"), "{got:?}");
        let cursor = cursor_of(&r);
        net.close(conn);
        // Gone for more than the history holds: told exactly what it missed.
        let many: Vec<String> = (0..30).map(|i| format!("q{i:02}x")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        reg(net, "a", &many);
        let (_, w) = net.open_watcher(at);
        let r = net
            .watcher_call(
                at,
                w,
                watch(WatchKind::Ports, "q", true, Some(cursor.clone())),
            )
            .unwrap();
        let last = cursor_of(&r);
        let got = net.watcher_pushes(at, w);
        assert!(got.iter().any(|e| e["type"] == "missed"), "{got:?}");
        for i in 0..net.size() {
            let mut covered = BTreeSet::new();
            for e in got.iter().filter(|e| e["instance"] == i) {
                if e["type"] == "missed" {
                    covered.extend(e["from"].as_u64().unwrap()..=e["to"].as_u64().unwrap());
                } else {
                    assert!(covered.insert(e["seq"].as_u64().unwrap()));
                }
            }
            let want: BTreeSet<u64> = (cursor[i] + 1..=last[i]).collect();
            assert_eq!(covered, want, "instance {i} of {}", net.size());
        }
        // A cursor of another switch is refused.
        let e = net
            .watcher_call(at, w, watch(WatchKind::Ports, "q", true, Some(vec![1; 5])))
            .unwrap_err();
        assert_eq!((e.0, &e.1["error"]["code"]), (400, &json!("bad_cursor")));
    });
}

#[test]
fn a_slow_watcher_is_closed_as_a_slow_consumer_and_a_revoked_one_with_its_reason() {
    let limits = Limits {
        max_queued_bytes: 2_000,
        ..Limits::default()
    };
    for_each_size(limits, |net| {
        let at = 0;
        net.online("a");
        let (slow, w) = net.open_watcher(at);
        net.watcher_call(at, w, watch(WatchKind::Ports, "", true, None))
            .unwrap();
        let (revoked, v) = net.open_watcher(at);
        net.watcher_call(at, v, watch(WatchKind::Nodes, "", true, None))
            .unwrap();
        // Never drained: its queue outgrows the limit.
        let ports: Vec<String> = (0..100).map(|i| format!("port-{i:03}")).collect();
        let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
        reg(net, "a", &ports);
        let closed: Vec<_> = net.closed.iter().filter(|c| c.1 == slow).collect();
        assert!(
            matches!(
                closed.as_slice(),
                [(_, _, CloseReason::SlowConsumer { .. })]
            ),
            "{:?}",
            net.closed
        );
        assert!(!net.conns.contains_key(&slow));
        assert!(net.close_for(revoked, CloseReason::TokenRevoked));
        assert!(matches!(
            net.closed.last(),
            Some((_, c, CloseReason::TokenRevoked)) if *c == revoked
        ));
        // The node was never touched: still online, still its ports; no lease on watchers.
        net.now = LEASE * 3;
        net.ws("a", json!({"op":"relet","id":1}));
        let q = net
            .rest("POST", "/v1/nodes/query", json!({"nodes":["a"]}))
            .unwrap();
        assert_eq!(q["nodes"][0]["ports"], 100, "{q}");
    });
}
