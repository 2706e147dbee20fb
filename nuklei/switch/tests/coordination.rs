//! The coordination features of issue 15, specified on the engine interface (sans I/O), each
//! on one instance and on a cluster of three: watches (events, sequence numbers, resumption,
//! bounded history), listings, handover and compare-and-register, sessions, acknowledged
//! delivery, and closing a connection whose token was revoked.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{for_each_size, Net, LEASE};
use nukleus_switch::limits::Limits;
use nukleus_switch::listing::parse_node_cursor;
use nukleus_switch::switch::CloseReason;
use serde_json::{json, Value};

/// The watch pushes `node` got since the last call, by watch id.
fn watch_events(net: &mut Net, node: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut by_watch: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for p in net.pushes(node) {
        if p["type"] == "watch" || p["type"] == "missed" {
            by_watch
                .entry(p["watch"].as_u64().unwrap())
                .or_default()
                .push(p);
        }
    }
    by_watch
}

/// `(port or node, event)` of watch events, as a set (order across instances is not defined).
fn what(events: &[Value]) -> BTreeSet<(String, String)> {
    events
        .iter()
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

/// Per instance, sequence numbers of a watch's events are increasing (no duplicates).
fn assert_increasing(events: &[Value]) {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "watch") {
        let (i, seq) = (e["instance"].as_u64().unwrap(), e["seq"].as_u64().unwrap());
        if let Some(prev) = last.insert(i, seq) {
            assert!(seq > prev, "instance {i}: {seq} after {prev}");
        }
    }
}

/// A cursor advanced by `events`.
fn advance(mut cursor: Vec<u64>, events: &[Value]) -> Vec<u64> {
    for e in events.iter().filter(|e| e["type"] == "watch") {
        let i = e["instance"].as_u64().unwrap() as usize;
        cursor[i] = cursor[i].max(e["seq"].as_u64().unwrap());
    }
    cursor
}

fn cursor_of(reply: &Value) -> Vec<u64> {
    reply["cursor"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn reg(net: &mut Net, node: &str, ports: &[String]) -> Value {
    net.rest(
        "POST",
        &format!("/v1/nodes/{node}/ports"),
        json!({ "ports": ports }),
    )
    .unwrap()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

fn set(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_port_watch_sees_acquired_and_released_by_prefix_and_by_name() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        let a = net.online("a");
        net.online("b");
        let r = net.ws(
            "w",
            json!({"op":"watch","id":1,"ports":"user:","prefix":true}),
        );
        assert_eq!(r["watch"], 1, "{r}");
        assert_eq!(cursor_of(&r).len(), net.size());
        let r = net.ws("w", json!({"op":"watch","id":2,"ports":"user:007"}));
        assert_eq!(r["watch"], 2, "{r}");
        let mut ports = names("user:", 9);
        ports.push("room:1".into());
        reg(net, "a", &ports);
        // A failed registration changes no owner: no event.
        reg(net, "b", &["user:007".to_string()]);
        net.rest("DELETE", "/v1/nodes/a/ports", json!({"ports":["user:003"]}))
            .unwrap();
        net.close(a);
        let got = watch_events(net, "w");
        let all = &got[&1];
        assert_increasing(all);
        let mut want = BTreeSet::new();
        for p in names("user:", 9) {
            want.insert((p.clone(), "acquired".to_string()));
            if p != "user:003" {
                want.insert((p, "released:node_offline".to_string()));
            }
        }
        want.insert(("user:003".into(), "released:unregistered".into()));
        assert_eq!(what(all), want, "size {}", net.size());
        assert_eq!(all.len(), want.len(), "each event once");
        assert_eq!(
            what(&got[&2]),
            set(&[
                ("user:007", "acquired"),
                ("user:007", "released:node_offline")
            ])
        );
        let acquired = all.iter().find(|e| e["event"] == "acquired").unwrap();
        assert_eq!(acquired["owner"], "a");
        assert_eq!(acquired["address"], "a:1");
    });
}

#[test]
fn a_node_watch_sees_online_replaced_and_offline_with_the_reason() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        let r = net.ws("w", json!({"op":"watch","id":5,"nodes":"n","prefix":true}));
        assert_eq!(r["watch"], 5, "{r}");
        net.online("n1");
        let second = net.connect("n1", "n1:2").unwrap().0;
        net.online("n2");
        net.online("x");
        net.close(second);
        // w relets; n2 does not: its lease runs out.
        net.now = LEASE - 1;
        net.ws("w", json!({"op":"relet","id":6}));
        net.tick(LEASE + 1);
        let got = watch_events(net, "w");
        let events = &got[&5];
        assert_increasing(events);
        assert_eq!(
            what(events),
            set(&[
                ("n1", "online"),
                ("n1", "replaced"),
                ("n1", "offline:closed"),
                ("n2", "online"),
                ("n2", "offline:lease_expired"),
            ]),
            "size {}",
            net.size()
        );
        let replaced = events.iter().find(|e| e["event"] == "replaced").unwrap();
        assert_eq!(replaced["address"], "n1:2");
    });
}

