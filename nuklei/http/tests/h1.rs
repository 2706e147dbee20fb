//! HTTP/1.1 connection behaviour of the http nukleus, driven through its real streams by
//! scripted peers (a `tcp` client, an `echo` application, a `ws` relay): keep-alive,
//! pipelining, chunked bodies, 100-continue, upgrades, limits answered at the edge, and
//! `Connection: close`.

mod support;

use nukleus_http::request::HttpLimits;
use nukleus_http::HttpConfig;
use streams::frame::{self, OwnedFrame};
use streams::Header;
use support::{begins, data_of, Rig, NET_ID};

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

/// The request streams the application was opened since the last look.
fn requests(rig: &mut Rig) -> (Vec<u64>, Vec<OwnedFrame>) {
    let frames = rig.app.frames();
    let ids = begins(&frames).iter().map(|g| g.stream_id).collect();
    (ids, frames)
}

/// The application grants a window for the body of request `id`.
fn accept_body(rig: &mut Rig, id: u64) {
    Rig::grant(&mut rig.app, id, 0, 65536);
    rig.poll();
}

fn ended(frames: &[OwnedFrame], id: u64) -> bool {
    frames.iter().any(|g| {
        g.stream_id == id
            && (g.type_id == frame::END
                || (g.flags & frame::FLAG_FIN != 0
                    && matches!(g.type_id, frame::BEGIN | frame::DATA)))
    })
}

fn aborted(frames: &[OwnedFrame], id: u64) -> bool {
    frames
        .iter()
        .any(|g| g.stream_id == id && g.type_id == frame::ABORT)
}

#[test]
fn keep_alive_serves_one_request_after_another_on_one_connection() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    let mut seen = Vec::new();
    for body in ["one", "two", "three"] {
        rig.client(GET);
        let (ids, _) = requests(&mut rig);
        assert_eq!(ids.len(), 1);
        seen.push(ids[0]);
        Rig::respond(&mut rig.app, ids[0], 200, body.as_bytes());
        rig.poll();
        let (text, ended) = rig.client_got();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
        assert!(!text.contains("Connection: close"), "{text}");
        assert!(!ended, "keep-alive");
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each request is its own exchange");
    assert_eq!(rig.connections(), 1);
}

#[test]
fn pipelined_requests_are_forwarded_at_once_and_answered_in_request_order() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (ids, _) = requests(&mut rig);
    assert_eq!(ids.len(), 3, "all three at once");
    // The application answers the last first: the client still gets them in order.
    Rig::respond(&mut rig.app, ids[2], 200, b"third");
    Rig::respond(&mut rig.app, ids[1], 200, b"second");
    rig.poll();
    assert_eq!(rig.client_got().0, "", "nothing before the first response");
    Rig::respond(&mut rig.app, ids[0], 200, b"first");
    rig.poll();
    let (text, _) = rig.client_got();
    let order: Vec<usize> = ["first", "second", "third"]
        .iter()
        .map(|body| text.find(body).expect(body))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3);
}

#[test]
fn pipelining_beyond_max_pipelined_waits_for_earlier_responses() {
    let mut rig = Rig::with(HttpConfig {
        limits: HttpLimits {
            max_pipelined: 2,
            ..HttpLimits::default()
        },
        ..HttpConfig::default()
    });
    rig.open(65536);
    rig.client(&[GET, GET, GET].concat());
    let (ids, _) = requests(&mut rig);
    assert_eq!(ids.len(), 2, "the third waits unread");
    Rig::respond(&mut rig.app, ids[0], 200, b"1");
    rig.poll();
    let (ids, _) = requests(&mut rig);
    assert_eq!(ids.len(), 1, "read once the first completed");
}

#[test]
fn a_chunked_request_body_reaches_the_application_decoded_and_ended() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    let (ids, frames) = requests(&mut rig);
    let id = ids[0];
    assert!(data_of(&frames, id).is_empty(), "no credit yet");
    accept_body(&mut rig, id);
    assert_eq!(data_of(&rig.app.frames(), id), b"hel");
    rig.client(b"lo\r\n6;note=x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    let frames = rig.app.frames();
    assert_eq!(data_of(&frames, id), b"lo world");
    assert!(ended(&frames, id), "the body ends at the last chunk");
    // A chunked response body is framed for the client.
    let mut head = Vec::new();
    nukleus_http::ext::encode_response(&mut head, 200, std::iter::empty());
    let reply = Header::new(id ^ 1);
    rig.app.tx.begin(&reply, 0, &head).unwrap();
    rig.app
        .tx
        .data(&reply, frame::FLAG_FIN, 5, &[], b"hello")
        .unwrap();
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{text}");
    assert!(!ended);
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let (ids, _) = requests(&mut rig);
    assert_eq!(rig.client_got().0, "HTTP/1.1 100 Continue\r\n\r\n");
    accept_body(&mut rig, ids[0]);
    rig.client(b"data");
    let frames = rig.app.frames();
    assert_eq!(data_of(&frames, ids[0]), b"data");
    assert!(ended(&frames, ids[0]));
    Rig::respond(&mut rig.app, ids[0], 201, b"");
    rig.poll();
    assert!(rig.client_got().0.starts_with("HTTP/1.1 201 Created\r\n"));
}

