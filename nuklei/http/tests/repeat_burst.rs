//! A pipelined burst of one repeated request head is opened in one go (the heads after a
//! request-cache hit that repeat it are not read one by one): what the application and the
//! client see must be exactly what reading each head on its own gives. Each burst is sent
//! twice, as one DATA frame and as one DATA frame per head (where every head is read alone),
//! and everything both sides get is compared: the requests' BEGIN frames and the response
//! bytes, through the pipelining limit, a head that differs, `Connection: close`, bodies, and
//! an application ring that fills up mid-burst.

use std::time::Instant;

use nukleus_http::request::HttpLimits;
use nukleus_http::HttpConfig;
use streams::frame::{self, OwnedFrame};
use streams::{Carries, Header, Link, Nukleus, PeerRole};

mod support;

const NET: u64 = 1;
const OTHER: u64 = 3;

struct Run {
    /// The application's frames (BEGIN, DATA, END, ...), as it read them.
    app_frames: Vec<OwnedFrame>,
    /// The client's response bytes, `Date` lines dropped.
    client: String,
    /// Whether http ended its reply towards the client.
    ended: bool,
}

/// Sends `prelude` on another connection first (the request cache is the nukleus's, shared
/// by its connections), then `heads` on connection `NET`.
fn run(
    prelude: &[u8],
    heads: &[&[u8]],
    one_frame: bool,
    max_pipelined: usize,
    app_ring: usize,
) -> Run {
    let (mut http, mut tcp, mut app) = support::to_echo(
        ("tcp", PeerRole::network(Carries::Connection)),
        app_ring,
        HttpConfig {
            limits: HttpLimits {
                max_pipelined,
                ..HttpLimits::default()
            },
            ..HttpConfig::default()
        },
    );
    let context = support::context_at(Instant::now());
    if !prelude.is_empty() {
        tcp.tx.begin(&Header::new(OTHER), 0, &[]).unwrap();
        let h = Header::new(OTHER);
        tcp.tx
            .data(&h, 0, prelude.len() as u32, &[], prelude)
            .unwrap();
        tcp.tx.publish();
        http.poll(&context);
    }
    tcp.tx.begin(&Header::new(NET), 0, &[]).unwrap();
    let window = Header {
        maximum: 1 << 20,
        ..Header::new(NET ^ 1)
    };
    tcp.tx.window(&window, 0).unwrap();
    let mut sequence = 0u64;
    let mut send = |tcp: &mut Link, bytes: &[u8]| {
        let h = Header {
            sequence,
            ..Header::new(NET)
        };
        tcp.tx.data(&h, 0, bytes.len() as u32, &[], bytes).unwrap();
        sequence += bytes.len() as u64;
    };
    if one_frame {
        send(&mut tcp, &heads.concat());
    } else {
        for head in heads {
            send(&mut tcp, head);
        }
    }
    tcp.tx.publish();
    let mut app_frames = Vec::new();
    let mut to_client = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    let mut response = Vec::new();
    nukleus_http::ext::encode_response(
        &mut response,
        200,
        [("Content-Length", &b"2"[..])].into_iter(),
    );
    for _ in 0..32 {
        http.poll(&context);
        to_client.extend(tcp.frames());
        let frames = app.frames();
        // The application answers every request in full as it arrives (a body is not
        // awaited: its DATA and END only need to be seen), as far as its own ring takes it.
        for f in &frames {
            if f.type_id == frame::BEGIN {
                pending.push_back(f.stream_id);
            }
        }
        while let Some(&id) = pending.front() {
            let h = Header {
                maximum: 1 << 16,
                ..Header::new(id)
            };
            let answered = app.tx.window(&h, 0).and_then(|()| {
                app.tx
                    .begin_data(&Header::new(id ^ 1), frame::FLAG_FIN, 2, &response, b"ok")
            });
            if answered.is_err() {
                app.tx.take_refused();
                break;
            }
            pending.pop_front();
        }
        app.tx.publish();
        app_frames.extend(frames);
    }
    let bytes: Vec<u8> = to_client
        .iter()
        .filter(|f| f.type_id == frame::DATA && f.stream_id == NET ^ 1)
        .flat_map(|f| f.payload.clone())
        .collect();
    let client = String::from_utf8_lossy(&bytes)
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with("Date: "))
        .collect();
    let ended = to_client
        .iter()
        .any(|f| f.type_id == frame::END && f.stream_id == NET ^ 1);
    Run {
        app_frames,
        client,
        ended,
    }
}

/// Runs `heads` both ways and checks they agree; returns the burst's run.
fn same_both_ways(heads: &[&[u8]], max_pipelined: usize, app_ring: usize) -> Run {
    after(&[], heads, max_pipelined, app_ring)
}

/// [`same_both_ways`] after `prelude` on another connection.
fn after(prelude: &[u8], heads: &[&[u8]], max_pipelined: usize, app_ring: usize) -> Run {
    let burst = run(prelude, heads, true, max_pipelined, app_ring);
    let alone = run(prelude, heads, false, max_pipelined, app_ring);
    assert_eq!(
        burst.app_frames, alone.app_frames,
        "what the application got"
    );
    assert_eq!(burst.client, alone.client, "what the client got");
    assert_eq!(burst.ended, alone.ended);
    burst
}

fn begins(run: &Run) -> usize {
    run.app_frames
        .iter()
        .filter(|f| f.type_id == frame::BEGIN)
        .count()
}

fn responses(run: &Run, status: &str) -> usize {
    run.client.matches(&format!("HTTP/1.1 {status}")).count()
}

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
const HEAD_A: &[u8] = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n";
const CLOSE_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const POST: &[u8] = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";

#[test]
fn a_burst_stops_at_the_pipelining_limit_and_resumes_as_responses_go_out() {
    let run = same_both_ways(&[GET_A; 10], 4, 1 << 20);
    assert_eq!(begins(&run), 10);
    assert_eq!(responses(&run, "200"), 10);
    assert!(!run.ended, "the connection stays open");
}

#[test]
fn a_different_head_a_close_and_a_body_end_a_burst_where_reading_each_would() {
    let heads = [
        GET_A, GET_A, GET_A, GET_B, GET_B, HEAD_A, HEAD_A, POST, GET_A, GET_A, CLOSE_A, GET_A,
        GET_A,
    ];
    let run = same_both_ways(&heads, 16, 1 << 20);
    assert_eq!(
        begins(&run),
        11,
        "nothing after the closing request is read"
    );
    assert_eq!(responses(&run, "200"), 11);
    assert!(
        run.ended,
        "the connection closed after the closing request's response"
    );
}

#[test]
fn a_ring_that_fills_mid_burst_answers_the_refused_request_with_503_and_closes() {
    // Room for a few BEGINs only (the application drains it each turn, late).
    let run = same_both_ways(&[GET_A; 16], 16, 1024);
    let opened = begins(&run);
    assert!(
        opened > 0 && opened < 16,
        "the ring refused one of the BEGINs ({opened} went out)"
    );
    assert_eq!(responses(&run, "200"), opened);
    assert_eq!(responses(&run, "503"), 1);
    assert!(run.ended);
}

#[test]
fn a_repeated_closing_request_is_the_last_one_read() {
    // The closing head is the cached one (another connection sent it), so the first of the
    // burst is a repeat.
    let run = after(CLOSE_A, &[CLOSE_A, CLOSE_A, CLOSE_A], 16, 1 << 20);
    assert_eq!(
        begins(&run),
        2,
        "the other connection's and the first of the burst"
    );
    assert_eq!(responses(&run, "200"), 1);
    assert!(run.ended);
}
