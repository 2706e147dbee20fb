//! A tcp instance split by direction: the input half accepts and reads, the output half
//! writes. The peer (a scripted stand-in for http) sees the same frames as from a whole tcp
//! nukleus, on one link; real clients on loopback. Both halves are polled by this one thread
//! in turn, each with its own poller, as two cores would.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use nukleus_tcp::{ListenerConfig, TcpConfig, TcpNukleus, TcpOutput};
use streams::frame::{self, Frame};
use streams::{Header, Link, Nukleus, PeerLink, PollContext, TokenRange};

const WINDOW: u32 = 65536;

struct Split {
    input: TcpNukleus,
    output: TcpOutput,
    polls: [Poll; 2],
    /// The http side of the link.
    peer: Link,
    start: Instant,
}

/// A frame the peer received, owned.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    type_id: u32,
    stream_id: u64,
    maximum: u32,
    payload: Vec<u8>,
}

impl Split {
    fn new() -> Split {
        let (tcp_side, peer) = Link::pair(1 << 20, "tcp", "http").unwrap();
        let config = TcpConfig {
            listeners: vec![ListenerConfig {
                name: "test".into(),
                address: "127.0.0.1:0".parse().unwrap(),
                next: "http".into(),
                backlog: 128,
            }],
            window: WINDOW,
            write_timeout: Duration::from_secs(30),
            ..TcpConfig::default()
        };
        let tcp = TcpNukleus::new(
            config,
            0,
            0,
            vec![PeerLink {
                kind: "http".into(),
                core: 0,
                role: streams::PeerRole::application(streams::Carries::Connection),
                link: tcp_side,
            }],
        )
        .unwrap();
        let (mut input, mut output) = tcp.split_directions(None, None);
        let polls = [Poll::new().unwrap(), Poll::new().unwrap()];
        let tokens = TokenRange {
            first: 1 << 16,
            count: 1 << 16,
        };
        input.register(polls[0].registry(), tokens).unwrap();
        output.register(polls[1].registry(), tokens).unwrap();
        Split {
            input,
            output,
            polls,
            peer,
            start: Instant::now(),
        }
    }

    fn client(&self) -> TcpStream {
        let client = TcpStream::connect(self.input.local_addresses()[0]).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    }

    /// One turn of each half, then what the peer received.
    fn turn(&mut self) -> Vec<Seen> {
        let mut events = Events::with_capacity(64);
        for (k, poll) in self.polls.iter_mut().enumerate() {
            poll.poll(&mut events, Some(Duration::from_millis(1)))
                .unwrap();
            for event in events.iter() {
                match k {
                    0 => self.input.on_event(event),
                    _ => self.output.on_event(event),
                }
            }
        }
        let now = Instant::now();
        let context = PollContext {
            now,
            timestamp: now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        };
        self.input.poll(&context);
        self.output.poll(&context);
        // The output half answers the input half's messages on the next turn.
        self.input.poll(&context);
        let mut seen = Vec::new();
        self.peer.rx.read(usize::MAX, |type_id, bytes| {
            let f = Frame::new(type_id, bytes).unwrap();
            seen.push(Seen {
                type_id,
                stream_id: f.stream_id(),
                maximum: if type_id == frame::WINDOW {
                    f.maximum()
                } else {
                    0
                },
                payload: if type_id == frame::DATA {
                    f.payload().to_vec()
                } else {
                    Vec::new()
                },
            });
        });
        seen
    }

    /// Turns until `done` holds for what the peer has received so far (at most 5 s).
    fn until(&mut self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut all = Vec::new();
        while !done(&all) {
            assert!(Instant::now() < deadline, "{what}: peer saw only {all:?}");
            all.extend(self.turn());
        }
        all
    }

    fn send(&mut self, write: impl FnOnce(&mut streams::RingWriter)) {
        write(&mut self.peer.tx);
        self.peer.publish();
    }

    fn gauge(&self, half: usize, name: &str) -> u64 {
        let mut out = Vec::new();
        match half {
            0 => self.input.gauges(&mut out),
            _ => self.output.gauges(&mut out),
        }
        out.into_iter().find(|(n, _)| *n == name).unwrap().1
    }
}

fn has(seen: &[Seen], type_id: u32) -> bool {
    seen.iter().any(|s| s.type_id == type_id)
}