#[test]
fn an_accepted_upgrade_tunnels_both_ways_until_the_client_ends() {
    let mut rig = Rig::new(65536);
    let id = rig.upgrade();
    let (text, _) = rig.client_got();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    Rig::grant(&mut rig.ws, id, 0, 65536);
    rig.client(b"\x81\x02hi");
    assert_eq!(data_of(&rig.ws.frames(), id), b"\x81\x02hi");
    // ws's bytes reach the client as they are.
    let reply = Header::new(id ^ 1);
    rig.ws.tx.data(&reply, 0, 4, &[], b"\x81\x02yo").unwrap();
    rig.poll();
    assert_eq!(data_of(&rig.tcp.frames(), NET_ID ^ 1), b"\x81\x02yo");
    rig.client_end();
    let frames = rig.ws.frames();
    assert!(ended(&frames, id), "the tunnel's request side ends");
    assert!(!aborted(&frames, id));
}

#[test]
fn a_request_head_at_max_header_bytes_passes_and_one_byte_more_is_431() {
    let limits = HttpLimits {
        max_header_bytes: 64,
        ..HttpLimits::default()
    };
    let head = |n: usize| format!("GET /a HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "v".repeat(n));
    assert_eq!(head(31).len(), 64);
    let mut rig = Rig::with(HttpConfig {
        limits: limits.clone(),
        ..HttpConfig::default()
    });
    rig.open(65536);
    rig.client(head(31).as_bytes());
    assert_eq!(requests(&mut rig).0.len(), 1);

    let mut rig = Rig::with(HttpConfig {
        limits,
        ..HttpConfig::default()
    });
    rig.open(65536);
    rig.client(head(32).as_bytes());
    assert!(requests(&mut rig).0.is_empty());
    let (text, ended) = rig.client_got();
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(ended, "the connection closes after the error");
}

#[test]
fn a_body_at_max_body_bytes_passes_and_one_byte_more_is_413() {
    let config = || HttpConfig {
        limits: HttpLimits {
            max_body_bytes: 8,
            ..HttpLimits::default()
        },
        ..HttpConfig::default()
    };
    let post = |n: usize| format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
    let mut rig = Rig::with(config());
    rig.open(65536);
    rig.client(post(8).as_bytes());
    assert_eq!(requests(&mut rig).0.len(), 1);

    let mut rig = Rig::with(config());
    rig.open(65536);
    rig.client(post(9).as_bytes());
    assert!(requests(&mut rig).0.is_empty(), "refused from its head");
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(ended);

    // A chunked body has no length up front: it is refused once it goes beyond, and the
    // request the application had is aborted.
    let mut rig = Rig::with(config());
    rig.open(65536);
    rig.client(
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n",
    );
    let (ids, _) = requests(&mut rig);
    accept_body(&mut rig, ids[0]);
    rig.client(b"1\r\n9\r\n0\r\n\r\n");
    let frames = rig.app.frames();
    assert!(aborted(&frames, ids[0]), "{frames:?}");
    let (text, ended) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(ended);
}

#[test]
fn malformed_requests_are_400_and_close_the_connection() {
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..], // no Host
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut rig = Rig::new(65536);
        rig.open(65536);
        rig.client(bad);
        let (text, ended) = rig.client_got();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{}: {text}",
            String::from_utf8_lossy(bad)
        );
        assert!(ended);
        rig.poll();
        assert_eq!(rig.connections(), 0);
    }
}

#[test]
fn connection_close_answers_the_request_then_ends_and_reads_nothing_after_it() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(
        &[
            &b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            GET,
        ]
        .concat(),
    );
    let (ids, _) = requests(&mut rig);
    assert_eq!(ids.len(), 1, "nothing after the last request is read");
    let (_, ended) = rig.client_got();
    assert!(!ended, "not before its response");
    Rig::respond(&mut rig.app, ids[0], 200, b"bye");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("bye"));
    assert!(ended);
    assert_eq!(rig.connections(), 0);
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let (ids, _) = requests(&mut rig);
    Rig::respond(&mut rig.app, ids[0], 200, b"kept");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    assert!(!ended);
    rig.client(b"GET /a HTTP/1.0\r\n\r\n");
    let (ids, _) = requests(&mut rig);
    Rig::respond(&mut rig.app, ids[0], 200, b"closed");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(ended);
}

#[test]
fn a_second_response_head_on_one_exchange_drops_the_connection_instead_of_writing_it() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(GET);
    let (ids, _) = requests(&mut rig);
    let mut head = Vec::new();
    nukleus_http::ext::encode_response(&mut head, 200, [("Content-Length", &b"2"[..])].into_iter());
    let reply = Header::new(ids[0] ^ 1);
    rig.app.tx.begin(&reply, 0, &head).unwrap();
    rig.app.tx.begin(&reply, 0, &head).unwrap();
    rig.app
        .tx
        .data(&reply, frame::FLAG_FIN, 2, &[], b"ok")
        .unwrap();
    rig.poll();
    let (text, aborted) = rig.client_got_until(frame::ABORT);
    assert!(text.matches("HTTP/1.1").count() <= 1, "{text}");
    assert!(aborted, "the connection is aborted: {text}");
    assert_eq!(rig.connections(), 0);
}