#[test]
fn a_watch_resumed_from_its_cursor_gets_what_it_missed_once() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        net.online("a");
        let r = net.ws("w", json!({"op":"watch","id":1,"ports":"p","prefix":true}));
        let mut cursor = cursor_of(&r);
        reg(net, "a", &names("p", 4));
        let seen = watch_events(net, "w").remove(&1).unwrap();
        assert_eq!(seen.len(), 4);
        cursor = advance(cursor, &seen);
        // w's connection drops; meanwhile ports come and go.
        net.online("w");
        reg(net, "a", &names("p1", 3));
        net.rest("DELETE", "/v1/nodes/a/ports", json!({"ports":["p000"]}))
            .unwrap();
        let r = net.ws(
            "w",
            json!({"op":"watch","id":1,"ports":"p","prefix":true,"from":cursor}),
        );
        assert_eq!(r["watch"], 1, "{r}");
        let replay = watch_events(net, "w").remove(&1).unwrap();
        assert!(replay.iter().all(|e| e["type"] == "watch"), "{replay:?}");
        assert_eq!(
            what(&replay),
            set(&[
                ("p1000", "acquired"),
                ("p1001", "acquired"),
                ("p1002", "acquired"),
                ("p000", "released:unregistered"),
            ]),
            "size {}",
            net.size()
        );
        assert_eq!(replay.len(), 4);
        // The reply's cursor is where the replay ended: live events follow it, once.
        let resumed = cursor_of(&r);
        assert_eq!(advance(cursor.clone(), &replay), resumed);
        reg(net, "a", &["p999".to_string()]);
        let live = watch_events(net, "w").remove(&1).unwrap();
        assert_eq!(what(&live), set(&[("p999", "acquired")]));
        // Resuming from the cursor it already has gives nothing more.
        net.online("w");
        net.ws(
            "w",
            json!({"op":"watch","id":1,"ports":"p","prefix":true,"from":advance(resumed, &live)}),
        );
        assert!(watch_events(net, "w").is_empty());
    });
}

#[test]
fn a_watch_told_it_missed_events_learns_the_exact_range_per_instance() {
    let limits = Limits {
        watch_history: 3,
        ..Limits::default()
    };
    for_each_size(limits, |net| {
        net.online("w");
        net.online("a");
        let r = net.ws("w", json!({"op":"watch","id":1,"ports":"q","prefix":true}));
        let cursor = cursor_of(&r);
        net.online("w");
        reg(net, "a", &names("q", 30));
        let r = net.ws(
            "w",
            json!({"op":"watch","id":1,"ports":"q","prefix":true,"from":cursor}),
        );
        let last = cursor_of(&r);
        let got = watch_events(net, "w").remove(&1).unwrap();
        // For every instance: the missed range and the replayed events together are exactly
        // the sequence numbers after the cursor, up to where the watch now stands.
        for i in 0..net.size() {
            let mut covered = BTreeSet::new();
            for e in got.iter().filter(|e| e["instance"] == i) {
                if e["type"] == "missed" {
                    let (from, to) = (e["from"].as_u64().unwrap(), e["to"].as_u64().unwrap());
                    assert!(
                        from <= to && covered.is_empty(),
                        "missed first, once: {got:?}"
                    );
                    covered.extend(from..=to);
                } else {
                    assert!(covered.insert(e["seq"].as_u64().unwrap()));
                }
            }
            let want: BTreeSet<u64> = (cursor[i] + 1..=last[i]).collect();
            assert_eq!(covered, want, "instance {i} of {}", net.size());
        }
        assert!(got.iter().any(|e| e["type"] == "missed"), "{got:?}");
        let replayed = got.iter().filter(|e| e["type"] == "watch").count();
        assert!(replayed <= 3 * net.size());
    });
}

