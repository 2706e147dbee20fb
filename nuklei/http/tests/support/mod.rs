//! A scripted-peer rig for the http nukleus: a `tcp` peer (the network connection), a `ws`
//! peer (the kind upgrades under `/ws/` are routed to) and an `echo` peer (the ordinary
//! application every other path goes to), all over real rings.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use nukleus_http::ext;
use nukleus_http::{HttpConfig, HttpNukleus, Route};
use streams::frame::{self, OwnedFrame};
use streams::{Carries, Header, Link, Nukleus, PeerLink, PeerRole, PollContext};

/// tcp's stream id for the connection (initial streams from the network are odd).
pub const NET_ID: u64 = 0x1_0000_0001;

pub struct Rig {
    pub http: HttpNukleus,
    pub tcp: Link,
    pub ws: Link,
    pub app: Link,
    start: Instant,
    /// Where the rig's clock stands (`advance` moves it).
    pub now: Instant,
    /// Bytes tcp sent so far on NET_ID.
    net_sequence: u64,
}

fn link(kind: &str, role: PeerRole) -> (PeerLink, Link) {
    PeerLink::scripted(kind, role, 1 << 20).unwrap()
}

/// An http nukleus between one network peer (`network`: tcp or tls, its 1 MiB ring) and one
/// `echo` application on an `app_ring`-byte ring, every path routed to echo (`config`'s own
/// routes replaced): (http, network, application).
pub fn to_echo(
    network: (&str, PeerRole),
    app_ring: usize,
    config: HttpConfig,
) -> (HttpNukleus, Link, Link) {
    let (net_link, net) = link(network.0, network.1);
    let (app_link, app) = PeerLink::scripted(
        "echo",
        PeerRole::application(Carries::HttpExchanges),
        app_ring,
    )
    .unwrap();
    let config = HttpConfig {
        routes: vec![Route {
            prefix: "/".into(),
            to: "echo".into(),
            key_segment: None,
        }],
        ..config
    };
    (
        HttpNukleus::new(config, 0, 0, vec![net_link, app_link]),
        net,
        app,
    )
}

/// A poll context at `now`, timestamp 0, core 0.
pub fn context_at(now: Instant) -> PollContext {
    PollContext {
        now,
        timestamp: 0,
        core: 0,
    }
}

impl Rig {
    pub fn new(window: u32) -> Rig {
        Rig::with(HttpConfig {
            window,
            ..HttpConfig::default()
        })
    }

    /// A rig whose routes are `/ws/` -> ws and `/` -> echo, whatever `config` says.
    pub fn with(config: HttpConfig) -> Rig {
        let (tcp_link, tcp) = link("tcp", PeerRole::network(Carries::Connection));
        let (ws_link, ws) = link("ws", PeerRole::relay(Carries::HttpExchanges));
        let (app_link, app) = link("echo", PeerRole::application(Carries::HttpExchanges));
        let config = HttpConfig {
            routes: vec![
                Route {
                    prefix: "/ws/".into(),
                    to: "ws".into(),
                    key_segment: None,
                },
                Route {
                    prefix: "/".into(),
                    to: "echo".into(),
                    key_segment: None,
                },
            ],
            ..config
        };
        let start = Instant::now();
        Rig {
            http: HttpNukleus::new(config, 0, 0, vec![tcp_link, ws_link, app_link]),
            tcp,
            ws,
            app,
            start,
            now: start,
            net_sequence: 0,
        }
    }

