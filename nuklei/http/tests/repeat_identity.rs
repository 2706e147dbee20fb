//! A request head that repeats the last one read is not parsed again (the request cache):
//! its BEGIN carries the cached extension, plus the connection's own TLS client identity
//! where it has one. Connections with and without an identity, interleaved, each get theirs.

use std::time::Instant;

use nukleus_http::ext::RequestHead;
use nukleus_http::tls_begin_ex::{encode_begin_ex, ClientIdentity, TlsBeginEx};
use nukleus_http::HttpConfig;
use streams::frame::{self, Frame};
use streams::{Carries, Header, Nukleus, PeerRole};

mod support;

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn repeated_heads_carry_each_connections_own_identity() {
    let (mut http, mut tls, mut app) = support::to_echo(
        ("tls", PeerRole::network(Carries::SecureConnection)),
        1 << 20,
        HttpConfig::default(),
    );
    let context = support::context_at(Instant::now());
    // Connection 1 verified a client certificate, connection 3 did not.
    let (with, without) = (1u64, 3u64);
    let mut ex = Vec::new();
    let identity = TlsBeginEx {
        client: Some(ClientIdentity {
            common_name: "alice".into(),
            sans: vec!["alice.example".into()],
        }),
        ..TlsBeginEx::default()
    };
    encode_begin_ex(&identity, &mut ex);
    tls.tx.begin(&Header::new(with), 0, &ex).unwrap();
    ex.clear();
    encode_begin_ex(&TlsBeginEx::default(), &mut ex);
    tls.tx.begin(&Header::new(without), 0, &ex).unwrap();
    tls.tx.publish();
    http.poll(&context);
    // Each sends the same head three times, pipelined, in turns.
    let mut sequence = [0u64; 2];
    for (turn, id) in [without, with, without, with].into_iter().enumerate() {
        let bytes: Vec<u8> = GET.repeat(if turn < 2 { 1 } else { 2 });
        let h = Header {
            sequence: sequence[(id >> 1) as usize],
            ..Header::new(id)
        };
        tls.tx.data(&h, 0, bytes.len() as u32, &[], &bytes).unwrap();
        sequence[(id >> 1) as usize] += bytes.len() as u64;
        tls.tx.publish();
        http.poll(&context);
    }
    let mut frames = Vec::new();
    app.rx.read(usize::MAX, |type_id, bytes| {
        frames.push((type_id, bytes.to_vec()))
    });
    let mut seen = Vec::new();
    for (type_id, bytes) in frames {
        if type_id != frame::BEGIN {
            continue;
        }
        let f = Frame::new(type_id, &bytes).unwrap();
        let head = RequestHead::parse(f.extension()).expect("a request head");
        assert_eq!((head.method, head.target), ("GET", "/a"));
        let names: Vec<String> = head.headers().map(|(n, _)| n.to_owned()).collect();
        seen.push((f.affinity(), names));
    }
    let plain = vec!["Host".to_string()];
    let verified = vec![
        "Host".to_string(),
        ":tls-client-cn".to_string(),
        ":tls-client-san".to_string(),
    ];
    let expected: Vec<(u64, Vec<String>)> = [without, with, without, without, with, with]
        .into_iter()
        .map(|id| {
            (
                id,
                if id == with {
                    verified.clone()
                } else {
                    plain.clone()
                },
            )
        })
        .collect();
    assert_eq!(seen, expected);
}
