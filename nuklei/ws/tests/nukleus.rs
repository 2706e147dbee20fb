//! The ws nukleus driven through its real streams by scripted peers: an `http` peer (the
//! tunnel of an upgraded connection) and an `app` peer (the application protocol of
//! `nukleus_ws::app`), checking frames, flow control and the close handshake.

mod support;

use std::time::Duration;

use nukleus_http::ext::ResponseHead;
use nukleus_ws::app::{self, BeginEx};
use streams::frame::{self, FLAG_FIN, FLAG_INIT};
use streams::{Header, Nukleus};
use support::{client_frame, data, Rig, HTTP_ID};

#[test]
fn upgrade_answers_101_and_opens_one_app_stream_with_protocol_and_request_head() {
    let mut rig = Rig::new();
    let (to_http, to_app) = rig.upgrade("/ws/app/room?x=1", 65536);
    let begin = to_http
        .iter()
        .find(|g| g.type_id == frame::BEGIN)
        .expect("a 101");
    assert_eq!(begin.stream_id, HTTP_ID ^ 1);
    let head = ResponseHead::parse(&begin.extension).unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..])
    );
    assert_eq!(head.header("sec-websocket-protocol"), Some(&b"chat"[..]));
    assert!(to_http
        .iter()
        .any(|g| g.type_id == frame::WINDOW && g.stream_id == HTTP_ID && g.maximum == 4096));
    assert_eq!(to_app[0].type_id, frame::BEGIN);
    let ex = BeginEx::parse(&to_app[0].extension).unwrap();
    assert_eq!(ex.protocol, Some("chat"));
    let request = nukleus_http::ext::RequestHead::parse(ex.request_head).unwrap();
    assert_eq!(
        (request.path(), request.query()),
        ("/ws/app/room", Some("x=1"))
    );
    // The reply window is pre-granted.
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::WINDOW && g.stream_id == rig.app_id ^ 1 && g.maximum == 4096));
}

#[test]
fn the_101_waits_for_the_application_to_accept_and_client_bytes_wait_with_it() {
    let mut rig = Rig::new();
    let (to_http, to_app) = rig.upgrade_unanswered("/ws/app", 65536);
    assert!(to_app.iter().any(|g| g.type_id == frame::BEGIN));
    assert!(
        !to_http.iter().any(|g| g.type_id == frame::BEGIN),
        "no 101 before the application accepts: {to_http:?}"
    );
    // A frame sent early (before the 101) is not forwarded yet.
    rig.app_window(0, 1000);
    rig.client(&client_frame(0x81, b"early"));
    assert!(data(&rig.app.frames()).is_empty());
    rig.app_accept();
    let to_http = rig.http.frames();
    let head = ResponseHead::parse(&to_http[0].extension).unwrap();
    assert_eq!((to_http[0].type_id, head.status), (frame::BEGIN, 101));
    let got = rig.app.frames();
    let pieces = data(&got);
    assert_eq!(pieces.len(), 1);
    assert_eq!(pieces[0].payload, b"early");
}

#[test]
fn an_application_refusal_before_accepting_is_an_http_error_with_its_reason() {
    let mut rig = Rig::new();
    rig.upgrade_unanswered("/ws/app", 65536);
    let mut refusal = Vec::new();
    app::encode_refusal(&mut refusal, 401, "missing bearer token");
    rig.app
        .tx
        .end(&Header::new(rig.app_id ^ 1), &refusal)
        .unwrap();
    rig.poll();
    let to_http = rig.http.frames();
    let kinds: Vec<u32> = to_http
        .iter()
        .filter(|g| g.type_id != frame::WINDOW)
        .map(|g| g.type_id)
        .collect();
    assert_eq!(kinds, [frame::BEGIN, frame::RESET, frame::DATA, frame::END]);
    let head = ResponseHead::parse(
        &to_http
            .iter()
            .find(|g| g.type_id == frame::BEGIN)
            .unwrap()
            .extension,
    )
    .unwrap();
    assert_eq!(head.status, 401);
    assert_eq!(head.header("www-authenticate"), Some(&b"Bearer"[..]));
    let body = to_http.iter().find(|g| g.type_id == frame::DATA).unwrap();
    assert_eq!(body.payload, b"missing bearer token\n");
    // The application's initial stream is ended too.
    assert!(rig
        .app
        .frames()
        .iter()
        .any(|g| g.type_id == frame::ABORT && g.stream_id == rig.app_id));
}