    pub fn poll(&mut self) {
        self.tcp.tx.publish();
        self.ws.tx.publish();
        self.app.tx.publish();
        self.http.poll(&PollContext {
            now: self.now,
            timestamp: self.now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
    }

    /// Moves the clock on by `by` and polls.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.poll();
    }

    /// tcp opens the connection and grants `window` reply bytes.
    pub fn open(&mut self, window: u32) {
        self.tcp.tx.begin(&Header::new(NET_ID), 0, &[]).unwrap();
        Rig::grant(&mut self.tcp, NET_ID ^ 1, 0, window);
        self.poll();
    }

    /// tcp sends `bytes` on the connection in one DATA frame.
    pub fn client(&mut self, bytes: &[u8]) {
        let h = Header {
            sequence: self.net_sequence,
            ..Header::new(NET_ID)
        };
        self.tcp
            .tx
            .data(&h, 0, bytes.len() as u32, &[], bytes)
            .unwrap();
        self.net_sequence += bytes.len() as u64;
        self.poll();
    }

    /// The client half-closes the connection.
    pub fn client_end(&mut self) {
        self.tcp.tx.end(&Header::new(NET_ID), &[]).unwrap();
        self.poll();
    }

    /// The connection opens and a WebSocket upgrade request is routed to ws, which accepts it
    /// with a 101 (as ws does once its application accepted); returns ws's stream id.
    pub fn upgrade(&mut self) -> u64 {
        self.open(1 << 20);
        self.client(
            b"GET /ws/b0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        );
        let begin = self
            .ws
            .frames()
            .into_iter()
            .find(|g| g.type_id == frame::BEGIN)
            .expect("the upgrade request reaches ws");
        let mut head = Vec::new();
        ext::encode_response(&mut head, 101, [("Upgrade", &b"websocket"[..])].into_iter());
        self.ws
            .tx
            .begin(&Header::new(begin.stream_id ^ 1), 0, &head)
            .unwrap();
        self.poll();
        begin.stream_id
    }

    /// `peer` answers the exchange `id` with `status` and `body` (Content-Length), ending the
    /// response with FIN on its DATA.
    pub fn respond(peer: &mut Link, id: u64, status: u16, body: &[u8]) {
        let mut head = Vec::new();
        let length = body.len().to_string();
        ext::encode_response(
            &mut head,
            status,
            [("Content-Length", length.as_bytes())].into_iter(),
        );
        let reply = Header::new(id ^ 1);
        peer.tx.begin(&reply, 0, &head).unwrap();
        peer.tx
            .data(&reply, frame::FLAG_FIN, body.len() as u32, &[], body)
            .unwrap();
    }

    /// ws (or the application) grants `maximum` bytes of the request stream `id`.
    pub fn grant(peer: &mut Link, id: u64, acknowledge: u64, maximum: u32) {
        peer.tx
            .window(
                &Header {
                    acknowledge,
                    maximum,
                    ..Header::new(id)
                },
                0,
            )
            .unwrap();
    }

    /// ws grants `maximum` bytes of the tunnel, acknowledging `acknowledge`.
    pub fn ws_window(&mut self, id: u64, acknowledge: u64, maximum: u32) {
        Rig::grant(&mut self.ws, id, acknowledge, maximum);
        self.poll();
    }

    /// Tunnel bytes ws received on `id` since the last look.
    pub fn tunnelled(&mut self, id: u64) -> usize {
        self.ws
            .frames()
            .iter()
            .filter(|g| g.type_id == frame::DATA && g.stream_id == id)
            .map(|g| g.payload.len())
            .sum()
    }

    /// What the client got since the last look: the response bytes, and whether http ended
    /// its side of the connection (END on the reply).
    pub fn client_got(&mut self) -> (String, bool) {
        self.client_got_until(frame::END)
    }

    /// [`Rig::client_got`], with whether the reply carried a frame of `ending` (END, ABORT).
    pub fn client_got_until(&mut self, ending: u32) -> (String, bool) {
        let frames = self.tcp.frames();
        let bytes: Vec<u8> = frames
            .iter()
            .filter(|g| g.type_id == frame::DATA && g.stream_id == NET_ID ^ 1)
            .flat_map(|g| g.payload.iter().copied())
            .collect();
        let ended = frames
            .iter()
            .any(|g| g.type_id == ending && g.stream_id == NET_ID ^ 1);
        (String::from_utf8_lossy(&bytes).into_owned(), ended)
    }

    /// The connections http still holds.
    pub fn connections(&self) -> u64 {
        let mut gauges = Vec::new();
        self.http.gauges(&mut gauges);
        gauges
            .iter()
            .find(|(name, _)| *name == "connections")
            .map_or(0, |(_, n)| *n)
    }
}

/// The request BEGINs among `frames`.
pub fn begins(frames: &[OwnedFrame]) -> Vec<&OwnedFrame> {
    frames
        .iter()
        .filter(|g| g.type_id == frame::BEGIN && g.stream_id & 1 == 1)
        .collect()
}

/// The payload of every DATA of stream `id` among `frames`, in order.
pub fn data_of(frames: &[OwnedFrame], id: u64) -> Vec<u8> {
    frames
        .iter()
        .filter(|g| g.type_id == frame::DATA && g.stream_id == id)
        .flat_map(|g| g.payload.clone())
        .collect()
}
