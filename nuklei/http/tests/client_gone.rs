//! A client that closes its connection (FIN) while a response without a known end is
//! streaming to it (Server-Sent Events, a chunked stream) is gone: the application's reply is
//! reset so it stops producing (issue 15: a closed SSE receiving connection must release its
//! node at once). A response of known length still completes after a half-close.

mod support;

use nukleus_http::ext;
use streams::frame;
use streams::Header;
use support::{begins, Rig};

fn answer_head(rig: &mut Rig, id: u64, headers: &[(&str, &[u8])]) {
    let mut head = Vec::new();
    ext::encode_response(&mut head, 200, headers.iter().copied());
    rig.app.tx.begin(&Header::new(id ^ 1), 0, &head).unwrap();
    rig.poll();
}

#[test]
fn a_fin_during_an_open_ended_response_resets_the_applications_reply() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    answer_head(&mut rig, id, &[("Content-Type", b"text/event-stream")]);
    let (text, _) = rig.client_got();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    rig.client_end();
    let frames = rig.app.frames();
    assert!(
        frames
            .iter()
            .any(|g| g.type_id == frame::RESET && g.stream_id == id ^ 1),
        "the application's reply is reset: {frames:?}"
    );
    assert_eq!(rig.connections(), 0, "the connection is released");
}

#[test]
fn a_half_close_before_a_response_of_known_length_still_gets_it() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    rig.client_end();
    Rig::respond(&mut rig.app, id, 200, b"hello");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("hello"),
        "{text:?}"
    );
    assert!(ended);
    let frames = rig.app.frames();
    assert!(
        !frames.iter().any(|g| g.type_id == frame::RESET),
        "{frames:?}"
    );
}