#[test]
fn an_application_refusal_with_a_complete_answer_reaches_the_client_as_written() {
    let mut rig = Rig::new();
    rig.upgrade_unanswered("/ws/app", 65536);
    let mut refusal = Vec::new();
    app::encode_refusal_response(
        &mut refusal,
        307,
        &[
            ("Location", "http://10.0.0.2:8080/ws/app?x=1"),
            ("Content-Type", "application/json"),
            ("Bad\r\nHeader", "dropped"),
        ],
        br#"{"leader":2}"#,
    );
    rig.app
        .tx
        .end(&Header::new(rig.app_id ^ 1), &refusal)
        .unwrap();
    rig.poll();
    let to_http = rig.http.frames();
    let begin = to_http.iter().find(|g| g.type_id == frame::BEGIN).unwrap();
    let head = ResponseHead::parse(&begin.extension).unwrap();
    assert_eq!(head.status, 307);
    assert_eq!(
        head.header("location"),
        Some(&b"http://10.0.0.2:8080/ws/app?x=1"[..])
    );
    assert_eq!(head.header("content-type"), Some(&b"application/json"[..]));
    assert_eq!(head.header("content-length"), Some(&b"12"[..]));
    assert_eq!(head.header("bad\r\nheader"), None);
    let body = to_http.iter().find(|g| g.type_id == frame::DATA).unwrap();
    assert_eq!(body.payload, br#"{"leader":2}"#);
    assert!(to_http.iter().any(|g| g.type_id == frame::RESET));
    // The short form is still the short form; a complete answer outside 3xx-5xx is a 500.
    assert_eq!(app::parse_refusal_response(b"\x91\x01no"), None);
    let mut ext = Vec::new();
    app::encode_refusal_response(&mut ext, 200, &[], b"");
    assert_eq!(app::parse_refusal_response(&ext).unwrap().status, 500);
}

#[test]
fn an_application_that_never_answers_the_upgrade_gets_a_503_after_the_close_timeout() {
    let mut rig = Rig::new();
    rig.upgrade_unanswered("/ws/app", 65536);
    rig.now += Duration::from_millis(600);
    rig.poll();
    let to_http = rig.http.frames();
    let begin = to_http
        .iter()
        .find(|g| g.type_id == frame::BEGIN)
        .expect("a response");
    assert_eq!(ResponseHead::parse(&begin.extension).unwrap().status, 503);
}

#[test]
fn refusal_statuses_outside_4xx_and_5xx_read_as_500() {
    let mut ext = Vec::new();
    app::encode_refusal(&mut ext, 200, "fine?");
    assert_eq!(app::parse_refusal(&ext), (500, "fine?"));
    assert_eq!(app::parse_refusal(&[]), (500, ""));
    let mut ext = Vec::new();
    app::encode_refusal(&mut ext, 403, "no");
    assert_eq!(app::parse_refusal(&ext), (403, "no"));
}

#[test]
fn unknown_paths_get_a_complete_404_and_the_tunnel_is_closed() {
    let mut rig = Rig::new();
    let (to_http, to_app) = rig.upgrade("/elsewhere", 65536);
    assert!(to_app.is_empty());
    let kinds: Vec<u32> = to_http.iter().map(|g| g.type_id).collect();
    assert_eq!(
        kinds,
        [frame::BEGIN, frame::RESET, frame::DATA, frame::END],
        "{to_http:?}"
    );
    assert_eq!(
        ResponseHead::parse(&to_http[0].extension).unwrap().status,
        404
    );
    assert_eq!(to_http[2].payload, b"no WebSocket route for this path\n");
}

#[test]
fn messages_reach_the_app_only_within_its_window_and_client_bytes_stay_unacknowledged() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 10);
    let message: Vec<u8> = (0..100u8).collect();
    rig.client(&client_frame(0x82, &message));
    let got = rig.app.frames();
    let pieces = data(&got);
    assert_eq!(pieces.len(), 1);
    assert!(pieces[0].payload.len() <= 10, "{:?}", pieces[0]);
    assert_eq!(pieces[0].flags, FLAG_INIT);
    assert_eq!(pieces[0].extension, [app::KIND_BINARY]);
    // http was not told the whole frame was consumed.
    let acked = rig
        .http
        .frames()
        .iter()
        .filter(|g| g.type_id == frame::WINDOW && g.stream_id == HTTP_ID)
        .map(|g| g.acknowledge)
        .max()
        .unwrap_or(0);
    assert!(acked < 106, "acknowledged {acked} of 106 client bytes");
    // More credit: the rest arrives, the last piece with FIN.
    rig.app_window(100, 1000);
    let got = rig.app.frames();
    let pieces = data(&got);
    let rest: Vec<u8> = pieces.iter().flat_map(|g| g.payload.clone()).collect();
    assert_eq!(rest, message[10..]);
    assert_eq!(pieces.last().unwrap().flags, FLAG_FIN);
}