#[test]
fn cursors_of_another_switch_are_refused() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        let r = net.ws(
            "w",
            json!({"op":"watch","id":1,"ports":"p","from":[1,2,3,4]}),
        );
        assert_eq!(r["error"]["code"], "bad_cursor", "{r}");
        let ahead = vec![u64::MAX / 2; net.size()];
        let r = net.ws("w", json!({"op":"watch","id":2,"ports":"p","from":ahead}));
        assert_eq!(r["error"]["code"], "bad_cursor", "{r}");
        // Neither left a watch behind: the ids are free again.
        let r = net.ws("w", json!({"op":"watch","id":1,"ports":"p"}));
        assert_eq!(r["watch"], 1, "{r}");
        let r = net.ws("w", json!({"op":"watch","id":1,"ports":"q"}));
        assert_eq!(r["error"]["code"], "watch_exists", "{r}");
        let r = net.ws("w", json!({"op":"watch","id":3}));
        assert_eq!(r["error"]["code"], "bad_json", "{r}");
    });
}

#[test]
fn an_ended_watch_gets_nothing_more_and_many_watchers_get_each_event_once() {
    for_each_size(Limits::default(), |net| {
        let watchers: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
        for w in &watchers {
            net.online(w);
            net.rest(
                "POST",
                &format!("/v1/nodes/{w}/watches"),
                json!({"ports":"job:","prefix":true}),
            )
            .unwrap();
        }
        net.online("a");
        reg(net, "a", &names("job:", 5));
        for w in &watchers {
            let got = watch_events(net, w);
            assert_eq!(got.len(), 1);
            let events = got.values().next().unwrap();
            assert_eq!(events.len(), 5, "{w}: {events:?}");
        }
        let r = net
            .rest("DELETE", "/v1/nodes/w0/watches/1", json!({}))
            .unwrap();
        assert_eq!(r, json!({"unwatched": 1}));
        let r = net.rest("DELETE", "/v1/nodes/w0/watches/1", json!({}));
        assert_eq!(r.unwrap_err().0, 404);
        reg(net, "a", &["job:x".to_string()]);
        assert!(watch_events(net, "w0").is_empty());
        assert_eq!(watch_events(net, "w1").values().next().unwrap().len(), 1);
    });
}