/// Connects a client, lets the peer accept it (reply BEGIN, window for the request) and
/// returns the client, the initial stream id and the reply window tcp granted.
fn accepted(split: &mut Split) -> (TcpStream, u64, u32) {
    let client = split.client();
    let seen = split.until("initial BEGIN", |s| has(s, frame::BEGIN));
    let id = seen[0].stream_id;
    assert_eq!(id & 1, 1, "the initial stream id is odd");
    split.send(|tx| {
        tx.begin(&Header::new(id ^ 1), 0, &[]).unwrap();
        let window = Header {
            stream_id: id,
            maximum: WINDOW,
            ..Header::default()
        };
        tx.window(&window, 0).unwrap();
    });
    let seen = split.until("reply WINDOW", |s| has(s, frame::WINDOW));
    let window = seen.iter().find(|s| s.type_id == frame::WINDOW).unwrap();
    assert_eq!(
        window.stream_id,
        id ^ 1,
        "the window is for the reply stream"
    );
    (client, id, window.maximum)
}

#[test]
fn bytes_flow_both_ways_and_an_ended_reply_closes_the_connection() {
    let mut split = Split::new();
    let (mut client, id, window) = accepted(&mut split);
    assert_eq!(
        window, WINDOW,
        "the output half's reply window reaches the peer"
    );

    // Client -> input half -> peer (within the window the peer granted via the output half).
    client.write_all(b"hello").unwrap();
    let seen = split.until("request DATA", |s| has(s, frame::DATA));
    let data = seen.iter().find(|s| s.type_id == frame::DATA).unwrap();
    assert_eq!(
        (data.stream_id, data.payload.as_slice()),
        (id, &b"hello"[..])
    );

    // Peer -> output half -> client, then END: the client reads the bytes, then EOF.
    split.send(|tx| {
        tx.data(&Header::new(id ^ 1), 0, 5, &[], b"world").unwrap();
        tx.end(&Header::new(id ^ 1), &[]).unwrap();
    });
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    client.set_nonblocking(true).unwrap();
    loop {
        split.turn();
        let mut buf = [0u8; 64];
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no EOF after {reply:?}");
    }
    assert_eq!(reply, b"world");
    assert_eq!(split.gauge(1, "connections"), 0, "the output half is done");
    assert_eq!(split.gauge(0, "connections"), 1, "reading goes on");

    // The client closes: the input half ends the initial stream and lets go.
    drop(client);
    split.until("initial END", |s| has(s, frame::END));
    split.turn();
    assert_eq!(split.gauge(0, "connections"), 0);
}

#[test]
fn a_reply_aborted_by_the_peer_resets_the_client_and_aborts_the_request() {
    let mut split = Split::new();
    let (mut client, id, _) = accepted(&mut split);
    split.send(|tx| tx.abort(&Header::new(id ^ 1), &[]).unwrap());
    let seen = split.until("initial ABORT", |s| has(s, frame::ABORT));
    assert!(seen
        .iter()
        .any(|s| s.type_id == frame::ABORT && s.stream_id == id));
    let mut buf = [0u8; 8];
    let error = client.read(&mut buf).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ConnectionReset,
        "linger 0: RST, not FIN"
    );
    split.turn();
    assert_eq!(
        (split.gauge(0, "connections"), split.gauge(1, "connections")),
        (0, 0)
    );
}

#[test]
fn a_peer_that_breaks_the_reply_window_fails_the_connection_on_both_streams() {
    let mut split = Split::new();
    let (_client, id, window) = accepted(&mut split);
    let too_much = vec![b'x'; window as usize + 1];
    split.send(|tx| {
        tx.data(
            &Header::new(id ^ 1),
            0,
            too_much.len() as u32,
            &[],
            &too_much,
        )
        .unwrap()
    });
    let seen = split.until("ABORT and RESET", |s| {
        has(s, frame::ABORT) && has(s, frame::RESET)
    });
    assert!(seen
        .iter()
        .any(|s| s.type_id == frame::ABORT && s.stream_id == id));
    assert!(seen
        .iter()
        .any(|s| s.type_id == frame::RESET && s.stream_id == id ^ 1));
    split.turn();
    assert_eq!(
        (split.gauge(0, "connections"), split.gauge(1, "connections")),
        (0, 0)
    );
}

#[test]
fn a_request_reset_by_the_peer_stops_reading_but_the_reply_still_flows() {
    let mut split = Split::new();
    let (mut client, id, _) = accepted(&mut split);
    // The peer wants no more request bytes (the RESET reaches the input half through the
    // output half), yet still answers.
    split.send(|tx| tx.reset(&Header::new(id), &[]).unwrap());
    for _ in 0..20 {
        split.turn();
    }
    client.write_all(b"ignored").unwrap();
    for _ in 0..20 {
        assert!(
            !has(&split.turn(), frame::DATA),
            "the input half stopped reading"
        );
    }
    split.send(|tx| {
        tx.data(&Header::new(id ^ 1), 0, 3, &[], b"bye").unwrap();
        tx.end(&Header::new(id ^ 1), &[]).unwrap();
    });
    for _ in 0..20 {
        split.turn();
    }
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"bye");
    assert_eq!(
        (split.gauge(0, "connections"), split.gauge(1, "connections")),
        (0, 0)
    );
}
