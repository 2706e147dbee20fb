//! Entry point for the fuzz target in `fuzz/` (cargo-fuzz) and for the replay of its saved
//! corpus in the workspace's tests (`tests/fuzz_corpus.rs`): arbitrary client bytes through
//! the receive [`Session`], asserting what must hold for any input; a panic is a finding.

use crate::frame::MAX_CONTROL_PAYLOAD;
use crate::session::{Config, Event, MessageKind, Session};
use crate::Failure;

/// An event with its bytes owned, message data merged across pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Start(MessageKind),
    Data(Vec<u8>),
    End,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Failed(Failure),
}

/// Client bytes (the first byte picks the limits and how the rest arrives): the events keep
/// the protocol's shape (data only inside a message, text messages valid UTF-8, control
/// payloads of at most 125 bytes, nothing after a close or a failure, messages within the
/// limits) and are the same whether the bytes arrive at once, in pieces or one by one.
pub fn session(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let selector = selector as usize;
    let config = Config {
        max_frame_size: [16 << 20, 0, 125, 1000][selector & 3],
        max_message_size: [64 << 20, 0, 200, 3000][(selector >> 2) & 3],
    };
    let whole = receive(config, input, input.len().max(1));
    for piece in [1 + (selector >> 4), 1] {
        assert_eq!(
            receive(config, input, piece),
            whole,
            "arriving in pieces of {piece}"
        );
    }
}

/// Feeds `input` to a new session `piece` bytes at a time; checks every event as it comes.
fn receive(config: Config, input: &[u8], piece: usize) -> Vec<Seen> {
    let mut session = Session::new(config);
    let mut seen: Vec<Seen> = Vec::new();
    let mut open: Option<(MessageKind, u64)> = None;
    let mut text = Vec::new();
    let mut over = false;
    for arrival in input.chunks(piece) {
        let mut bytes = arrival.to_vec();
        let mut at = 0;
        loop {
            let (used, event) = session.receive(&mut bytes[at..]);
            at += used;
            assert!(at <= arrival.len());
            let Some(event) = event else {
                assert_eq!(at, arrival.len(), "no event but input left");
                break;
            };
            assert!(!over, "an event after a close or a failure: {event:?}");
            let next = match event {
                Event::MessageStart(kind) => {
                    assert!(open.is_none(), "a message inside a message");
                    open = Some((kind, 0));
                    text.clear();
                    Seen::Start(kind)
                }
                Event::MessageData(data) => {
                    let (kind, length) = open.as_mut().expect("data outside a message");
                    assert!(!data.is_empty(), "empty data");
                    *length += data.len() as u64;
                    assert!(*length <= config.max_message_size, "message over the limit");
                    if *kind == MessageKind::Text {
                        text.extend_from_slice(data);
                    }
                    Seen::Data(data.to_vec())
                }
                Event::MessageEnd => {
                    let (kind, _) = open.take().expect("an end outside a message");
                    if kind == MessageKind::Text {
                        assert!(std::str::from_utf8(&text).is_ok(), "text is not UTF-8");
                    }
                    Seen::End
                }
                Event::Ping(payload) => {
                    assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                    Seen::Ping(payload.to_vec())
                }
                Event::Pong(payload) => {
                    assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                    Seen::Pong(payload.to_vec())
                }
                Event::Close { code, reason } => {
                    assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
                    over = true;
                    Seen::Close(code, reason.to_owned())
                }
                Event::Failed(failure) => {
                    assert!(failure.reason().len() <= MAX_CONTROL_PAYLOAD - 2);
                    over = true;
                    // How much of a failing message was passed on before the failure depends
                    // on how its bytes arrived (a text piece may end inside a code point that
                    // turns out invalid): the message is void, compare without its data.
                    if open.is_some() && matches!(seen.last(), Some(Seen::Data(_))) {
                        seen.pop();
                    }
                    Seen::Failed(failure)
                }
            };
            match (seen.last_mut(), next) {
                (Some(Seen::Data(all)), Seen::Data(more)) => all.extend_from_slice(&more),
                (_, next) => seen.push(next),
            }
        }
        assert_eq!(session.is_done(), over);
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_controls_and_failures_pass_every_check() {
        // A masked "Hi" text frame, a masked ping, a masked close 1000, then ignored bytes.
        let mut input = vec![0x00, 0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2];
        input.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0, 0x88, 0x82, 0, 0, 0, 0, 3, 0xe8, 1]);
        session(&input);
        // Unmasked: a failure.
        session(&[0x10, 0x81, 0x01, b'x']);
        session(&[]);
    }
}
