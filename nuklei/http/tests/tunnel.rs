//! The http nukleus driven through its real streams by scripted peers: a `tcp` peer (the
//! network connection) and a `ws` peer (the application an upgrade is routed to), checking
//! how the bytes of an upgraded connection are forwarded within the application's window.

use std::time::Instant;

use nukleus_http::{HttpConfig, HttpNukleus, Route};
use streams::frame;
use streams::{Header, Link, Nukleus, PeerLink, PollContext};

fn link(kind: &str) -> (PeerLink, Link) {
    PeerLink::scripted(kind, 1 << 20).unwrap()
}

/// tcp's stream id for the connection (initial streams from the network are odd).
const NET_ID: u64 = 0x1_0000_0001;

struct Rig {
    http: HttpNukleus,
    tcp: Link,
    ws: Link,
    start: Instant,
    /// Bytes tcp sent so far on NET_ID.
    net_sequence: u64,
}

impl Rig {
    fn new(window: u32) -> Rig {
        let (tcp_link, tcp) = link("tcp");
        let (ws_link, ws) = link("ws");
        let config = HttpConfig {
            routes: vec![Route {
                prefix: "/ws/".into(),
                to: "ws".into(),
                key_segment: None,
            }],
            window,
            ..HttpConfig::default()
        };
        Rig {
            http: HttpNukleus::new(config, 0, 0, vec![tcp_link, ws_link]),
            tcp,
            ws,
            start: Instant::now(),
            net_sequence: 0,
        }
    }

    fn poll(&mut self) {
        self.tcp.tx.publish();
        self.ws.tx.publish();
        let now = Instant::now();
        self.http.poll(&PollContext {
            now,
            timestamp: now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
    }

    /// tcp sends `bytes` on the connection in one DATA frame.
    fn client(&mut self, bytes: &[u8]) {
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

    /// The connection opens and its upgrade request is routed to ws; returns ws's stream id.
    fn upgrade(&mut self) -> u64 {
        self.tcp
            .tx
            .begin(
                &Header {
                    maximum: 1 << 20,
                    ..Header::new(NET_ID)
                },
                0,
                &[],
            )
            .unwrap();
        self.poll();
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
        begin.stream_id
    }

    /// ws grants `maximum` bytes of the tunnel, acknowledging `acknowledge`.
    fn ws_window(&mut self, id: u64, acknowledge: u64, maximum: u32) {
        self.ws
            .tx
            .window(
                &Header {
                    acknowledge,
                    maximum,
                    ..Header::new(id)
                },
                0,
            )
            .unwrap();
        self.poll();
    }

    /// Tunnel bytes ws received on `id` since the last look.
    fn tunnelled(&mut self, id: u64) -> usize {
        self.ws
            .frames()
            .iter()
            .filter(|g| g.type_id == frame::DATA && g.stream_id == id)
            .map(|g| g.payload.len())
            .sum()
    }
}

/// An upgraded connection whose client sent two records' worth (the ring's largest DATA
/// payload, twice) before ws granted any window: all of it waits in http. Returns the rig,
/// the tunnel's stream id towards ws and the record size.
fn two_records_held() -> (Rig, u64, usize) {
    let mut rig = Rig::new(1 << 20);
    let id = rig.upgrade();
    let record = rig.tcp.tx.max_payload() - 64;
    let chunk = vec![0x82u8; record];
    rig.client(&chunk);
    rig.client(&chunk);
    assert_eq!(rig.tunnelled(id), 0, "no window from ws yet");
    (rig, id, record)
}

/// Client bytes held while ws's window was short go out in as many DATA frames as they need
/// once the window opens, not one frame's worth: with nothing more coming from the client
/// (a pipelining client waiting for replies), a remainder left in http's buffer would wait
/// for a WINDOW that ws only sends once half its window was consumed, which a single
/// frame's worth (the ring's largest record) may not reach — and the connection stalled.
#[test]
fn buffered_tunnel_bytes_beyond_one_frame_are_all_forwarded_when_the_window_opens() {
    let (mut rig, id, record) = two_records_held();
    // ws opens a window larger than everything buffered (more than one record).
    rig.ws_window(id, 0, 1 << 20);
    assert_eq!(rig.tunnelled(id), 2 * record);
}

/// Credit still bounds what is forwarded: the rest waits for the next WINDOW.
#[test]
fn buffered_tunnel_bytes_beyond_the_window_wait_for_the_next_window() {
    let (mut rig, id, record) = two_records_held();
    let window = record as u32 + 1000;
    rig.ws_window(id, 0, window);
    assert_eq!(rig.tunnelled(id), window as usize);
    rig.ws_window(id, window as u64, window);
    assert_eq!(rig.tunnelled(id), 2 * record - window as usize);
}
