//! The h1 state machine on its own: request bytes in, events and response bytes out, no
//! streams. `Peer` plays the nukleus with an application that takes any body at once (or
//! `budget` bytes per read).

use std::time::{Duration, Instant};

use super::*;
use crate::ext;

const DATE: &[u8] = b"Wed, 02 Dec 2026 21:00:00 GMT";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Head(Tag, String),
    Body(Tag, Vec<u8>),
    End(Tag),
}

struct Peer {
    h1: Connection,
    heads: Heads,
    limits: HttpLimits,
    now: Instant,
    budget: usize,
    next_tag: Tag,
    events: Vec<Event>,
    retired: Vec<Tag>,
    /// The last request head read, as the nukleus keeps it (`None`: every head parsed).
    cache: Option<RequestCache>,
}

impl Peer {
    fn new() -> Peer {
        Peer::with(HttpLimits::default())
    }

    fn with(limits: HttpLimits) -> Peer {
        let now = Instant::now();
        Peer {
            h1: Connection::new(now),
            heads: Heads::default(),
            limits,
            now,
            budget: usize::MAX,
            next_tag: 10,
            events: Vec::new(),
            retired: Vec::new(),
            cache: None,
        }
    }

    /// Request bytes arrive; everything readable is read (as the nukleus does).
    fn feed(&mut self, bytes: &[u8]) {
        self.h1.arrived(self.now);
        self.h1.input.extend_from_slice(bytes);
        self.read_held();
        self.h1.track_head(self.now);
    }

    fn read_held(&mut self) {
        let input = std::mem::take(&mut self.h1.input);
        let mut scratch = Vec::new();
        let mut at = 0;
        loop {
            let read = self.h1.read_cached(
                &input[at..],
                self.budget,
                &self.limits,
                |path| Some(path.len()),
                &mut scratch,
                self.cache.as_mut(),
            );
            let read_repeat = matches!(read, Read::Repeat(_));
            match read {
                Read::Wait => break,
                Read::Discard => {
                    at = input.len();
                    break;
                }
                Read::Head(parsed) | Read::Repeat(parsed) => {
                    at += parsed.consumed;
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    let extension = match (read_repeat, &self.cache) {
                        (true, Some(cache)) => cache.extension(),
                        _ => &scratch[..],
                    };
                    let head = ext::RequestHead::parse(extension).unwrap();
                    let line = format!("{} {}", head.method, head.target);
                    let upgrade = parsed.upgrade && matches!(parsed.body, Body::None);
                    let close = parsed.close;
                    self.h1.open(tag, &parsed, upgrade, close);
                    self.events.push(Event::Head(tag, line));
                }
                Read::Body {
                    tag,
                    used,
                    data,
                    finished,
                } => {
                    if !data.is_empty() {
                        self.events.push(Event::Body(tag, data.to_vec()));
                    }
                    if finished {
                        self.events.push(Event::End(tag));
                    }
                    at += used;
                    if !finished && (used == 0 || at >= input.len()) {
                        break;
                    }
                }
                Read::BadHead(rejection) => {
                    self.reject(rejection);
                    at = input.len();
                    break;
                }
                Read::BadBody(tag, rejection) => {
                    assert!(self.h1.fail_body(tag), "the response had not started");
                    self.reject(rejection);
                    at = input.len();
                    break;
                }
            }
        }
        if !self.h1.input_discarded() {
            self.h1.input = input[at..].to_vec();
        }
    }

    fn reject(&mut self, rejection: Rejection) {
        let retired = &mut self.retired;
        self.h1
            .reject(rejection, DATE, self.now, |x| retired.push(x));
    }

    fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The application answers `tag` with `status`, `headers` and `body` (None: no data).
    fn respond(&mut self, tag: Tag, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        self.begin(tag, status, headers).unwrap();
        self.data(tag, body);
        self.end(tag);
    }

