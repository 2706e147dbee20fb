//! Two cluster engines wired through their mesh as the nukleus wires them (records fed in
//! order per pair of instances), driven by WebSocket request text: what a message's body looks
//! like in its push must not depend on which instance parsed the request, resolved the port or
//! queued the push, whether the body needed JSON escapes or not.

mod common;

use nukleus_switch::auth::AnyNode;
use nukleus_switch::cluster::{home_of, shard_instance};
use nukleus_switch::engine::cluster::ClusterEngine;
use nukleus_switch::engine::{Completion, SwitchEngine};
use nukleus_switch::limits::Limits;
use nukleus_switch::mesh::{MeshReader, Msg};

const N: usize = 2;

fn engines() -> Vec<ClusterEngine> {
    common::cluster_engines(N, 10_000, &Limits::default())
}

fn pump(engines: &mut [ClusterEngine]) {
    let mut reader = MeshReader::default();
    loop {
        let mut moved = false;
        for from in 0..N {
            for to in 0..N {
                let bytes = std::mem::take(engines[from].poll_transmit(to).expect("a cluster"));
                if bytes.is_empty() {
                    continue;
                }
                moved = true;
                reader.feed(&bytes, |r| {
                    engines[to].handle_mesh(from, Msg::decode(r).expect("valid record"))
                });
            }
        }
        if !moved {
            return;
        }
    }
}

fn named(prefix: &str, pick: impl Fn(&str) -> bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|s| pick(s))
        .expect("some name fits")
}

fn reply(engine: &mut ClusterEngine) -> serde_json::Value {
    match engine.poll_done() {
        Some((_, Completion::Ws(text))) => serde_json::from_str(&text).expect("JSON reply"),
        other => panic!("no WebSocket reply: {other:?}"),
    }
}

#[test]
fn bodies_with_and_without_json_escapes_arrive_as_sent_through_the_mesh() {
    let mut e = engines();
    let owner = named("owner", |s| home_of(s, N) == 0);
    let sender = named("sender", |s| home_of(s, N) == 1);
    // A port of each shard: one resolved where the request is parsed, one over the mesh.
    let here = named("p", |s| shard_instance(s, N) == 1);
    let there = named("p", |s| shard_instance(s, N) == 0);
    let session = e[0].handle_wait_msg(&owner, "a:1", 1, 0).expect("online");
    e[0].handle_ws(
        1,
        &owner,
        &format!(r#"{{"op":"regport","id":1,"ports":["{here}","{there}"]}}"#),
        0,
        &AnyNode,
    );
    pump(&mut e);
    assert_eq!(reply(&mut e[0])["registered"], 2);
    let bodies = [
        "plain text",
        "a \"quoted\" word\nand a line",
        "tab\there, backslash \\ and é",
    ];
    let messages: Vec<String> = bodies
        .iter()
        .flat_map(|b| [&here, &there].map(|p| (p.clone(), *b)))
        .map(|(p, b)| serde_json::json!({"port": p, "body": b}).to_string())
        .collect();
    let text = format!(
        r#"{{"op":"sendmsg","id":2,"messages":[{}]}}"#,
        messages.join(",")
    );
    e[1].handle_ws(2, &sender, &text, 0, &AnyNode);
    pump(&mut e);
    assert_eq!(reply(&mut e[1])["delivered"], 6);
    let mut out = Vec::new();
    e[0].drain(session.node, 1 << 20, &mut out);
    let pushes: serde_json::Value = serde_json::from_slice(&out).expect("pushes are JSON");
    let got: Vec<(String, String)> = pushes
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| {
            (
                p["port"].as_str().expect("port").to_string(),
                p["body"].as_str().expect("body").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = bodies
        .iter()
        .flat_map(|b| [&here, &there].map(|p| (p.clone(), b.to_string())))
        .collect();
    assert_eq!(got, want);
}
