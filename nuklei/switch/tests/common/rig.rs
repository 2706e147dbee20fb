//! The switch nukleus over real rings with a scripted `http` peer (REST, SSE) and a
//! scripted `ws` peer (node n1's WebSocket).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use nukleus_http::ext::{encode_request, ResponseHead};
use nukleus_switch::limits::Limits;
use nukleus_switch::{Config, SwitchNukleus, SwitchNukleusConfig, TokenGrant};
use streams::frame;
use streams::frame::OwnedFrame;
use streams::{Carries, Header, Link, Nukleus, PeerLink, PeerRole, PollContext};

/// A frame the scripted peer read from the nukleus.
pub type Got = OwnedFrame;

pub fn link(kind: &str, role: PeerRole) -> (PeerLink, Link) {
    PeerLink::scripted(kind, role, 1 << 20).unwrap()
}

pub struct Rig {
    pub switch: SwitchNukleus,
    pub http: Link,
    pub ws: Link,
    start: Instant,
    /// Polls happen this long after `start` (None: at the real time).
    pub at_ms: Option<u64>,
}

impl Rig {
    pub fn new(max_queued_bytes: usize) -> Rig {
        Rig::with_lease(max_queued_bytes, 60_000)
    }

    pub fn with_lease(max_queued_bytes: usize, lease_ms: u64) -> Rig {
        Rig::with_config(SwitchNukleusConfig {
            switch: Config {
                lease_ms,
                shards: 2,
                limits: Limits {
                    max_queued_bytes,
                    ..Limits::default()
                },
                ..Config::default()
            },
            tokens: vec![TokenGrant {
                token: "t".into(),
                nodes: vec!["n1".into()],
                admin: false,
                ..TokenGrant::default()
            }],
            ..SwitchNukleusConfig::default()
        })
    }

    /// A switch nukleus with `config`, its http and ws peers scripted.
    pub fn with_config(config: SwitchNukleusConfig) -> Rig {
        let (http_link, http) = link("http", PeerRole::network(Carries::HttpExchanges));
        let (ws_link, ws) = link("ws", PeerRole::network(Carries::WsMessages));
        // Before the switch's own start, so that the switch's clock reads at most our time.
        let start = Instant::now();
        Rig {
            switch: SwitchNukleus::new(config, 0, 0, vec![http_link, ws_link]),
            http,
            ws,
            start,
            at_ms: None,
        }
    }

    /// Polls as if `ms` milliseconds had passed since the rig was built.
    pub fn poll_at(&mut self, ms: u64) {
        self.at_ms = Some(ms);
        self.poll();
    }

    pub fn poll(&mut self) {
        self.http.tx.publish();
        self.ws.tx.publish();
        let now = match self.at_ms {
            Some(ms) => self.start + Duration::from_millis(ms),
            None => Instant::now(),
        };
        self.switch.poll(&PollContext {
            now,
            timestamp: now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
    }

    /// Opens node n1's WebSocket (stream 1) with a reply window of `window` bytes.
    pub fn open_ws(&mut self, window: u32) -> Vec<Got> {
        let mut head = Vec::new();
        encode_request(
            &mut head,
            1,
            "GET",
            "/v1/ws/n1?address=h:1",
            [("Authorization", &b"Bearer t"[..])].into_iter(),
        );
        let mut ext = vec![0u8];
        ext.extend_from_slice(&head);
        self.ws.tx.begin(&Header::new(1), 0, &ext).unwrap();
        self.grant_ws(0, window);
        self.poll();
        self.ws.frames()
    }

    /// Opens node n1's event stream (a WaitMsg on http stream `id`, request complete) with a
    /// reply window of `window` bytes; returns the frames to http.
    pub fn open_sse(&mut self, id: u64, window: u32) -> Vec<Got> {
        let mut head = Vec::new();
        encode_request(
            &mut head,
            1,
            "GET",
            "/v1/nodes/n1/messages",
            [
                ("Authorization", &b"Bearer t"[..]),
                ("Accept", &b"text/event-stream"[..]),
            ]
            .into_iter(),
        );
        let begin = Header {
            maximum: window,
            ..Header::new(id)
        };
        self.http
            .tx
            .begin_flags(&begin, frame::FLAG_FIN, 0, &head)
            .unwrap();
        self.poll();
        self.http.frames()
    }

    pub fn grant_ws(&mut self, acknowledge: u64, maximum: u32) {
        self.ws
            .tx
            .window(
                &Header {
                    stream_id: 0,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            )
            .unwrap();
    }

    /// A REST request on http stream `id`; returns the reply frames.
    pub fn rest(&mut self, id: u64, method: &str, target: &str, body: &str) -> Vec<Got> {
        self.rest_as(id, method, target, body, "t")
    }

    /// A REST request with bearer `token` on http stream `id`; returns the reply frames.
    pub fn rest_as(
        &mut self,
        id: u64,
        method: &str,
        target: &str,
        body: &str,
        token: &str,
    ) -> Vec<Got> {
        let mut head = Vec::new();
        let auth = format!("Bearer {token}");
        encode_request(
            &mut head,
            1,
            method,
            target,
            [("Authorization", auth.as_bytes())].into_iter(),
        );
        self.http.tx.begin(&Header::new(id), 0, &head).unwrap();
        self.http
            .tx
            .window(
                &Header {
                    stream_id: id ^ 1,
                    maximum: 65536,
                    ..Header::default()
                },
                0,
            )
            .unwrap();
        self.poll();
        let granted = self.http.frames();
        assert!(
            granted
                .iter()
                .any(|g| g.type_id == frame::WINDOW && g.stream_id == id),
            "the switch grants a window for the request body: {granted:?}"
        );
        if !body.is_empty() {
            self.http
                .tx
                .data(&Header::new(id), 0, body.len() as u32, &[], body.as_bytes())
                .unwrap();
        }
        self.http.tx.end(&Header::new(id), &[]).unwrap();
        self.poll();
        self.http.frames()
    }
}

pub fn rest_reply(frames: &[Got]) -> (u16, String) {
    let begin = frames
        .iter()
        .find(|g| g.type_id == frame::BEGIN)
        .expect("reply BEGIN");
    let head = ResponseHead::parse(&begin.extension).unwrap();
    let length: usize = std::str::from_utf8(head.header("content-length").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let body: Vec<u8> = frames
        .iter()
        .filter(|g| g.type_id == frame::DATA)
        .flat_map(|g| g.payload.clone())
        .collect();
    assert_eq!(body.len(), length);
    assert_eq!(frames.last().unwrap().type_id, frame::END);
    (head.status, String::from_utf8(body).unwrap())
}

/// The WebSocket close code of an END on node n1's reply stream, if there is one.
pub fn close_code(frames: &[Got]) -> Option<u16> {
    frames
        .iter()
        .find(|g| g.type_id == frame::END && g.stream_id == 0)
        .map(|end| u16::from_le_bytes([end.extension[0], end.extension[1]]))
}
