//! Micro-benchmark of the user-space cost per request of the http and echo nuklei, fused on
//! one thread, without sockets: a scripted network peer feeds DATA frames carrying pipelined
//! `GET /` requests for many connections and consumes the response DATA, granting windows
//! like the tcp nukleus does. Reports nanoseconds per request (best of several rounds).
//!
//! Run: `cargo bench -p reaktor --bench http_pipeline` (env: CONNS, DEPTH, ROUNDS).

use std::time::Instant;

use nukleus_echo::EchoNukleus;
use nukleus_http::{HttpConfig, HttpNukleus, Route};
use streams::frame::{self, Frame};
use streams::{Header, Link, Nukleus, PeerLink, PollContext, RingReader, RingWriter};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let conns = env("CONNS", 64);
    let depth = env("DEPTH", 16);
    let rounds = env("ROUNDS", 5);
    let batches = env("BATCHES", 2000);
    let capacity = 16 << 20;
    let (net_side, http_net) = Link::pair(capacity, "tcp", "http").unwrap();
    let (http_app, echo_side) = Link::pair(capacity, "http", "echo").unwrap();
    let config = HttpConfig {
        routes: vec![Route {
            prefix: "/".into(),
            to: "echo".into(),
            key_segment: None,
        }],
        ..HttpConfig::default()
    };
    let mut http = HttpNukleus::new(
        config,
        0,
        0,
        vec![
            PeerLink {
                kind: "tcp".into(),
                core: 0,
                role: streams::PeerRole::network(streams::Carries::Connection),
                link: http_net,
            },
            PeerLink {
                kind: "echo".into(),
                core: 0,
                role: streams::PeerRole::application(streams::Carries::HttpExchanges),
                link: http_app,
            },
        ],
    );
    let mut echo = EchoNukleus::new(
        0,
        vec![PeerLink {
            kind: "http".into(),
            core: 0,
            role: streams::PeerRole::network(streams::Carries::HttpExchanges),
            link: echo_side,
        }],
    );
    let Link {
        tx: mut net_tx,
        rx: mut net_rx,
        ..
    } = net_side;

    let request = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
    let burst: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * depth)
        .collect();
    let context = PollContext {
        now: Instant::now(),
        timestamp: 0,
        core: 0,
    };
    let ids: Vec<u64> = (0..conns).map(|c| ((c as u64) << 1) | 1).collect();
    let mut sequence = vec![0u64; conns];
    let mut acked = vec![0u64; conns];
    for &id in &ids {
        net_tx.begin(&Header::new(id), 0, &[]).unwrap();
    }
    net_tx.publish();
    // `pump` returns response bytes; every response has the same length (fixed Date width).
    let mut pump = |net_tx: &mut RingWriter,
                    net_rx: &mut RingReader,
                    http: &mut HttpNukleus,
                    echo: &mut EchoNukleus|
     -> usize {
        let mut responses = 0;
        // Poll until quiet: each poll reads a bounded number of frames.
        while http.poll(&context) + echo.poll(&context) > 0 {}
        net_rx.read(usize::MAX, |type_id, bytes| {
            let f = Frame::new(type_id, bytes).unwrap();
            match type_id {
                frame::DATA => {
                    responses += f.payload().len();
                    let c = (f.stream_id() >> 1) as usize;
                    acked[c] += f.reserved() as u64;
                    let h = Header {
                        stream_id: f.stream_id(),
                        acknowledge: acked[c],
                        maximum: 65536,
                        ..Header::default()
                    };
                    net_tx.window(&h, 0).unwrap();
                }
                frame::BEGIN => {
                    let h = Header {
                        stream_id: f.stream_id(),
                        maximum: 65536,
                        ..Header::default()
                    };
                    net_tx.window(&h, 0).unwrap();
                }
                _ => {}
            }
        });
        net_tx.publish();
        responses
    };
    pump(&mut net_tx, &mut net_rx, &mut http, &mut echo);
    let h = Header {
        stream_id: ids[0],
        sequence: sequence[0],
        ..Header::default()
    };
    net_tx
        .data(&h, 0, request.len() as u32, &[], request)
        .unwrap();
    sequence[0] += request.len() as u64;
    net_tx.publish();
    let response_len = pump(&mut net_tx, &mut net_rx, &mut http, &mut echo);
    assert!(response_len > 13, "the warm-up request was answered");
    let mut best = f64::MAX;
    for round in 0..rounds {
        let start = Instant::now();
        let mut answered = 0;
        for _ in 0..batches {
            for (c, &id) in ids.iter().enumerate() {
                let h = Header {
                    stream_id: id,
                    sequence: sequence[c],
                    ..Header::default()
                };
                net_tx.data(&h, 0, burst.len() as u32, &[], &burst).unwrap();
                sequence[c] += burst.len() as u64;
            }
            net_tx.publish();
            answered += pump(&mut net_tx, &mut net_rx, &mut http, &mut echo);
        }
        let expected = batches * conns * depth;
        assert_eq!(answered, expected * response_len, "every request answered");
        let nanos = start.elapsed().as_nanos() as f64 / expected as f64;
        println!("round {round}: {nanos:.1} ns/request ({expected} requests)");
        best = best.min(nanos);
    }
    println!("http+echo user-space cost: {best:.1} ns/request (best of {rounds}; {conns} connections x {depth} pipelined)");
}
