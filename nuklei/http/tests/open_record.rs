//! A response whole in one record: a DATA flagged `FLAG_OPEN` (the response head in its
//! extension, the body as payload) and usually `FLAG_FIN`, in place of BEGIN, DATA and END.
//! The client gets exactly what the three frames give; malformed ones are refused as the
//! three frames would be.

mod support;

use nukleus_http::ext;
use streams::frame;
use streams::Header;
use support::{begins, Rig};

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

fn head(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut head = Vec::new();
    ext::encode_response(&mut head, 200, headers.iter().copied());
    head
}

/// The application answers `id` with one OPEN record (`flags` added) of `head` and `body`.
fn open(rig: &mut Rig, id: u64, flags: u32, head: &[u8], body: &[u8]) {
    rig.app
        .tx
        .begin_data(&Header::new(id ^ 1), flags, body.len() as u32, head, body)
        .unwrap();
}

fn requests(rig: &mut Rig) -> Vec<u64> {
    begins(&rig.app.frames())
        .iter()
        .map(|g| g.stream_id)
        .collect()
}

#[test]
fn a_whole_response_in_one_record_gives_what_three_frames_give() {
    let length = [("Content-Length", &b"5"[..])];
    let mut three = Rig::new(65536);
    three.open(65536);
    let mut one = Rig::new(65536);
    one.open(65536);
    // Three in a row: the first renders the head, the others find it cached.
    for _ in 0..3 {
        three.client(GET);
        let id = requests(&mut three)[0];
        Rig::respond(&mut three.app, id, 200, b"hello");
        three.poll();
        one.client(GET);
        let id = requests(&mut one)[0];
        open(&mut one, id, frame::FLAG_FIN, &head(&length), b"hello");
        one.poll();
        let (expected, _) = three.client_got();
        let (text, ended) = one.client_got();
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
        assert_eq!(text, expected);
        assert!(!ended, "keep-alive");
        // The exchange is over: a late frame on its stream is ignored.
        one.app
            .tx
            .data(&Header::new(id ^ 1), frame::FLAG_FIN, 1, &[], b"!")
            .unwrap();
        one.poll();
        assert_eq!(one.client_got(), (String::new(), false));
    }
    assert_eq!(one.connections(), 1);
}

#[test]
fn pipelined_whole_responses_answered_out_of_order_reach_the_client_in_order() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(&[GET, GET, GET].concat());
    let ids = requests(&mut rig);
    assert_eq!(ids.len(), 3);
    let head = head(&[("Content-Length", &b"1"[..])]);
    open(&mut rig, ids[2], frame::FLAG_FIN, &head, b"3");
    open(&mut rig, ids[0], frame::FLAG_FIN, &head, b"1");
    rig.poll();
    open(&mut rig, ids[1], frame::FLAG_FIN, &head, b"2");
    rig.poll();
    let (text, _) = rig.client_got();
    let bodies: String = text.split("\r\n\r\n").skip(1).map(|s| &s[..1]).collect();
    assert_eq!(bodies, "123", "{text}");
}

#[test]
fn an_open_record_may_start_a_response_that_more_data_continues() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(GET);
    let id = requests(&mut rig)[0];
    open(
        &mut rig,
        id,
        0,
        &head(&[("Content-Length", &b"5"[..])]),
        b"he",
    );
    let more = Header {
        sequence: 2,
        ..Header::new(id ^ 1)
    };
    rig.app
        .tx
        .data(&more, frame::FLAG_FIN, 3, &[], b"llo")
        .unwrap();
    rig.poll();
    assert!(rig.client_got().0.ends_with("\r\n\r\nhello"));
    // Without a Content-Length the body is chunked, whole in one record or not.
    rig.client(GET);
    let id = requests(&mut rig)[0];
    open(&mut rig, id, frame::FLAG_FIN, &head(&[]), b"hello");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{text}");
    assert!(!ended);
}

#[test]
fn an_open_record_on_a_response_already_begun_drops_the_connection() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(GET);
    let id = requests(&mut rig)[0];
    let head = head(&[("Content-Length", &b"2"[..])]);
    rig.app.tx.begin(&Header::new(id ^ 1), 0, &head).unwrap();
    open(&mut rig, id, frame::FLAG_FIN, &head, b"ok");
    rig.poll();
    let (text, aborted) = rig.client_got_until(frame::ABORT);
    assert!(aborted, "{text}");
    assert!(text.matches("HTTP/1.1").count() <= 1, "{text}");
    assert_eq!(rig.connections(), 0);
}

#[test]
fn an_open_record_with_a_malformed_head_is_answered_500() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(GET);
    let id = requests(&mut rig)[0];
    open(&mut rig, id, frame::FLAG_FIN, b"\xff\xff\xff", b"ok");
    rig.poll();
    let (text, _) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
    assert!(!text.contains("ok"), "{text}");
}

#[test]
fn an_open_record_beyond_the_response_window_drops_the_connection() {
    // A pipelined request's response gets a share of max_buffered_bytes (1024 at least).
    let mut rig = Rig::with(nukleus_http::HttpConfig {
        window: 65536,
        max_buffered_bytes: 1024,
        ..nukleus_http::HttpConfig::default()
    });
    rig.open(65536);
    rig.client(&[GET, GET].concat());
    let ids = requests(&mut rig);
    let body = vec![b'x'; 2000];
    let head = head(&[("Content-Length", &b"2000"[..])]);
    // The first (a whole window) renders and caches the head, so the one-step path is the
    // one that sees the second break its 1024-byte window.
    open(&mut rig, ids[0], frame::FLAG_FIN, &head, &body);
    open(&mut rig, ids[1], frame::FLAG_FIN, &head, &body);
    rig.poll();
    let (text, aborted) = rig.client_got_until(frame::ABORT);
    assert!(aborted, "{text}");
    assert!(text.matches("HTTP/1.1 200").count() <= 1, "{text}");
    assert_eq!(rig.connections(), 0);
}

#[test]
fn a_response_finished_before_its_request_body_lets_the_next_request_through() {
    for whole in [false, true] {
        let mut rig = Rig::new(65536);
        rig.open(65536);
        rig.client(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab");
        let id = requests(&mut rig)[0];
        Rig::grant(&mut rig.app, id, 0, 65536);
        if whole {
            open(
                &mut rig,
                id,
                frame::FLAG_FIN,
                &head(&[("Content-Length", &b"2"[..])]),
                b"ok",
            );
        } else {
            Rig::respond(&mut rig.app, id, 200, b"ok");
        }
        rig.poll();
        assert!(rig.client_got().0.ends_with("\r\n\r\nok"));
        rig.client(&[&b"cd"[..], GET].concat());
        let next = requests(&mut rig);
        assert_eq!(next.len(), 1, "whole: {whole}");
        open(
            &mut rig,
            next[0],
            frame::FLAG_FIN,
            &head(&[("Content-Length", &b"4"[..])]),
            b"next",
        );
        rig.poll();
        let (text, ended) = rig.client_got();
        assert!(text.ends_with("\r\n\r\nnext"), "whole: {whole}: {text}");
        assert!(!ended);
    }
}