#[test]
fn a_message_in_one_frame_reaches_the_app_in_one_piece_however_the_client_bytes_arrive() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    let message: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(0x82, &message);
    // Split inside the header, then inside the payload: nothing reaches the app until the
    // whole message is here, then it arrives as one INIT|FIN piece.
    for piece in [&frame[..3], &frame[3..500]] {
        rig.client(piece);
        assert!(
            data(&rig.app.frames()).is_empty(),
            "waits for the whole message"
        );
    }
    rig.client(&frame[500..]);
    let got = rig.app.frames();
    let pieces = data(&got);
    assert_eq!(pieces.len(), 1, "{pieces:?}");
    assert_eq!(pieces[0].flags, FLAG_INIT | FLAG_FIN);
    assert_eq!(pieces[0].payload, message);
}

#[test]
fn a_message_too_large_to_wait_for_streams_to_the_app_as_it_arrives() {
    // More than half of the application's window: waiting for all of it could stall both
    // windows, so the message goes on piece by piece.
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    let message: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(0x82, &message);
    rig.client(&frame[..1000]);
    let got = rig.app.frames();
    let first = data(&got);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].flags, FLAG_INIT);
    assert_eq!(first[0].payload, message[..1000 - 8]);
    rig.client(&frame[1000..]);
    let got = rig.app.frames();
    let rest = data(&got);
    let tail: Vec<u8> = rest.iter().flat_map(|g| g.payload.clone()).collect();
    assert_eq!(tail, message[1000 - 8..]);
    assert_eq!(rest.last().unwrap().flags, FLAG_FIN);
}

#[test]
fn pings_are_answered_by_ws_and_flushed_to_the_app() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    rig.client(&client_frame(0x89, b"beat"));
    let to_http = rig.http.frames();
    let out: Vec<u8> = data(&to_http)
        .iter()
        .flat_map(|g| g.payload.clone())
        .collect();
    assert_eq!(out, [0x8A, 4, b'b', b'e', b'a', b't']);
    let to_app = rig.app.frames();
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::FLUSH && g.extension == app::PING));
}

