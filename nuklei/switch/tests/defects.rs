//! Regression tests of the defects of issue 15, each on one instance and on a cluster of
//! instances (the engine interface, sans I/O). The transport defects (a closed SSE
//! connection, lease renewal by WebSocket messages) are tested at the nukleus
//! (`tests/streams.rs`), in http, and end to end.

mod common;

use common::{for_each_size, Net};
use nukleus_switch::limits::Limits;
use serde_json::{json, Value};

fn ports_of(net: &mut Net, node: &str) -> Value {
    let r = net
        .rest("POST", "/v1/nodes/query", json!({ "nodes": [node] }))
        .unwrap();
    r["nodes"][0]["ports"].clone()
}

/// Defect 2: a second WaitMsg releases the node's ports; its port count and the per-node
/// limit must say so (they counted the released ports on several instances).
#[test]
fn a_replaced_receiving_connection_leaves_no_ports_counted() {
    let limits = Limits {
        max_ports_per_node: 10,
        ..Limits::default()
    };
    for_each_size(limits, |net| {
        net.online("a");
        let eight: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let r = net.rest("POST", "/v1/nodes/a/ports", json!({ "ports": eight }));
        assert_eq!(r.unwrap()["registered"], 8, "size {}", net.size());
        assert_eq!(ports_of(net, "a"), 8);
        net.online("a");
        assert_eq!(ports_of(net, "a"), 0, "size {}", net.size());
        let r = net.rest("POST", "/v1/nodes/a/ports", json!({ "ports": eight }));
        assert_eq!(r.unwrap()["registered"], 8, "size {}", net.size());
        assert_eq!(ports_of(net, "a"), 8);
        // And over the WebSocket the same.
        net.online("a");
        let r = net.ws("a", json!({"op":"regport","id":1,"ports": eight}));
        assert_eq!(r["registered"], 8, "{r}");
        assert_eq!(ports_of(net, "a"), 8);
    });
}

/// Defect 3: a port listed twice in one message is one target.
#[test]
fn a_port_listed_twice_in_a_multicast_is_one_target() {
    for_each_size(Limits::default(), |net| {
        net.online("a");
        net.online("b");
        let p = net.port_at(0, "p");
        let q = net.port_at(1, "q");
        net.rest("POST", "/v1/nodes/a/ports", json!({ "ports": [p, q] }))
            .unwrap();
        let r = net
            .rest(
                "POST",
                "/v1/messages",
                json!({"messages":[{"ports":[p, p],"body":"once"}]}),
            )
            .unwrap();
        assert_eq!(r, json!({"delivered":1,"dropped":0}), "size {}", net.size());
        assert_eq!(net.pushes("a").len(), 1);
        let r = net
            .rest(
                "POST",
                "/v1/messages",
                json!({"messages":[{"ports":[p, q, p, q],"body":"twice"}]}),
            )
            .unwrap();
        assert_eq!(r["delivered"], 2);
        assert_eq!(net.pushes("a").len(), 2);
        // Unknown ports listed twice are dropped once; a broadcast listed twice reaches each
        // node once.
        let r = net
            .rest(
                "POST",
                "/v1/messages",
                json!({"messages":[{"ports":["nobody", "nobody"],"body":"x"}]}),
            )
            .unwrap();
        assert_eq!(r, json!({"delivered":0,"dropped":1}));
        let r = net.ws(
            "b",
            json!({"op":"sendmsg","id":2,"messages":[{"ports":["", ""],"body":"all"}]}),
        );
        assert_eq!(r["delivered"], 2, "{r}");
        assert_eq!(net.pushes("a").len(), 1);
        assert_eq!(net.pushes("b").len(), 1);
        // The same port in two messages is two messages.
        let r = net
            .rest(
                "POST",
                "/v1/messages",
                json!({"messages":[{"port":p,"body":"1"},{"port":p,"body":"2"}]}),
            )
            .unwrap();
        assert_eq!(r["delivered"], 2);
    });
}

/// Defect 5: a node that announced no address has none (`null`), not `""`.
#[test]
fn an_omitted_address_is_null_not_an_empty_string() {
    for_each_size(Limits::default(), |net| {
        net.connect("a", "").unwrap();
        net.online("b");
        net.rest("POST", "/v1/nodes/a/ports", json!({ "ports": ["p"] }))
            .unwrap();
        let r = net
            .rest("POST", "/v1/nodes/b/ports", json!({ "ports": ["p"] }))
            .unwrap();
        assert_eq!(
            r["failed"],
            json!([{"port":"p","owner":"a","address":null}]),
            "size {}",
            net.size()
        );
        let r = net
            .rest("POST", "/v1/ports/query", json!({ "ports": ["p"] }))
            .unwrap();
        assert_eq!(
            r["ports"][0],
            json!({"port":"p","owner":"a","address":null})
        );
        let r = net
            .rest("POST", "/v1/nodes/query", json!({ "nodes": ["a", "b"] }))
            .unwrap();
        assert_eq!(r["nodes"][0]["address"], Value::Null);
        assert_eq!(r["nodes"][1]["address"], "b:1");
        let r = net.ws("b", json!({"op":"regport","id":3,"ports":["p"]}));
        assert_eq!(r["failed"][0]["address"], Value::Null, "{r}");
    });
}