#[test]
fn ports_are_listed_by_prefix_in_name_order_page_by_page() {
    for_each_size(Limits::default(), |net| {
        net.online("a");
        net.connect("b", "").unwrap();
        let mine = names("user:", 40);
        let theirs = names("user:x", 13);
        reg(net, "a", &mine);
        reg(net, "b", &theirs);
        reg(net, "a", &names("room:", 5));
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let path = match &after {
                None => "/v1/ports?prefix=user:&limit=7".to_string(),
                Some(a) => format!("/v1/ports?prefix=user:&limit=7&after={a}"),
            };
            let page = net.rest("GET", &path, json!(null)).unwrap();
            let ports = page["ports"].as_array().unwrap();
            assert!(ports.len() <= 7);
            for p in ports {
                let name = p["port"].as_str().unwrap().to_string();
                let owner = if name.starts_with("user:x") { "b" } else { "a" };
                assert_eq!(p["owner"], owner, "{p}");
                let address = if owner == "a" {
                    json!("a:1")
                } else {
                    Value::Null
                };
                assert_eq!(p["address"], address);
                listed.push(name);
            }
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        let mut want: Vec<String> = mine.iter().chain(&theirs).cloned().collect();
        want.sort();
        assert_eq!(listed, want, "size {}", net.size());
        // Over the WebSocket, with a cursor that is not a port.
        let page = net.ws(
            "a",
            json!({"op":"listports","id":1,"prefix":"room:","after":"room:001x","limit":2}),
        );
        let got: Vec<&str> = page["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_str().unwrap())
            .collect();
        assert_eq!(got, ["room:002", "room:003"]);
        assert_eq!(page["next"], "room:003");
    });
}

#[test]
fn online_nodes_are_listed_in_id_order() {
    for_each_size(Limits::default(), |net| {
        let ids: Vec<String> = (0..12).map(|i| format!("node-{i:02}")).collect();
        for id in &ids {
            net.online(id);
        }
        let gone = net.online("node-99");
        net.close(gone);
        reg(net, "node-03", &names("p", 3));
        let mut listed = Vec::new();
        let mut after = String::new();
        loop {
            let page = net
                .rest(
                    "GET",
                    &format!("/v1/nodes?prefix=node-&limit=5&after={after}"),
                    json!(null),
                )
                .unwrap();
            for n in page["nodes"].as_array().unwrap() {
                if n["node"] == "node-03" {
                    assert_eq!(n["ports"], 3);
                }
                listed.push(n["node"].as_str().unwrap().to_string());
            }
            match page["next"].as_str() {
                Some(n) => after = n.to_string(),
                None => break,
            }
        }
        assert_eq!(listed, ids, "size {}", net.size());
    });
}

#[test]
fn a_nodes_ports_are_listed_page_by_page_and_a_lost_cursor_restarts() {
    for_each_size(Limits::default(), |net| {
        net.online("a");
        net.online("b");
        let mine = names("mine:", 30);
        reg(net, "a", &mine);
        reg(net, "b", &names("other:", 5));
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let page = net.ws(
                "b",
                json!({"op":"nodeports","id":1,"node":"a","after":after,"limit":4}),
            );
            assert_eq!(page["restarted"], false, "{page}");
            for p in page["ports"].as_array().unwrap() {
                listed.push(p.as_str().unwrap().to_string());
            }
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        listed.sort();
        assert_eq!(listed, mine, "size {}", net.size());
        // The port a cursor names leaves the node: the next page starts that shard again.
        let page = net
            .rest("GET", "/v1/nodes/a/ports?limit=3", json!(null))
            .unwrap();
        let next = page["next"].as_str().unwrap().to_string();
        let (_, port) = parse_node_cursor(&next, 64).unwrap();
        if !port.is_empty() {
            net.rest("DELETE", "/v1/nodes/a/ports", json!({ "ports": [port] }))
                .unwrap();
            let page = net
                .rest(
                    "GET",
                    &format!("/v1/nodes/a/ports?limit=3&after={next}"),
                    json!(null),
                )
                .unwrap();
            assert_eq!(page["restarted"], true, "{page}");
        }
        let page = net
            .rest("GET", "/v1/nodes/nobody/ports", json!(null))
            .unwrap();
        assert_eq!(page, json!({"ports":[],"next":null,"restarted":false}));
    });
}

#[test]
fn a_handover_moves_ports_without_freeing_them_and_tells_the_receiver() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        net.online("a");
        net.online("b");
        let moving = names("h:", 12);
        reg(net, "a", &moving);
        reg(net, "a", &["h:kept".to_string()]);
        reg(net, "b", &["h:kept-by-b".to_string()]);
        net.ws("w", json!({"op":"watch","id":1,"ports":"h:","prefix":true}));
        let acquired = net.rest("POST", "/v1/ports/query", json!({"ports":["h:000"]}));
        assert_eq!(acquired.unwrap()["ports"][0]["owner"], "a");
        let before: BTreeMap<String, u64> = BTreeMap::new();
        let mut asked = moving.clone();
        asked.push("h:nobody".into());
        asked.push("h:kept-by-b".into());
        let r = net
            .rest(
                "POST",
                "/v1/nodes/a/handover",
                json!({"to":"b","ports":asked}),
            )
            .unwrap();
        assert_eq!(r["moved"], json!(moving), "size {}", net.size());
        assert_eq!(r["unknown"], json!(["h:nobody"]));
        assert_eq!(r["not_owned"], json!(["h:kept-by-b"]));
        // Owners, counts.
        let q = net
            .rest(
                "POST",
                "/v1/ports/query",
                json!({"ports":["h:000","h:011","h:kept"]}),
            )
            .unwrap();
        let owners: Vec<&str> = q["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["owner"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["b", "b", "a"]);
        let n = net
            .rest("POST", "/v1/nodes/query", json!({"nodes":["a","b"]}))
            .unwrap();
        assert_eq!(
            (
                n["nodes"][0]["ports"].clone(),
                n["nodes"][1]["ports"].clone()
            ),
            (json!(1), json!(13))
        );
        // The receiver is told, port by port; watchers see one `moved` each and nothing else.
        let told: Vec<Value> = net
            .pushes("b")
            .into_iter()
            .filter(|p| p["type"] == "handover")
            .collect();
        assert_eq!(told.len(), 12);
        assert!(told.iter().all(|p| p["from"] == "a"));
        let events = watch_events(net, "w").remove(&1).unwrap();
        assert_eq!(events.len(), 12, "{events:?}");
        assert!(events
            .iter()
            .all(|e| e["event"] == "moved" && e["owner"] == "b" && e["from"] == "a"));
        // A moved port has a new fencing sequence, the one its receiver was told.
        for t in &told {
            let e = events.iter().find(|e| e["port"] == t["port"]).unwrap();
            assert_eq!(e["seq"], t["seq"]);
        }
        let _ = before;
    });
}

