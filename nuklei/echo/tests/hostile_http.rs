//! Hostile input through the real http and echo nuklei on real rings, without sockets: random
//! byte streams, valid and broken requests mixed, split anywhere, connections ended or aborted
//! at random points, windows granted in random sizes. The nuklei must never panic, must only
//! ever write well-formed HTTP/1.1 responses, must respect the windows they were granted, and
//! must release every connection and exchange once the network side is gone.

use std::time::Instant;

use nukleus_echo::EchoNukleus;
use nukleus_http::{HttpConfig, HttpNukleus, Route};
use proptest::prelude::*;
use streams::frame::{self, Frame};
use streams::{Header, Link, Nukleus, PeerLink, PollContext};

#[derive(Debug, Clone)]
enum Step {
    /// Request bytes on a connection (split as given).
    Send(usize, Vec<u8>),
    /// The client half-closes (END) or drops (ABORT) a connection.
    End(usize),
    Abort(usize),
    /// The network side grants more reply window.
    Grant(usize, u32),
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()),
        Just(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        Just(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        Just(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec()),
        Just(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        Just(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/2.0\r\n\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), Just(b'a')], 0..64),
    ]
}

fn step(conns: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..conns, piece()).prop_map(|(c, p)| Step::Send(c, p)),
        1 => (0..conns).prop_map(Step::End),
        1 => (0..conns).prop_map(Step::Abort),
        3 => (0..conns, 0u32..4096).prop_map(|(c, n)| Step::Grant(c, n)),
    ]
}

