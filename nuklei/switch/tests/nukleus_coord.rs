//! The coordination features at the switch nukleus, over real rings with scripted peers: the
//! session greeting of a receiving connection, tokens reloaded while it runs (revoked
//! connections close with 4004, `POST /v1/admin/reload`), and compare-and-register needing
//! the authority of the node it takes ports from.

mod common;

use std::sync::Arc;

use common::rig::*;
use nukleus_switch::auth::TokenUpdates;
use nukleus_switch::nukleus::TokenReload;
use nukleus_switch::{SwitchNukleusConfig, TokenGrant};
use streams::frame;

fn grant(token: &str, nodes: &[&str], admin: bool) -> TokenGrant {
    TokenGrant {
        token: token.into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        admin,
        ..TokenGrant::default()
    }
}

/// A rig whose tokens are `t` (n1), `both` (n1, n2), `adm` (admin), reloadable through
/// `updates`; a reload request publishes `next`.
fn reloadable(next: Vec<TokenGrant>) -> (Rig, Arc<TokenUpdates>) {
    let updates = Arc::new(TokenUpdates::default());
    let publish = updates.clone();
    let trigger = Arc::new(move || {
        let n = next.len();
        publish.publish(next.clone());
        Ok(n)
    });
    let rig = Rig::with_config(SwitchNukleusConfig {
        tokens: vec![
            grant("t", &["n1"], false),
            grant("both", &["n1", "n2"], false),
            grant("adm", &[], true),
        ],
        reload: Some(TokenReload {
            updates: updates.clone(),
            trigger,
        }),
        ..SwitchNukleusConfig::default()
    });
    (rig, updates)
}

fn data(frames: &[Got]) -> Vec<serde_json::Value> {
    frames
        .iter()
        .filter(|g| g.type_id == frame::DATA && g.stream_id == 0)
        .map(|g| serde_json::from_slice(&g.payload).unwrap())
        .collect()
}

#[test]
fn a_receiving_connection_starts_with_its_session() {
    let mut rig = Rig::new(1 << 20);
    let frames = rig.open_ws(65536);
    let first = &data(&frames)[0];
    assert_eq!(first[0]["type"], "session", "{first}");
    assert_eq!(first[0]["node"], "n1");
    assert!(first[0]["session"].as_u64().unwrap() > 0);
    // REST calls may name it; another number is refused.
    let session = first[0]["session"].as_u64().unwrap();
    let body = format!(r#"{{"ports":["p"],"session":{session}}}"#);
    let (status, _) = rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", &body));
    assert_eq!(status, 200);
    let body = format!(r#"{{"ports":["q"],"session":{}}}"#, session + 1);
    let (status, reply) = rest_reply(&rig.rest(5, "POST", "/v1/nodes/n1/ports", &body));
    assert_eq!(status, 409, "{reply}");
    assert!(reply.contains("session_replaced"), "{reply}");
}

#[test]
fn a_reload_that_removes_a_token_closes_its_connections_with_4004() {
    let (mut rig, updates) = reloadable(Vec::new());
    rig.open_ws(65536);
    // `t` stays, but no longer for n1: its connection closes; `both` still works.
    updates.publish(vec![
        grant("t", &["n9"], false),
        grant("both", &["n1"], false),
    ]);
    rig.poll();
    let frames = rig.ws.frames();
    assert_eq!(close_code(&frames), Some(4004), "{frames:?}");
    let end = frames.iter().find(|g| g.type_id == frame::END).unwrap();
    let reason = String::from_utf8_lossy(&end.extension[2..]).to_string();
    assert!(reason.contains("revoked"), "{reason}");
    // A removed token fails at once for new requests; a kept one works.
    let (status, _) =
        rest_reply(&rig.rest_as(3, "POST", "/v1/nodes/query", r#"{"nodes":["n1"]}"#, "adm"));
    assert_eq!(status, 401);
    let (status, body) =
        rest_reply(&rig.rest_as(5, "POST", "/v1/nodes/query", r#"{"nodes":["n1"]}"#, "both"));
    assert_eq!(status, 200);
    assert!(body.contains(r#""online":false"#), "{body}");
}

#[test]
fn post_admin_reload_reads_the_tokens_again() {
    let (mut rig, _) = reloadable(vec![grant("new", &["n1"], true)]);
    let (status, _) = rest_reply(&rig.rest_as(3, "POST", "/v1/admin/reload", "", "t"));
    assert_eq!(status, 403, "an admin token is needed");
    let (status, body) = rest_reply(&rig.rest_as(5, "POST", "/v1/admin/reload", "", "adm"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["reloaded"].clone(), v["tokens"].clone()),
        (true.into(), 1.into())
    );
    let (status, _) =
        rest_reply(&rig.rest_as(7, "POST", "/v1/nodes/query", r#"{"nodes":[]}"#, "adm"));
    assert_eq!(status, 401, "adm is gone");
    let (status, _) =
        rest_reply(&rig.rest_as(9, "POST", "/v1/nodes/query", r#"{"nodes":[]}"#, "new"));
    assert_eq!(status, 200);
    // Without a topology to read from, a reload is not available.
    let mut plain = Rig::with_config(SwitchNukleusConfig {
        tokens: vec![grant("adm", &[], true)],
        ..SwitchNukleusConfig::default()
    });
    let (status, body) = rest_reply(&plain.rest_as(3, "POST", "/v1/admin/reload", "", "adm"));
    assert_eq!(status, 501, "{body}");
}

#[test]
fn compare_and_register_from_another_node_needs_its_authority() {
    let (mut rig, _) = reloadable(Vec::new());
    rig.open_ws(65536);
    let cas = r#"{"ports":["p"],"if_owner":"n2"}"#;
    let (status, body) = rest_reply(&rig.rest_as(3, "POST", "/v1/nodes/n1/ports", cas, "t"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("n2"), "{body}");
    let (status, body) = rest_reply(&rig.rest_as(5, "POST", "/v1/nodes/n1/ports", cas, "both"));
    assert_eq!(status, 200, "{body}");
    // Compare-and-register against nobody or itself needs no more than the node's own.
    let (status, body) = rest_reply(&rig.rest_as(
        7,
        "POST",
        "/v1/nodes/n1/ports",
        r#"{"ports":["p"],"if_owner":null}"#,
        "t",
    ));
    assert_eq!(status, 200, "{body}");
}