#[test]
fn a_handover_the_receiver_cannot_take_moves_nothing() {
    let limits = Limits {
        max_ports_per_node: 10,
        ..Limits::default()
    };
    for_each_size(limits, |net| {
        net.online("a");
        net.online("b");
        reg(net, "a", &names("z", 6));
        reg(net, "b", &names("y", 6));
        let r = net.rest(
            "POST",
            "/v1/nodes/a/handover",
            json!({"to":"b","ports":names("z", 6)}),
        );
        let (status, body) = r.unwrap_err();
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (409, json!("limit_exceeded")),
            "{body}"
        );
        let r = net.rest(
            "POST",
            "/v1/nodes/a/handover",
            json!({"to":"ghost","ports":["z000"]}),
        );
        assert_eq!(r.unwrap_err().1["error"]["code"], "node_not_online");
        let r = net.rest(
            "POST",
            "/v1/nodes/a/handover",
            json!({"to":"a","ports":["z000"]}),
        );
        assert_eq!(r.unwrap_err().0, 400);
        let q = net
            .rest("POST", "/v1/nodes/query", json!({"nodes":["a","b"]}))
            .unwrap();
        assert_eq!(q["nodes"][0]["ports"], 6);
        assert_eq!(q["nodes"][1]["ports"], 6);
        // Within the limit it goes.
        let r = net
            .rest(
                "POST",
                "/v1/nodes/a/handover",
                json!({"to":"b","ports":names("z", 4)}),
            )
            .unwrap();
        assert_eq!(r["moved"].as_array().unwrap().len(), 4, "{r}");
    });
}

#[test]
fn compare_and_register_registers_only_where_the_owner_is_the_expected_one() {
    for_each_size(Limits::default(), |net| {
        net.online("a");
        net.online("b");
        reg(net, "a", &["owned".to_string()]);
        // Only if free.
        let r = net.ws(
            "b",
            json!({"op":"regport","id":1,"ports":["owned","free"],"if_owner":null}),
        );
        assert_eq!(r["registered"], 1, "{r}");
        assert_eq!(
            r["failed"],
            json!([{"port":"owned","owner":"a","address":"a:1"}])
        );
        // Only if mine: "free" is b's now, "nobody" is free.
        let r = net.ws(
            "b",
            json!({"op":"regport","id":2,"ports":["free","nobody"],"if_owner":"b"}),
        );
        assert_eq!(r["registered"], 0, "{r}");
        assert_eq!(
            r["failed"],
            json!([{"port":"nobody","owner":null,"address":null}])
        );
        // From a (with a's authority, checked by the nukleus): moves, and a is told.
        let r = net.ws(
            "b",
            json!({"op":"regport","id":3,"ports":["owned","free"],"if_owner":"a"}),
        );
        assert_eq!(r["registered"], 1, "{r}");
        assert_eq!(r["failed"][0]["port"], "free");
        let q = net
            .rest("POST", "/v1/ports/query", json!({"ports":["owned"]}))
            .unwrap();
        assert_eq!(q["ports"][0]["owner"], "b");
        let told: Vec<Value> = net
            .pushes("a")
            .into_iter()
            .filter(|p| p["type"] == "moved")
            .collect();
        assert_eq!(told.len(), 1, "size {}", net.size());
        assert_eq!(
            (told[0]["port"].clone(), told[0]["to"].clone()),
            (json!("owned"), json!("b"))
        );
        let q = net
            .rest("POST", "/v1/nodes/query", json!({"nodes":["a","b"]}))
            .unwrap();
        assert_eq!(
            (
                q["nodes"][0]["ports"].clone(),
                q["nodes"][1]["ports"].clone()
            ),
            (json!(0), json!(2))
        );
    });
}

