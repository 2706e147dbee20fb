//! DESIGN §3 through the http nukleus's real streams: a frame write that finds its ring full
//! resets that one stream on both sides (the connection it belongs to is closed, its
//! exchange reset on the application side, the refused side told once there is room), is
//! counted, and nothing else is affected.

use std::time::Instant;

use nukleus_http::{HttpConfig, HttpNukleus};
use streams::frame::{self, OwnedFrame};
use streams::{Carries, Header, Link, Nukleus, PeerRole, PollContext};

mod support;

/// The application's ring: small enough that a few frames fill it.
const SMALL_RING: usize = 4096;

struct Rig {
    http: HttpNukleus,
    tcp: Link,
    app: Link,
    start: Instant,
}

/// tcp's connection `n` (initial streams from the network are odd).
fn net_id(n: u64) -> u64 {
    (n << 1) | 1
}

impl Rig {
    fn new() -> Rig {
        let (http, tcp, app) = support::to_echo(
            ("tcp", PeerRole::network(Carries::Connection)),
            SMALL_RING,
            HttpConfig::default(),
        );
        Rig {
            http,
            tcp,
            app,
            start: Instant::now(),
        }
    }

    fn poll(&mut self) {
        self.tcp.tx.publish();
        self.app.tx.publish();
        let now = Instant::now();
        self.http.poll(&PollContext {
            now,
            timestamp: now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
    }

    /// tcp opens connection `n` and sends `request` on it.
    fn request(&mut self, n: u64, request: &[u8]) {
        let id = net_id(n);
        self.tcp.tx.begin(&Header::new(id), 0, &[]).unwrap();
        self.tcp
            .tx
            .window(
                &Header {
                    maximum: 1 << 16,
                    ..Header::new(id ^ 1)
                },
                0,
            )
            .unwrap();
        self.tcp
            .tx
            .data(&Header::new(id), 0, request.len() as u32, &[], request)
            .unwrap();
        self.poll();
    }

    /// What connection `n`'s client got: its response bytes.
    fn client_got(frames: &[OwnedFrame], n: u64) -> String {
        let body: Vec<u8> = frames
            .iter()
            .filter(|f| f.type_id == frame::DATA && f.stream_id == net_id(n) ^ 1)
            .flat_map(|f| f.payload.clone())
            .collect();
        String::from_utf8_lossy(&body).into_owned()
    }

    fn gauge(&self, name: &str) -> u64 {
        let mut gauges = Vec::new();
        self.http.gauges(&mut gauges);
        gauges
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |&(_, v)| v)
    }
}

fn of(frames: &[OwnedFrame], type_id: u32, stream_id: u64) -> usize {
    frames
        .iter()
        .filter(|f| f.type_id == type_id && f.stream_id == stream_id)
        .count()
}

/// The application answers exchange `id` with 200 and `ok`.
fn answer(app: &mut Link, id: u64) {
    let mut head = Vec::new();
    nukleus_http::ext::encode_response(&mut head, 200, [("Content-Length", &b"2"[..])].into_iter());
    app.tx.begin(&Header::new(id ^ 1), 0, &head).unwrap();
    app.tx
        .data(&Header::new(id ^ 1), frame::FLAG_FIN, 2, &[], b"ok")
        .unwrap();
}

#[test]
fn a_body_frame_refused_by_a_full_ring_resets_that_connection_on_both_sides_only() {
    let mut rig = Rig::new();
    rig.request(1, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    // Connection 2 uploads a body; the application grants it a large window but reads
    // nothing, so the body fills the application's ring until a DATA frame is refused.
    rig.request(
        2,
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    );
    let to_app = rig.app.frames();
    let begins: Vec<u64> = to_app
        .iter()
        .filter(|f| f.type_id == frame::BEGIN)
        .map(|f| f.stream_id)
        .collect();
    assert_eq!(begins.len(), 2, "both requests reached the application");
    rig.app
        .tx
        .window(
            &Header {
                maximum: 1 << 20,
                ..Header::new(begins[1])
            },
            0,
        )
        .unwrap();
    rig.poll();
    let body = vec![b'b'; 30000];
    rig.tcp
        .tx
        .data(
            &Header {
                sequence: 0,
                ..Header::new(net_id(2))
            },
            0,
            body.len() as u32,
            &[],
            &body,
        )
        .unwrap();
    rig.poll();
    assert_eq!(rig.gauge("streams_reset_ring_full_total"), 1);
    // The network side of connection 2 is told at once; connection 1 hears nothing of it.
    let to_tcp = rig.tcp.frames();
    assert_eq!(of(&to_tcp, frame::ABORT, net_id(2) ^ 1), 1);
    assert_eq!(of(&to_tcp, frame::RESET, net_id(2)), 1);
    assert_eq!(of(&to_tcp, frame::ABORT, net_id(1) ^ 1), 0);
    assert_eq!(of(&to_tcp, frame::RESET, net_id(1)), 0);
    // The application reads its ring (and once there is room, whatever of the reset did not
    // fit is written): the reset of exchange 2 reaches it too, deferred, never lost.
    let mut seen = rig.app.frames();
    assert!(seen
        .iter()
        .any(|f| f.type_id == frame::DATA && f.stream_id == begins[1]));
    rig.poll();
    seen.extend(rig.app.frames());
    assert_eq!(of(&seen, frame::ABORT, begins[1]), 1);
    assert_eq!(of(&seen, frame::RESET, begins[1] ^ 1), 1);
    assert_eq!(
        of(&seen, frame::ABORT, begins[0]),
        0,
        "exchange 1 is untouched"
    );
    // Connection 1 carries on.
    answer(&mut rig.app, begins[0]);
    rig.poll();
    let text = Rig::client_got(&rig.tcp.frames(), 1);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
        "{text}"
    );
    assert_eq!(
        rig.gauge("streams_reset_ring_full_total"),
        1,
        "nothing else was reset"
    );
}

#[test]
fn a_request_head_refused_by_a_full_ring_is_answered_503_and_counted() {
    let mut rig = Rig::new();
    let mut n = 0;
    while rig.gauge("streams_reset_ring_full_total") == 0 {
        n += 1;
        assert!(
            n < 100,
            "a 4 KiB ring holds fewer than 100 request heads of 300 bytes"
        );
        let request = format!(
            "GET /r{n} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(250)
        );
        rig.request(n, request.as_bytes());
    }
    let to_tcp = rig.tcp.frames();
    let text = Rig::client_got(&to_tcp, n);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    for k in 1..n {
        assert_eq!(
            Rig::client_got(&to_tcp, k),
            "",
            "connection {k} waits for its answer"
        );
    }
    let first = rig
        .app
        .frames()
        .into_iter()
        .find(|f| f.type_id == frame::BEGIN)
        .unwrap()
        .stream_id;
    answer(&mut rig.app, first);
    rig.poll();
    let text = Rig::client_got(&rig.tcp.frames(), 1);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
