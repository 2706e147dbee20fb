//! The http nukleus under what the reaktor asks beyond traffic, through its real streams with
//! scripted peers: bounded response buffering per connection, shedding the connection that
//! holds the most, and the graceful stop (drain).

mod support;

use nukleus_http::HttpConfig;
use streams::frame;
use streams::Nukleus;
use support::{begins, data_of, Rig, NET_ID};

/// Pipelined requests behind the first get a share of `max_buffered_bytes` as their
/// response window, not a whole window each (32 pipelined × 64 KiB was 2 MiB a connection).
#[test]
fn pipelined_requests_are_pre_granted_a_share_of_max_buffered_bytes() {
    let mut rig = Rig::with(HttpConfig {
        window: 65536,
        max_buffered_bytes: 128 * 1024,
        ..HttpConfig::default()
    });
    rig.open(65536);
    rig.client(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let frames = rig.app.frames();
    let grants: Vec<u32> = begins(&frames).iter().map(|g| g.maximum).collect();
    // 128 KiB over max_pipelined (32): 4 KiB each behind the first.
    assert_eq!(grants, vec![65536, 4096, 4096]);
}

/// A client that reads nothing: the head response gets more window only while the
/// connection holds less than `max_buffered_bytes` minus a window.
#[test]
fn a_client_that_reads_nothing_holds_at_most_max_buffered_bytes() {
    let window = 16384u32;
    let mut rig = Rig::with(HttpConfig {
        window,
        max_buffered_bytes: 3 * window as usize,
        ..HttpConfig::default()
    });
    rig.open(0); // tcp grants no reply window: nothing leaves
    rig.client(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    let mut head = Vec::new();
    nukleus_http::ext::encode_response(
        &mut head,
        200,
        [("Content-Length", &b"1000000"[..])].into_iter(),
    );
    let reply = streams::Header::new(id ^ 1);
    rig.app.tx.begin(&reply, 0, &head).unwrap();
    let mut sent = 0u64;
    let chunk = vec![b'z'; window as usize];
    // The application sends whenever it has credit, until it has none.
    for _ in 0..10 {
        rig.poll();
        let granted: u64 = rig
            .app
            .frames()
            .iter()
            .filter(|g| g.type_id == frame::WINDOW && g.stream_id == id ^ 1)
            .map(|g| g.acknowledge + g.maximum as u64)
            .max()
            .unwrap_or(window as u64);
        if granted <= sent {
            break;
        }
        let h = streams::Header {
            sequence: sent,
            ..streams::Header::new(id ^ 1)
        };
        rig.app.tx.data(&h, 0, window, &[], &chunk).unwrap();
        sent += window as u64;
    }
    rig.poll();
    // One window first, then more while the buffer (the response head and the windows sent)
    // stays at most the limit minus a window: 2 windows here, and then the application waits.
    assert_eq!(sent, 2 * window as u64);
    let held = rig.http.buffered_bytes();
    assert!(
        held <= 3 * window as usize,
        "held {held}: at most max_buffered_bytes"
    );
}

/// Under memory pressure the connection that holds the most is dropped: both sides told,
/// nothing left behind.
#[test]
fn shedding_drops_the_connection_that_holds_the_most() {
    let mut rig = Rig::new(65536);
    rig.open(0);
    rig.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    Rig::respond(&mut rig.app, id, 200, &[b'z'; 30000]);
    rig.poll();
    let held = rig.http.buffered_bytes();
    assert!(held >= 30000, "{held}");
    assert_eq!(rig.http.shed(1), held);
    rig.poll();
    let frames = rig.tcp.frames();
    assert!(
        frames
            .iter()
            .any(|g| g.type_id == frame::ABORT && g.stream_id == NET_ID ^ 1),
        "the client's connection is aborted: {frames:?}"
    );
    assert_eq!(rig.connections(), 0);
    assert_eq!(rig.http.buffered_bytes(), 0);
}

/// Drain: an idle keep-alive connection ends at once.
#[test]
fn draining_closes_an_idle_keep_alive_connection() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = rig.app.frames();
    Rig::respond(&mut rig.app, begins(&frames)[0].stream_id, 200, b"a\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.ends_with("a\n") && !ended);
    assert!(!rig.http.drained());
    rig.http.drain();
    rig.poll();
    let (_, ended) = rig.client_got();
    assert!(ended, "idle: closed at once");
    assert!(rig.http.drained());
}

/// Drain: a request in flight is answered (its response says `Connection: close`), then the
/// connection ends; what the client sends after it is not read.
#[test]
fn draining_lets_a_request_in_flight_finish_then_closes() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    rig.http.drain();
    rig.poll();
    assert!(!rig.client_got().1, "in flight: not closed");
    assert!(!rig.http.drained());
    rig.client(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        begins(&rig.app.frames()).is_empty(),
        "no new request is read"
    );
    Rig::respond(&mut rig.app, id, 200, b"a\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("a\n"));
    assert!(ended);
    assert!(rig.http.drained());
}

/// Drain: an upload in flight goes on to its end.
#[test]
fn draining_lets_an_upload_finish() {
    let mut rig = Rig::new(65536);
    rig.open(65536);
    rig.client(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
    let frames = rig.app.frames();
    let id = begins(&frames)[0].stream_id;
    Rig::grant(&mut rig.app, id, 0, 65536);
    rig.poll();
    rig.http.drain();
    rig.poll();
    rig.client(b"world");
    let frames = rig.app.frames();
    let body = data_of(&frames, id);
    assert_eq!(body, b"helloworld");
    assert!(frames
        .iter()
        .any(|g| g.type_id == frame::END && g.stream_id == id));
    Rig::respond(&mut rig.app, id, 200, b"ok\n");
    rig.poll();
    let (text, ended) = rig.client_got();
    assert!(text.ends_with("ok\n") && ended, "{text}");
}