#[test]
fn app_messages_become_frames_and_app_end_closes_with_its_code_after_the_client_answers() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    rig.app
        .tx
        .begin(&Header::new(rig.app_id ^ 1), 0, &[])
        .unwrap();
    rig.app_reply(FLAG_INIT, app::KIND_TEXT, b"hel");
    rig.app_reply(FLAG_FIN, app::KIND_TEXT, b"lo");
    let mut ext = Vec::new();
    app::encode_close_ext(&mut ext, 4000, "bye");
    rig.app
        .tx
        .end(
            &Header {
                sequence: rig.app_reply_sequence,
                ..Header::new(rig.app_id ^ 1)
            },
            &ext,
        )
        .unwrap();
    rig.poll();
    let to_http = rig.http.frames();
    let out: Vec<u8> = data(&to_http)
        .iter()
        .flat_map(|g| g.payload.clone())
        .collect();
    assert_eq!(
        out,
        [
            &[0x01, 3][..],
            b"hel",
            &[0x80, 2],
            b"lo",
            &[0x88, 5, 0x0f, 0xa0],
            b"bye"
        ]
        .concat()
    );
    // Still open until the client answers the close.
    assert!(!to_http.iter().any(|g| g.type_id == frame::END));
    rig.client(&client_frame(0x88, &4000u16.to_be_bytes()));
    let to_http = rig.http.frames();
    let kinds: Vec<u32> = to_http.iter().map(|g| g.type_id).collect();
    assert!(kinds.ends_with(&[frame::RESET, frame::END]), "{to_http:?}");
}

#[test]
fn a_client_close_waits_for_the_app_then_echoes_the_code() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    rig.app
        .tx
        .begin(&Header::new(rig.app_id ^ 1), 0, &[])
        .unwrap();
    rig.client(&client_frame(0x88, &3001u16.to_be_bytes()));
    let to_app = rig.app.frames();
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::END && g.stream_id == rig.app_id));
    // The app still finishes a message, then ends.
    rig.app_reply(FLAG_INIT | FLAG_FIN, app::KIND_BINARY, b"last");
    rig.app
        .tx
        .end(
            &Header {
                sequence: rig.app_reply_sequence,
                ..Header::new(rig.app_id ^ 1)
            },
            &[],
        )
        .unwrap();
    rig.poll();
    let to_http = rig.http.frames();
    let out: Vec<u8> = data(&to_http)
        .iter()
        .flat_map(|g| g.payload.clone())
        .collect();
    assert_eq!(
        out,
        [&[0x82, 4][..], b"last", &[0x88, 2, 0x0b, 0xb9]].concat()
    );
    let kinds: Vec<u32> = to_http.iter().map(|g| g.type_id).collect();
    assert!(kinds.ends_with(&[frame::RESET, frame::END]), "{to_http:?}");
}

#[test]
fn app_data_beyond_the_granted_window_closes_with_1011() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app
        .tx
        .begin(&Header::new(rig.app_id ^ 1), 0, &[])
        .unwrap();
    rig.app_reply(FLAG_INIT | FLAG_FIN, app::KIND_BINARY, &[0u8; 5000]);
    let to_http = rig.http.frames();
    let out: Vec<u8> = data(&to_http)
        .iter()
        .flat_map(|g| g.payload.clone())
        .collect();
    assert_eq!(
        out,
        [&[0x88, 19, 0x03, 0xf3][..], b"application error"].concat()
    );
    let to_app = rig.app.frames();
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::ABORT && g.stream_id == rig.app_id));
}

#[test]
fn an_unanswered_close_times_out_and_the_tunnel_is_closed() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.app
        .tx
        .begin(&Header::new(rig.app_id ^ 1), 0, &[])
        .unwrap();
    rig.app.tx.end(&Header::new(rig.app_id ^ 1), &[]).unwrap();
    rig.poll();
    let deadline = rig.ws.deadline().expect("a close timer");
    rig.http.frames();
    rig.now = deadline + Duration::from_millis(1);
    rig.poll();
    let to_http = rig.http.frames();
    let kinds: Vec<u32> = to_http.iter().map(|g| g.type_id).collect();
    assert!(kinds.ends_with(&[frame::RESET, frame::END]), "{to_http:?}");
}