struct Peer {
    /// Per connection: bytes we may still send (http's window), bytes received, what we
    /// granted, whether the connection is over.
    credit: Vec<u64>,
    sequence: Vec<u64>,
    received: Vec<u64>,
    granted: Vec<u64>,
    out: Vec<Vec<u8>>,
    ended: Vec<bool>,
    reply_closed: Vec<bool>,
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt (the default keeps CI fast).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_streams_never_break_http(steps in proptest::collection::vec(step(4), 1..60)) {
        let conns = 4;
        let (net_side, http_net) = Link::pair(1 << 20, "tcp", "http").unwrap();
        let (http_app, echo_side) = Link::pair(1 << 20, "http", "echo").unwrap();
        let config = HttpConfig {
            routes: vec![Route { prefix: "/".into(), to: "echo".into(), key_segment: None }],
            ..HttpConfig::default()
        };
        let mut http = HttpNukleus::new(
            config, 0, 0,
            vec![PeerLink { kind: "tcp".into(), core: 0, role: streams::PeerRole::network(streams::Carries::Connection), link: http_net }, PeerLink { kind: "echo".into(), core: 0, role: streams::PeerRole::application(streams::Carries::HttpExchanges), link: http_app }],
        );
        let mut echo = EchoNukleus::new(0, vec![PeerLink { kind: "http".into(), core: 0, role: streams::PeerRole::network(streams::Carries::HttpExchanges), link: echo_side }]);
        let Link { tx: mut net_tx, rx: mut net_rx, .. } = net_side;
        let context = PollContext { now: Instant::now(), timestamp: 0, core: 0 };
        let id = |c: usize| ((c as u64) << 1) | 1;
        let mut peer = Peer {
            credit: vec![0; conns], sequence: vec![0; conns], received: vec![0; conns],
            granted: vec![0; conns], out: vec![Vec::new(); conns], ended: vec![false; conns],
            reply_closed: vec![false; conns],
        };
        for c in 0..conns {
            net_tx.begin(&Header::new(id(c)), 0, &[]).unwrap();
        }
        net_tx.publish();
        let mut run = |net_tx: &mut streams::RingWriter, net_rx: &mut streams::RingReader, peer: &mut Peer| {
            for _ in 0..50 {
                let work = http.poll(&context) + echo.poll(&context);
                let mut frames = 0;
                net_rx.read(usize::MAX, |type_id, bytes| {
                    frames += 1;
                    let f = Frame::new(type_id, bytes).expect("well-formed frames");
                    let c = (f.stream_id() >> 1) as usize;
                    match type_id {
                        frame::WINDOW => {
                            assert_eq!(f.stream_id() & 1, 1, "WINDOW is for the initial stream");
                            peer.credit[c] = (f.acknowledge() + f.maximum() as u64).saturating_sub(peer.sequence[c]);
                        }
                        frame::DATA => {
                            peer.received[c] += f.reserved() as u64;
                            assert!(peer.received[c] <= peer.granted[c], "http exceeded the reply window");
                            peer.out[c].extend_from_slice(f.payload());
                        }
                        frame::END | frame::ABORT => peer.reply_closed[c] = true,
                        frame::RESET => peer.ended[c] = true,
                        _ => {}
                    }
                });
                if work == 0 && frames == 0 {
                    break;
                }
            }
            let _ = net_tx;
        };
        for s in steps {
            match s {
                Step::Send(c, bytes) if !peer.ended[c] => {
                    let n = (bytes.len() as u64).min(peer.credit[c]) as usize;
                    if n > 0 {
                        let h = Header { stream_id: id(c), sequence: peer.sequence[c], ..Header::default() };
                        net_tx.data(&h, 0, n as u32, &[], &bytes[..n]).unwrap();
                        peer.sequence[c] += n as u64;
                        peer.credit[c] -= n as u64;
                    }
                }
                Step::End(c) if !peer.ended[c] => {
                    net_tx.end(&Header::new(id(c)), &[]).unwrap();
                    peer.ended[c] = true;
                }
                Step::Abort(c) if !peer.ended[c] => {
                    net_tx.abort(&Header::new(id(c)), &[]).unwrap();
                    net_tx.reset(&Header::new(id(c) ^ 1), &[]).unwrap();
                    peer.ended[c] = true;
                    peer.reply_closed[c] = true;
                }
                Step::Grant(c, n) if !peer.reply_closed[c] => {
                    peer.granted[c] += n as u64;
                    let h = Header { stream_id: id(c) ^ 1, acknowledge: peer.granted[c] - peer.granted[c].min(65536), maximum: 65536.min(peer.granted[c]) as u32, ..Header::default() };
                    // acknowledge + maximum == granted: the absolute position we allow.
                    net_tx.window(&h, 0).unwrap();
                }
                _ => {}
            }
            net_tx.publish();
            run(&mut net_tx, &mut net_rx, &mut peer);
        }
        // Every response written is well-formed HTTP/1.1: parse them one after another.
        for c in 0..conns {
            let mut bytes = &peer.out[c][..];
            while !bytes.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(bytes) {
                    Ok(httparse::Status::Complete(head)) => {
                        let status = response.code.unwrap();
                        prop_assert!((100..600).contains(&status));
                        let length = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .map(|h| std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap());
                        match length {
                            Some(length) if bytes.len() >= head + length => bytes = &bytes[head + length..],
                            Some(_) => break, // body still in flight (window) or cut by an abort
                            None if status == 100 => bytes = &bytes[head..],
                            None => break, // chunked or close-delimited: ends the checkable prefix
                        }
                    }
                    Ok(httparse::Status::Partial) => break,
                    Err(e) => prop_assert!(false, "malformed response on connection {c}: {e}: {:?}", String::from_utf8_lossy(bytes)),
                }
            }
        }
        // The network side goes away everywhere: everything is released.
        for c in 0..conns {
            if !peer.ended[c] {
                net_tx.abort(&Header::new(id(c)), &[]).unwrap();
            }
            if !peer.reply_closed[c] {
                net_tx.reset(&Header::new(id(c) ^ 1), &[]).unwrap();
            }
        }
        net_tx.publish();
        run(&mut net_tx, &mut net_rx, &mut peer);
        let mut gauges = Vec::new();
        http.gauges(&mut gauges);
        echo.gauges(&mut gauges);
        for (name, value) in &gauges {
            if *name == "connections" || *name == "exchanges" {
                prop_assert_eq!(*value, 0, "{} left after every connection was aborted: {:?}", name, gauges);
            }
        }
    }
}