#[test]
fn a_call_for_a_replaced_session_fails_instead_of_landing_in_the_new_one() {
    for_each_size(Limits::default(), |net| {
        net.online("a");
        let old = net.sessions["a"].1;
        let r = net.rest(
            "POST",
            "/v1/nodes/a/ports",
            json!({"ports":["p"],"session":old}),
        );
        assert_eq!(r.unwrap()["registered"], 1);
        net.online("a");
        let new = net.sessions["a"].1;
        assert_ne!(old, new);
        let r = net.rest(
            "POST",
            "/v1/nodes/a/ports",
            json!({"ports":["q"],"session":old}),
        );
        let (status, body) = r.unwrap_err();
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (409, json!("session_replaced")),
            "{body}"
        );
        let r = net.rest("POST", "/v1/nodes/a/relet", json!({"session":old}));
        assert_eq!(r.unwrap_err().0, 409);
        let q = net
            .rest("POST", "/v1/ports/query", json!({"ports":["q"]}))
            .unwrap();
        assert_eq!(q["ports"][0]["owner"], Value::Null, "not applied");
        let r = net.ws(
            "a",
            json!({"op":"regport","id":1,"ports":["q"],"session":new}),
        );
        assert_eq!(r["registered"], 1, "{r}");
    });
}

#[test]
fn an_acknowledged_send_replies_once_the_receivers_acknowledged() {
    for_each_size(Limits::default(), |net| {
        net.online("s");
        net.online("r1");
        let r2 = net.online("r2");
        reg(net, "r1", &["p1".to_string()]);
        reg(net, "r2", &["p2".to_string()]);
        let token = net.ws_start(
            "s",
            json!({"op":"sendmsg","id":9,"ack":true,"messages":[{"port":"p1","body":"a"},{"port":"p1","body":"b"},{"ports":["p2","nobody"],"body":"c"}]}),
        );
        assert!(
            net.ws_reply(token).is_none(),
            "waits for the acknowledgements"
        );
        let pushed = net.pushes("r1");
        let numbers: Vec<u64> = pushed.iter().map(|p| p["ack"].as_u64().unwrap()).collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(
            net.ws("r1", json!({"op":"ack","id":1,"upto":1}))["acknowledged"],
            1
        );
        assert!(net.ws_reply(token).is_none());
        assert_eq!(net.pushes("r2")[0]["ack"], 1);
        net.rest("POST", "/v1/nodes/r1/ack", json!({"upto":2}))
            .unwrap();
        assert!(net.ws_reply(token).is_none(), "r2 has not acknowledged");
        net.close(r2);
        let reply = net.ws_reply(token).expect("r2 went offline: done");
        assert_eq!(
            reply,
            json!({"id":9,"delivered":3,"dropped":1,"acknowledged":2,"unacknowledged":1}),
            "size {}",
            net.size()
        );
        // A receiver that never acknowledges: given up on after `ack_timeout_ms` (10 s, the
        // lease here).
        let token = net.ws_start(
            "s",
            json!({"op":"sendmsg","id":10,"ack":true,"messages":[{"port":"p1","body":"d"}]}),
        );
        net.pushes("r1");
        net.now = LEASE / 2;
        net.ws("r1", json!({"op":"relet","id":2}));
        net.ws("s", json!({"op":"relet","id":2}));
        net.tick(LEASE + 1);
        let reply = net.ws_reply(token).expect("given up after ack_timeout_ms");
        assert_eq!(reply["unacknowledged"], 1, "{reply}");
        // Without `ack` nothing is numbered.
        let r = net.ws(
            "s",
            json!({"op":"sendmsg","id":11,"messages":[{"port":"p1","body":"e"}]}),
        );
        assert_eq!(r, json!({"id":11,"delivered":1,"dropped":0}));
        assert!(net.pushes("r1")[0].get("ack").is_none());
    });
}

#[test]
fn a_connection_closed_for_a_revoked_token_takes_its_node_offline_with_that_reason() {
    for_each_size(Limits::default(), |net| {
        net.online("w");
        net.ws("w", json!({"op":"watch","id":1,"nodes":"a"}));
        let a = net.online("a");
        reg(net, "a", &["p".to_string()]);
        assert!(net.close_for(a, CloseReason::TokenRevoked));
        assert_eq!(net.closed.last().unwrap().2, CloseReason::TokenRevoked);
        let q = net
            .rest("POST", "/v1/ports/query", json!({"ports":["p"]}))
            .unwrap();
        assert_eq!(q["ports"][0]["owner"], Value::Null);
        let events = watch_events(net, "w").remove(&1).unwrap();
        assert_eq!(
            what(&events),
            set(&[("a", "online"), ("a", "offline:token_revoked")])
        );
    });
}
