//! The scripted peers of the ws nukleus's stream tests: an `http` peer (the tunnel of an
//! upgraded connection) and an `app` peer (the application protocol of `nukleus_ws::app`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use nukleus_http::ext::encode_request;
use nukleus_ws::{Route, WsConfig, WsNukleus};
use streams::frame::OwnedFrame;
use streams::frame::{self};
use streams::{Carries, Header, Link, Nukleus, PeerLink, PeerRole, PollContext};

/// A frame the scripted peer read from the nukleus.
pub type Got = OwnedFrame;

pub fn link(kind: &str, role: PeerRole) -> (PeerLink, Link) {
    PeerLink::scripted(kind, role, 1 << 20).unwrap()
}

/// http's stream id for the upgraded request.
pub const HTTP_ID: u64 = 0x1_0000_0003;

pub struct Rig {
    pub ws: WsNukleus,
    pub http: Link,
    pub app: Link,
    pub start: Instant,
    pub now: Instant,
    /// Client bytes sent so far on HTTP_ID.
    pub http_sequence: u64,
    /// ws's stream to the application, once opened.
    pub app_id: u64,
    pub app_reply_sequence: u64,
}

impl Rig {
    /// One route, `/ws/app` to `app`; window 4096, close timeout 500 ms.
    pub fn config() -> WsConfig {
        WsConfig {
            routes: vec![Route {
                prefix: "/ws/app".into(),
                to: "app".into(),
                key_segment: None,
            }],
            protocols: vec!["chat".into()],
            window: 4096,
            close_timeout: Duration::from_millis(500),
            ..WsConfig::default()
        }
    }

    pub fn new() -> Rig {
        Rig::with(Rig::config())
    }

    pub fn with(config: WsConfig) -> Rig {
        let (http_link, http) = link("http", PeerRole::network(Carries::HttpExchanges));
        let (app_link, app) = link("app", PeerRole::application(Carries::WsMessages));
        let start = Instant::now();
        Rig {
            ws: WsNukleus::new(config, 0, 0, vec![http_link, app_link]),
            http,
            app,
            start,
            now: start,
            http_sequence: 0,
            app_id: 0,
            app_reply_sequence: 0,
        }
    }

    pub fn poll(&mut self) {
        self.http.tx.publish();
        self.app.tx.publish();
        self.ws.poll(&PollContext {
            now: self.now,
            timestamp: self.now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
    }

    /// http sends the upgrade request and pre-grants `reply_window`; the application accepts.
    pub fn upgrade(&mut self, path: &str, reply_window: u32) -> (Vec<Got>, Vec<Got>) {
        let (mut to_http, to_app) = self.upgrade_unanswered(path, reply_window);
        if to_app.iter().any(|g| g.type_id == frame::BEGIN) {
            self.app_accept();
            to_http.extend(self.http.frames());
        }
        (to_http, to_app)
    }

    /// The application accepts the connection (its reply BEGIN).
    pub fn app_accept(&mut self) {
        self.app
            .tx
            .begin(&Header::new(self.app_id ^ 1), 0, &[])
            .unwrap();
        self.poll();
    }

    /// http sends the upgrade request and pre-grants `reply_window`; the application has not
    /// answered yet.
    pub fn upgrade_unanswered(&mut self, path: &str, reply_window: u32) -> (Vec<Got>, Vec<Got>) {
        let mut head = Vec::new();
        let headers: [(&str, &[u8]); 6] = [
            ("Host", b"localhost"),
            ("Upgrade", b"websocket"),
            ("Connection", b"Upgrade"),
            ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", b"13"),
            ("Sec-WebSocket-Protocol", b"other, chat"),
        ];
        encode_request(&mut head, 1, "GET", path, headers.into_iter());
        self.http.tx.begin(&Header::new(HTTP_ID), 7, &head).unwrap();
        self.http
            .tx
            .window(
                &Header {
                    maximum: reply_window,
                    ..Header::new(HTTP_ID ^ 1)
                },
                0,
            )
            .unwrap();
        self.poll();
        let to_http = self.http.frames();
        let to_app = self.app.frames();
        if let Some(begin) = to_app.iter().find(|g| g.type_id == frame::BEGIN) {
            self.app_id = begin.stream_id;
        }
        (to_http, to_app)
    }

    /// The client sends `bytes` through http.
    pub fn client(&mut self, bytes: &[u8]) {
        let h = Header {
            sequence: self.http_sequence,
            ..Header::new(HTTP_ID)
        };
        self.http
            .tx
            .data(&h, 0, bytes.len() as u32, &[], bytes)
            .unwrap();
        self.http_sequence += bytes.len() as u64;
        self.poll();
    }

    /// The application grants ws `maximum` bytes in total, acknowledging `acknowledge`.
    pub fn app_window(&mut self, acknowledge: u64, maximum: u32) {
        self.app
            .tx
            .window(
                &Header {
                    acknowledge,
                    maximum,
                    ..Header::new(self.app_id)
                },
                0,
            )
            .unwrap();
        self.poll();
    }

    pub fn app_reply(&mut self, flags: u32, kind: u8, payload: &[u8]) {
        let h = Header {
            sequence: self.app_reply_sequence,
            ..Header::new(self.app_id ^ 1)
        };
        self.app
            .tx
            .data(&h, flags, payload.len() as u32, &[kind], payload)
            .unwrap();
        self.app_reply_sequence += payload.len() as u64;
        self.poll();
    }
}

pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![b0];
    if payload.len() <= 125 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

pub fn data(frames: &[Got]) -> Vec<&Got> {
    frames.iter().filter(|g| g.type_id == frame::DATA).collect()
}