    fn begin(
        &mut self,
        tag: Tag,
        status: u16,
        headers: &[(&str, &[u8])],
    ) -> Result<Begun, &'static str> {
        let mut head = Vec::new();
        ext::encode_response(&mut head, status, headers.iter().copied());
        self.h1.response_head(tag, &head, &mut self.heads, DATE)
    }

    fn data(&mut self, tag: Tag, body: &[u8]) {
        if let Sent::Direct(n) = self.h1.response_data(tag, body).unwrap() {
            self.h1.out.extend_from_slice(&body[..n]);
        }
    }

    fn end(&mut self, tag: Tag) {
        let retired = &mut self.retired;
        self.h1.response_end(tag, self.now, |x| retired.push(x));
    }

    /// Response bytes written since the last look.
    fn out(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.h1.out)).unwrap()
    }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nDate: {}\r\n\r\n{body}",
        body.len(),
        std::str::from_utf8(DATE).unwrap()
    )
}

fn length(body: &[u8]) -> String {
    body.len().to_string()
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn keep_alive_reads_one_request_after_another() {
    let mut peer = Peer::new();
    peer.feed(GET);
    assert_eq!(peer.events(), [Event::Head(10, "GET /a".into())]);
    let len = length(b"one");
    peer.respond(10, 200, &[("Content-Length", len.as_bytes())], b"one");
    assert_eq!(peer.out(), ok("one"));
    assert_eq!(peer.retired, [10]);
    assert!(!peer.h1.closing() && !peer.h1.finished());
    peer.feed(b"GET /bb HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(peer.events(), [Event::Head(11, "GET /bb".into())]);
}

/// Repeated heads read through the request cache give the same requests, bodies and errors
/// as parsing each one, whether they arrive pipelined, one by one or split mid-head.
#[test]
fn a_repeated_head_reads_the_same_through_the_request_cache() {
    let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = "POST /bb HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
    let script = [
        format!("{get}{get}{get}"),
        format!("{post}abc{post}"),
        "xyz".to_string(),
        get[..9].to_string(),
        format!("{}{get}GET /a HTTP/1.1\r\nHost: y\r\n\r\n", &get[9..]),
        format!("{get}GET / HTTP/1.1\r\n\r\n"),
    ];
    let run = |cache: Option<RequestCache>| {
        let mut peer = Peer::new();
        peer.cache = cache;
        for piece in &script {
            peer.feed(piece.as_bytes());
            // Answer every request in line whose body is in (the queue holds no more).
            let tags: Vec<Tag> = peer
                .h1
                .transactions()
                .filter(|t| t.request_ended() && t.writing() == Writing::Awaiting)
                .filter_map(|t| t.tag())
                .collect();
            for tag in tags {
                let len = length(b"hi");
                peer.respond(tag, 200, &[("Content-Length", len.as_bytes())], b"hi");
            }
        }
        (
            peer.events,
            String::from_utf8_lossy(&peer.h1.out).into_owned(),
        )
    };
    let parsed = run(None);
    assert_eq!(run(Some(RequestCache::default())), parsed);
    assert_eq!(
        parsed
            .0
            .iter()
            .filter(|e| matches!(e, Event::Head(..)))
            .count(),
        9
    );
    assert!(parsed.1.contains("400 Bad Request"), "{}", parsed.1);
}

#[test]
fn pipelined_responses_leave_in_request_order() {
    let mut peer = Peer::new();
    peer.feed(&[GET, GET, GET].concat());
    assert_eq!(peer.h1.in_flight(), 3);
    // Answered last to first: only the first in line writes to `out`.
    for (tag, body) in [(12, "three"), (11, "two")] {
        let len = length(body.as_bytes());
        peer.respond(
            tag,
            200,
            &[("Content-Length", len.as_bytes())],
            body.as_bytes(),
        );
        assert_eq!(peer.out(), "");
    }
    peer.respond(10, 200, &[("Content-Length", b"3")], b"one");
    assert_eq!(peer.out(), [ok("one"), ok("two"), ok("three")].concat());
    assert_eq!(peer.retired, [10, 11, 12]);
}

#[test]
fn pipelining_stops_at_max_pipelined_and_resumes_when_one_completes() {
    let mut peer = Peer::with(HttpLimits {
        max_pipelined: 2,
        ..HttpLimits::default()
    });
    peer.feed(&[GET, GET, GET].concat());
    assert_eq!(peer.events().len(), 2);
    assert_eq!(peer.h1.input, GET, "the third waits unread");
    assert!(!peer.h1.may_read(&peer.limits));
    peer.respond(10, 204, &[], b"");
    assert!(peer.h1.may_read(&peer.limits));
    peer.read_held();
    assert_eq!(peer.events(), [Event::Head(12, "GET /a".into())]);
}

#[test]
fn a_content_length_body_is_read_within_the_budget() {
    let mut peer = Peer::new();
    peer.budget = 4;
    peer.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef");
    assert_eq!(
        peer.events(),
        [
            Event::Head(10, "POST /a".into()),
            Event::Body(10, b"abcd".to_vec()),
            // The reader goes on while bytes are used; the nukleus's budget shrinks instead.
            Event::Body(10, b"ef".to_vec()),
            Event::End(10),
        ]
    );
    assert_eq!(peer.h1.reading(), Reading::Head);
}

#[test]
fn a_chunked_body_is_decoded_however_it_arrives() {
    let mut peer = Peer::new();
    peer.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab");
    assert_eq!(peer.h1.reading(), Reading::Body(10));
    peer.feed(
        b"c\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let body: Vec<u8> = peer
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Body(10, data) => Some(data),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(body, b"abcde");
    assert!(peer.h1.transactions().all(|t| t.request_ended()));
    assert_eq!(
        peer.h1.in_flight(),
        2,
        "the next request was read after the body"
    );
}

#[test]
fn a_response_without_length_is_chunked_for_1_1_and_delimited_by_close_for_1_0() {
    let mut peer = Peer::new();
    peer.feed(GET);
    peer.begin(10, 200, &[]).unwrap();
    peer.data(10, &[b'x'; 17]);
    peer.data(10, b"");
    peer.end(10);
    let out = peer.out();
    assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with(&format!("\r\n\r\n11\r\n{}\r\n0\r\n\r\n", "x".repeat(17))));
    assert!(!peer.h1.closing());

    let mut peer = Peer::new();
    peer.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    peer.begin(10, 200, &[]).unwrap();
    peer.data(10, b"raw");
    peer.end(10);
    let out = peer.out();
    assert!(out.contains("Connection: close\r\n") && out.ends_with("\r\n\r\nraw"));
    assert!(peer.h1.finished());
}

#[test]
fn connection_close_ends_the_connection_after_its_response_and_reads_nothing_more() {
    let mut peer = Peer::new();
    peer.feed(
        &[
            &b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            GET,
        ]
        .concat(),
    );
    assert_eq!(
        peer.events().len(),
        1,
        "nothing after the last request is read"
    );
    assert!(peer.h1.input_discarded() && peer.h1.input.is_empty());
    assert!(!peer.h1.finished(), "its response is still to come");
    peer.respond(10, 200, &[("Content-Length", b"0")], b"");
    assert!(peer.out().contains("Connection: close\r\n"));
    assert!(peer.h1.finished());
}

#[test]
fn expect_100_continue_is_written_when_the_request_reaches_the_front() {
    let upload =
        b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut peer = Peer::new();
    peer.feed(upload);
    assert_eq!(peer.out(), "HTTP/1.1 100 Continue\r\n\r\n");
    peer.feed(b"ok");
    peer.respond(10, 204, &[], b"");
    assert!(peer.out().starts_with("HTTP/1.1 204 "));
    // Pipelined behind another request: its 100 Continue waits for its turn.
    peer.feed(&[GET, &upload[..]].concat());
    assert_eq!(peer.out(), "", "not before the response ahead of it");
    peer.respond(11, 204, &[], b"");
    let out = peer.out();
    assert!(out.starts_with("HTTP/1.1 204 "));
    assert!(
        out.ends_with("\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"),
        "{out}"
    );
    // Without a body there is nothing to continue.
    let mut peer = Peer::new();
    peer.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(peer.out(), "");
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[test]
fn an_accepted_upgrade_turns_the_held_bytes_into_the_tunnel() {
    let mut peer = Peer::new();
    peer.feed(&[UPGRADE, b"early"].concat());
    assert_eq!(peer.h1.reading(), Reading::Upgrading(10));
    assert_eq!(peer.h1.input, b"early", "held until the answer");
    let begun = peer.begin(10, 101, &[("Upgrade", b"websocket")]).unwrap();
    assert_eq!(
        begun,
        Begun {
            end_request: false,
            tunnel: true
        }
    );
    assert!(peer
        .out()
        .starts_with("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"));
    assert_eq!(peer.h1.reading(), Reading::Tunnel(10));
    peer.events();
    peer.read_held();
    peer.feed(b" late");
    assert_eq!(
        peer.events(),
        [
            Event::Body(10, b"early".to_vec()),
            Event::Body(10, b" late".to_vec())
        ]
    );
    assert_eq!(
        peer.h1.end_input(),
        InputEnd::EndRequest {
            tag: 10,
            incomplete: false
        }
    );
    assert_eq!(peer.h1.reading(), Reading::TunnelEnded);
}

#[test]
fn a_refused_upgrade_is_an_ordinary_request_and_the_held_bytes_the_next_one() {
    let mut peer = Peer::new();
    peer.feed(&[UPGRADE, GET].concat());
    let begun = peer.begin(10, 200, &[("Content-Length", b"0")]).unwrap();
    assert_eq!(
        begun,
        Begun {
            end_request: true,
            tunnel: false
        }
    );
    peer.end(10);
    assert_eq!(peer.h1.reading(), Reading::Head);
    assert_eq!(peer.retired, [10]);
    peer.events();
    peer.read_held();
    assert_eq!(peer.events(), [Event::Head(11, "GET /a".into())]);
}

#[test]
fn a_101_to_a_request_that_cannot_upgrade_is_refused() {
    let mut peer = Peer::new();
    peer.feed(GET);
    assert!(peer.begin(10, 101, &[]).is_err());
    assert!(!peer.h1.forget(10), "a bodiless request has ended");
    assert_eq!(peer.h1.in_flight(), 0);
}

#[test]
fn limits_are_answered_at_the_edge() {
    let limits = HttpLimits {
        max_header_bytes: 64,
        max_body_bytes: 4,
        ..HttpLimits::default()
    };
    // A head of exactly max_header_bytes passes; one byte more is 431.
    let fits = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "v".repeat(31)
    );
    assert_eq!(fits.len(), 64);
    let mut peer = Peer::with(limits.clone());
    peer.feed(fits.as_bytes());
    assert_eq!(peer.events().len(), 1);
    let over = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "v".repeat(32)
    );
    let mut peer = Peer::with(limits.clone());
    peer.feed(over.as_bytes());
    assert!(peer.out().starts_with("HTTP/1.1 431 "));
    assert!(peer.h1.finished(), "nothing more is read");

    // A chunked body of max_body_bytes passes; one byte more is 413.
    let chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut peer = Peer::with(limits.clone());
    peer.feed(&[&chunked[..], b"4\r\nabcd\r\n0\r\n\r\n"].concat());
    assert_eq!(peer.events().last(), Some(&Event::End(10)));
    let mut peer = Peer::with(limits.clone());
    peer.feed(&[&chunked[..], b"5\r\nabcde\r\n0\r\n\r\n"].concat());
    assert!(peer.out().starts_with("HTTP/1.1 413 "));
    assert_eq!(peer.h1.in_flight(), 0);
    assert!(peer.h1.finished());

    // Malformed chunk framing is 400.
    let mut peer = Peer::with(limits);
    peer.feed(&[&chunked[..], b"zz\r\n"].concat());
    assert!(peer.out().starts_with("HTTP/1.1 400 "));
}

#[test]
fn an_error_after_pipelined_requests_waits_for_their_responses() {
    let mut peer = Peer::new();
    peer.feed(&[GET, b"BAD\r\n\r\n"].concat());
    assert_eq!(peer.out(), "", "the 400 waits behind the first response");
    peer.respond(10, 200, &[("Content-Length", b"3")], b"one");
    let out = peer.out();
    assert!(out.starts_with(&ok("one")));
    assert!(out[ok("one").len()..].starts_with("HTTP/1.1 400 "), "{out}");
    assert!(peer.h1.finished());
}

#[test]
fn a_client_gone_during_an_open_ended_response_aborts_and_mid_body_ends_the_request() {
    let mut peer = Peer::new();
    peer.feed(GET);
    peer.begin(10, 200, &[]).unwrap(); // chunked: no known end
    assert_eq!(peer.h1.end_input(), InputEnd::Abort);

    let mut peer = Peer::new();
    peer.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc");
    assert_eq!(
        peer.h1.end_input(),
        InputEnd::EndRequest {
            tag: 10,
            incomplete: true
        }
    );
    assert!(peer.h1.closing());
}

#[test]
fn slow_heads_and_idle_connections_expire() {
    let (idle, request) = (Duration::from_secs(60), Duration::from_secs(10));
    let mut peer = Peer::new();
    let start = peer.now;
    peer.feed(b"GET / HTTP/1.1\r\n");
    assert_eq!(peer.h1.expiry(start + request / 2, idle, request), None);
    assert_eq!(
        peer.h1.expiry(start + request, idle, request),
        Some(Expiry::SlowHead)
    );
    let mut peer = Peer::new();
    peer.feed(GET);
    assert_eq!(
        peer.h1.expiry(start + idle * 2, idle, request),
        None,
        "in flight"
    );
    peer.now += Duration::from_secs(1);
    peer.respond(10, 204, &[], b"");
    let answered = peer.now;
    assert_eq!(peer.h1.expiry(answered + idle / 2, idle, request), None);
    assert_eq!(
        peer.h1.expiry(answered + idle, idle, request),
        Some(Expiry::Idle)
    );
}

#[test]
fn draining_closes_after_the_last_response_in_flight() {
    let mut peer = Peer::new();
    peer.feed(GET);
    assert!(peer.h1.drain());
    assert!(!peer.h1.drain(), "once");
    peer.respond(10, 200, &[("Content-Length", b"0")], b"");
    assert!(peer.out().contains("Connection: close\r\n"));
    assert!(peer.h1.finished());
}

/// `response_whole` writes what head, data and end in a row write — and only in the plain
/// case: first in line, its head cached, Content-Length exactly the body.
#[test]
fn a_whole_response_in_one_step_matches_three_steps_and_declines_otherwise() {
    let mut peer = Peer::new();
    let len = length(b"one");
    let headers = [("Content-Length", len.as_bytes())];
    let mut head = Vec::new();
    ext::encode_response(&mut head, 200, headers.iter().copied());
    peer.feed(GET);
    let whole = |peer: &mut Peer, tag: Tag, body: &[u8]| {
        let retired = &mut peer.retired;
        peer.h1
            .response_whole(tag, &head, body, &peer.heads, peer.now, |x| retired.push(x))
    };
    assert!(!whole(&mut peer, 10, b"one"), "nothing cached yet");
    assert_eq!((peer.out(), peer.retired.len()), (String::new(), 0));
    peer.respond(10, 200, &headers, b"one"); // caches the head
    assert_eq!(peer.out(), ok("one"));
    // Pipelined: the second and third are not first in line until the second is answered.
    peer.feed(&[GET, GET].concat());
    assert!(!whole(&mut peer, 12, b"one"), "not first in line");
    assert!(
        !whole(&mut peer, 11, b"on"),
        "shorter than its Content-Length"
    );
    assert!(
        !whole(&mut peer, 11, b"one!"),
        "longer than its Content-Length"
    );
    assert!(!whole(&mut peer, 99, b"one"), "not in flight");
    assert_eq!(peer.out(), "");
    assert!(whole(&mut peer, 11, b"one"));
    assert!(whole(&mut peer, 12, b"one"));
    assert_eq!(peer.out(), [ok("one"), ok("one")].concat());
    assert_eq!(peer.retired, [10, 11, 12]);
    // A response already begun is not begun again.
    peer.feed(GET);
    peer.begin(13, 200, &headers).unwrap();
    assert!(!whole(&mut peer, 13, b"one"));
    assert_eq!(
        peer.begin(13, 200, &headers),
        Err("a second response head for one request")
    );
}
