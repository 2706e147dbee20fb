//! Requests that carry `Upgrade`, driven through the http nukleus's real streams by scripted
//! peers. A request whose upgrade is not taken is an ordinary request (RFC 9110 §7.8): it is
//! answered and the connection follows the usual keep-alive rules; it never leaks.

mod support;

use std::time::Duration;

use nukleus_http::HttpConfig;
use streams::frame;
use support::{begins, data_of, Rig};

const H2C: &str = "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

fn h2c_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{H2C}\r\n").into_bytes()
}

/// `curl --http2 http://host/healthz` to a route whose kind cannot switch protocols.
#[test]
fn an_upgrade_to_a_route_that_cannot_upgrade_is_an_ordinary_keep_alive_request() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(&h2c_get("/healthz"));
    let frames = rig.app.frames();
    let first = begins(&frames);
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].flags & frame::FLAG_FIN,
        frame::FLAG_FIN,
        "a bodiless request, complete in its BEGIN"
    );
    let id = first[0].stream_id;
    Rig::respond(&mut rig.app, id, 200, b"ok\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("Connection: close"), "{text}");
    assert!(!ended, "keep-alive");

    // The connection carries the next request, and `Connection: close` closes it.
    rig.client(b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let frames = rig.app.frames();
    let second = begins(&frames);
    assert_eq!(second.len(), 1, "the next request is read");
    Rig::respond(&mut rig.app, second[0].stream_id, 200, b"again\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.ends_with("again\n"), "{text}");
    assert!(ended, "closed after Connection: close");
    assert_eq!(rig.connections(), 0, "nothing left behind");
}

/// The leak: a client that closes after its answered upgrade request leaves nothing behind.
#[test]
fn a_client_that_closes_after_an_unaccepted_upgrade_releases_the_connection() {
    for path in ["/healthz", "/ws/refused"] {
        let mut rig = Rig::new(65536);
        rig.open(65536);
        rig.client(&h2c_get(path));
        let (peer, id) = if path.starts_with("/ws/") {
            let frames = rig.ws.frames();
            (&mut rig.ws, begins(&frames)[0].stream_id)
        } else {
            let frames = rig.app.frames();
            (&mut rig.app, begins(&frames)[0].stream_id)
        };
        Rig::respond(peer, id, 400, b"no\n");
        rig.poll();
        let (text, _) = rig.client_got();
        assert!(text.starts_with("HTTP/1.1 400 "), "{path}: {text:?}");
        rig.client_end();
        let (_, ended) = rig.client_got();
        assert!(ended, "{path}: http ends its side once the client has");
        assert_eq!(rig.connections(), 0, "{path}: the connection is released");
    }
}

/// `curl --http2 -d …`: the body of a request with `Upgrade` to a route that cannot upgrade
/// is an ordinary body, ended when complete (the switch answers at END).
#[test]
fn a_body_with_upgrade_to_a_route_that_cannot_upgrade_is_forwarded_and_ended() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(
        format!("POST /v1/ports HTTP/1.1\r\nHost: x\r\n{H2C}Content-Length: 5\r\n\r\nhello")
            .as_bytes(),
    );
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    Rig::grant(&mut rig.app, id, 0, 65536);
    rig.poll();
    let frames = rig.app.frames();
    let body = data_of(&frames, id);
    assert_eq!(body, b"hello");
    assert!(
        frames
            .iter()
            .any(|g| g.type_id == frame::END && g.stream_id == id),
        "the request ends with its body: {frames:?}"
    );
}

/// Bytes behind a bodiless upgrade request wait for its answer; a refusal makes them the
/// next request on the same connection.
#[test]
fn bytes_after_a_refused_upgrade_are_the_next_request() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    let mut bytes = h2c_get("/ws/x");
    bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    rig.client(&bytes);
    let frames = rig.ws.frames();
    let upgrade = begins(&frames);
    assert_eq!(upgrade.len(), 1);
    assert_eq!(upgrade[0].flags & frame::FLAG_FIN, 0, "may become a tunnel");
    let id = upgrade[0].stream_id;
    Rig::grant(&mut rig.ws, id, 0, 65536);
    rig.poll();
    assert_eq!(rig.tunnelled(id), 0, "nothing is tunnelled before a 101");
    assert!(begins(&rig.app.frames()).is_empty(), "nor parsed");

    // ws refuses as it does: a complete response, then RESET of the request stream.
    Rig::respond(&mut rig.ws, id, 426, b"upgrade to websocket\n");
    rig.ws.tx.reset(&streams::Header::new(id), &[]).unwrap();
    rig.poll();
    let frames = rig.ws.frames();
    assert!(
        frames
            .iter()
            .any(|g| g.type_id == frame::END && g.stream_id == id),
        "the refused request ends: {frames:?}"
    );
    let frames = rig.app.frames();
    let next = begins(&frames);
    assert_eq!(next.len(), 1, "the held bytes are the next request");
    Rig::respond(&mut rig.app, next[0].stream_id, 200, b"next\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
    assert!(text.ends_with("next\n"), "{text}");
    assert!(!ended);
}

/// Bytes that arrive with an upgrade request are the new protocol's once it is accepted.
#[test]
fn bytes_after_an_accepted_upgrade_go_through_the_tunnel() {
    let mut rig = Rig::new(65536);
    let id = rig.upgrade(); // 101 already answered
    rig.ws_window(id, 0, 65536);
    rig.client(b"\x81\x80abcd");
    assert_eq!(rig.tunnelled(id), 6);

    // Held before the 101, forwarded after it.
    let mut rig = Rig::new(65536);
    rig.open(65536);
    let mut bytes = b"GET /ws/b0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(b"\x81\x80abcd");
    rig.client(&bytes);
    let frames = rig.ws.frames();
    let id = begins(&frames)[0].stream_id;
    rig.ws_window(id, 0, 65536);
    assert_eq!(rig.tunnelled(id), 0, "not before the 101");
    let mut head = Vec::new();
    nukleus_http::ext::encode_response(&mut head, 101, std::iter::empty());
    rig.ws
        .tx
        .begin(&streams::Header::new(id ^ 1), 0, &head)
        .unwrap();
    rig.poll();
    assert_eq!(rig.tunnelled(id), 6);
    assert!(rig.client_got().0.starts_with("HTTP/1.1 101 "));
}

/// A 101 to a request that did not ask for (or cannot take) an upgrade is the application's
/// error: the client gets a 500, not a connection in an unknown protocol.
#[test]
fn a_101_to_a_request_that_cannot_upgrade_is_a_500() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(&h2c_get("/healthz"));
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    Rig::respond(&mut rig.app, id, 101, b"");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
    assert!(ended);
}

/// A partial request head held behind an earlier request (pipelining, or bytes behind a
/// refused upgrade) is still bounded by the request timeout once it is alone.
#[test]
fn a_held_partial_request_head_gets_408_after_the_request_timeout() {
    let mut rig = Rig::with(HttpConfig {
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(3600),
        ..HttpConfig::default()
    });
    rig.open(65536);
    rig.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n");
    let frames = rig.app.frames();
    Rig::respond(&mut rig.app, begins(&frames)[0].stream_id, 200, b"a\n");
    rig.poll();
    assert!(rig.client_got().0.ends_with("a\n"));
    for _ in 0..4 {
        rig.advance(Duration::from_millis(400));
    }
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(ended);
}
