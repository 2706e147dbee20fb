//! SendMsg → push inside the switch: the request text of a WebSocket `sendmsg` of 1,000
//! 64-byte bodies to one port (as `benches/switch.sh` sends), parsed, queued and drained into
//! the push frame, per message. No streams or sockets: this is the switch's share of the
//! end-to-end figure.
//!
//! ```text
//! cargo bench -p nukleus-switch --bench sendmsg
//! ```

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use divan::Bencher;
use nukleus_switch::api;
use nukleus_switch::request;
use nukleus_switch::switch::{Config, Switch};

const MESSAGES: usize = 1_000;

/// `{"op":"sendmsg","id":1,"messages":[{"port":"inbox","body":"<16-digit seq><48 x>"},…]}`.
static REQUEST: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from(r#"{"op":"sendmsg","id":1,"messages":["#);
    for i in 0..MESSAGES {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            r#"{{"port":"inbox","body":"{i:016}{}"}}"#,
            "x".repeat(48)
        ));
    }
    text.push_str("]}");
    text
});

fn main() {
    divan::main();
}

/// Parse only.
#[divan::bench]
fn parse(bencher: Bencher) {
    let text = &*REQUEST;
    bencher
        .counter(ItemsCount::new(MESSAGES))
        .bench_local(|| request::parse_ws(divan::black_box(text)).unwrap());
}

/// Parse, queue on the receiver, reply, and drain the pushes into one frame.
#[divan::bench]
fn handle_and_drain(bencher: Bencher) {
    let text = &*REQUEST;
    let mut sw = Switch::new(Config::default());
    let mut out = Vec::new();
    let rx = sw
        .wait_msg("rx", "10.0.0.1:7000", 1, 0, &mut out)
        .unwrap()
        .node;
    sw.wait_msg("tx", "10.0.0.2:7000", 2, 0, &mut out).unwrap();
    sw.reg_port("rx", &["inbox"], false, &mut out).unwrap();
    let mut frame = Vec::with_capacity(1 << 20);
    bencher.counter(ItemsCount::new(MESSAGES)).bench_local(|| {
        out.clear();
        let reply = api::handle_ws(&mut sw, "tx", divan::black_box(text), 0, &mut out);
        frame.clear();
        let d = sw.drain(rx, 1 << 20, &mut frame);
        assert_eq!(d.pushes, MESSAGES);
        reply
    });
}

/// The serde parse the switch used before (`WsRequest`, tag + flatten), for comparison.
#[divan::bench]
fn parse_serde(bencher: Bencher) {
    let text = &*REQUEST;
    bencher
        .counter(ItemsCount::new(MESSAGES))
        .bench_local(|| serde_json::from_str::<api::WsRequest>(divan::black_box(text)).unwrap());
}
