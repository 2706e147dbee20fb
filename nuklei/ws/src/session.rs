//! The receive side of an established connection: client bytes in, events out.

use crate::error::{is_valid_close_code, Failure};
use crate::frame::{apply_mask, FrameHeader, HeaderDecoder, OpCode, MAX_CONTROL_PAYLOAD};
use crate::utf8::Utf8Validator;

/// Receive limits. Payloads are streamed, so these bound policy, not memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest accepted payload of one data frame; larger fails with 1009.
    pub max_frame_size: u64,
    /// Largest accepted total payload of one message; larger fails with 1009.
    pub max_message_size: u64,
}

impl Default for Config {
    /// 16 MiB frames and 64 MiB messages, as tungstenite, which admits Autobahn 9.x's 16 MiB
    /// single-frame messages.
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// What the client said. Slices borrow the input (unmasked in place) or the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A new message; its payload follows as `MessageData`, then `MessageEnd`.
    MessageStart(MessageKind),
    /// The next unmasked piece of the open message's payload, never empty. Text pieces are
    /// valid UTF-8 so far but may end inside a code point that the next piece completes.
    MessageData(&'a [u8]),
    /// The open message is complete (for text: valid UTF-8 as a whole).
    MessageEnd,
    /// The caller must answer with a pong carrying this payload (at most 125 bytes).
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The client started or answered the closing handshake. `code` is `None` for an empty
    /// close body (the reply is then an empty close too). No further events follow.
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
    /// The client violated the protocol: send a close with `close_code()` and `reason()`,
    /// then drop the connection. No further events follow.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Data {
        remaining: u64,
        offset: u64,
        mask: [u8; 4],
        fin: bool,
    },
    Control {
        opcode: OpCode,
        len: u8,
        have: u8,
        mask: [u8; 4],
    },
    /// Closed or failed: input is ignored.
    Done,
}

/// The receive state machine of one WebSocket connection (RFC 6455 §5–§7, server side).
///
/// Feed it client bytes with [`receive`](Self::receive) in whatever pieces they arrive; it
/// unmasks data in place and reports one [`Event`] per call. Its state is fixed-size (a
/// partial header and at most one 125-byte control payload), so nothing is allocated.
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    state: State,
    decoder: HeaderDecoder,
    /// The message in progress, if any.
    message: Option<MessageKind>,
    message_len: u64,
    utf8: Utf8Validator,
    /// Control frames are reassembled here so their events are whole and validated.
    control: [u8; MAX_CONTROL_PAYLOAD],
}

impl Default for Session {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Session {
    pub fn new(config: Config) -> Self {
        Session {
            config,
            state: State::Header,
            decoder: HeaderDecoder::new(),
            message: None,
            message_len: 0,
            utf8: Utf8Validator::new(),
            control: [0; MAX_CONTROL_PAYLOAD],
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The kind of the message in progress, if one is open.
    pub fn message(&self) -> Option<MessageKind> {
        self.message
    }

    /// True once a close was received or a failure raised; input is then ignored.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// True right after a `MessageData` event that carried the last payload byte of a
    /// message that will be reported complete (the next event is `MessageEnd`, not a
    /// failure): lets a caller mark that piece as the message's final fragment.
    pub fn message_ends_here(&self) -> bool {
        matches!(
            self.state,
            State::Data {
                remaining: 0,
                fin: true,
                ..
            }
        ) && (self.message != Some(MessageKind::Text) || self.utf8.is_complete())
    }

    /// The payload length of the frame just begun (its header read, none of its payload yet)
    /// when that frame is a whole message (first frame and final): a caller that would rather
    /// pass the message on in one piece can wait until that many bytes are at hand.
    pub fn whole_message_ahead(&self) -> Option<u64> {
        match self.state {
            State::Data {
                remaining,
                offset: 0,
                fin: true,
                ..
            } if self.message.is_some() && self.message_len == remaining => Some(remaining),
            _ => None,
        }
    }

    /// True if the session sits exactly between frames (no partial header or payload).
    pub fn is_at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Header) && !self.decoder.is_partial()
    }

    /// Consumes client bytes and returns how many were consumed plus at most one event.
    ///
    /// Call it again with the unconsumed rest (`&mut input[consumed..]`, possibly empty) until
    /// it returns `None`: `None` means all input was consumed and nothing is pending, so the
    /// caller can wait for more bytes. The input is unmasked in place, which is why it is
    /// `&mut`. After `Close` or `Failed`, all input is consumed and ignored.
    pub fn receive<'a>(&'a mut self, input: &'a mut [u8]) -> (usize, Option<Event<'a>>) {
        let end = input.len();
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return (end, None),
                State::Header => {
                    if pos == end {
                        return (pos, None);
                    }
                    match self.decoder.decode(&input[pos..]) {
                        Ok((n, None)) => pos += n,
                        Ok((n, Some(header))) => {
                            pos += n;
                            match self.on_header(header) {
                                Ok(None) => {}
                                Ok(Some(event)) => return (pos, Some(event)),
                                Err(failure) => return (end, Some(self.fail(failure))),
                            }
                        }
                        Err(failure) => return (end, Some(self.fail(failure))),
                    }
                }
                State::Data {
                    remaining: 0, fin, ..
                } => {
                    self.state = State::Header;
                    if fin {
                        let kind = self.message.take();
                        if kind == Some(MessageKind::Text) && self.utf8.finish().is_err() {
                            return (end, Some(self.fail(Failure::InvalidUtf8)));
                        }
                        return (pos, Some(Event::MessageEnd));
                    }
                }
                State::Data {
                    remaining,
                    offset,
                    mask,
                    fin,
                } => {
                    if pos == end {
                        return (pos, None);
                    }
                    let take = remaining.min((end - pos) as u64) as usize;
                    self.state = State::Data {
                        remaining: remaining - take as u64,
                        offset: offset + take as u64,
                        mask,
                        fin,
                    };
                    let data = &mut input[pos..pos + take];
                    apply_mask(data, mask, offset);
                    if self.message == Some(MessageKind::Text) && self.utf8.feed(data).is_err() {
                        return (end, Some(self.fail(Failure::InvalidUtf8)));
                    }
                    return (pos + take, Some(Event::MessageData(data)));
                }
                State::Control {
                    opcode,
                    len,
                    have,
                    mask,
                } => {
                    if have < len {
                        if pos == end {
                            return (pos, None);
                        }
                        let take = ((len - have) as usize).min(end - pos);
                        let piece = &mut self.control[have as usize..have as usize + take];
                        piece.copy_from_slice(&input[pos..pos + take]);
                        apply_mask(piece, mask, have as u64);
                        pos += take;
                        let have = have + take as u8;
                        self.state = State::Control {
                            opcode,
                            len,
                            have,
                            mask,
                        };
                        if have < len {
                            return (pos, None);
                        }
                    }
                    self.state = State::Header;
                    return (pos, Some(self.on_control(opcode, len as usize)));
                }
            }
        }
    }

    /// Applies the message-level rules to a new frame header.
    fn on_header(&mut self, header: FrameHeader) -> Result<Option<Event<'static>>, Failure> {
        let FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        } = header;
        if opcode.is_control() {
            // The decoder has already enforced payload_len <= 125 and fin.
            self.state = State::Control {
                opcode,
                len: payload_len as u8,
                have: 0,
                mask,
            };
            return Ok(None);
        }
        if payload_len > self.config.max_frame_size {
            return Err(Failure::FrameTooBig);
        }
        let start = match (opcode, self.message) {
            (OpCode::Continuation, None) => return Err(Failure::UnexpectedContinuation),
            (OpCode::Continuation, Some(_)) => None,
            (_, Some(_)) => return Err(Failure::ExpectedContinuation),
            (OpCode::Text, None) => Some(MessageKind::Text),
            (_, None) => Some(MessageKind::Binary),
        };
        if start.is_some() {
            self.message_len = 0;
        }
        self.message_len = self.message_len.saturating_add(payload_len);
        if self.message_len > self.config.max_message_size {
            return Err(Failure::MessageTooBig);
        }
        self.state = State::Data {
            remaining: payload_len,
            offset: 0,
            mask,
            fin,
        };
        Ok(start.map(|kind| {
            self.message = Some(kind);
            self.utf8.reset();
            Event::MessageStart(kind)
        }))
    }

    /// Turns a reassembled control payload into its event.
    fn on_control(&mut self, opcode: OpCode, len: usize) -> Event<'_> {
        match opcode {
            OpCode::Ping => Event::Ping(&self.control[..len]),
            OpCode::Pong => Event::Pong(&self.control[..len]),
            _ => {
                // Close; the decoder only admits control opcodes here.
                if len == 0 {
                    self.state = State::Done;
                    return Event::Close {
                        code: None,
                        reason: "",
                    };
                }
                if len == 1 {
                    return self.fail(Failure::CloseBodyTooShort);
                }
                let code = u16::from_be_bytes([self.control[0], self.control[1]]);
                if !is_valid_close_code(code) {
                    return self.fail(Failure::InvalidCloseCode(code));
                }
                self.state = State::Done;
                match std::str::from_utf8(&self.control[2..len]) {
                    Ok(reason) => Event::Close {
                        code: Some(code),
                        reason,
                    },
                    Err(_) => Event::Failed(Failure::InvalidCloseReason),
                }
            }
        }
    }

    fn fail(&mut self, failure: Failure) -> Event<'static> {
        self.state = State::Done;
        self.message = None;
        Event::Failed(failure)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MASK: [u8; 4] = [0xA1, 0x52, 0x0C, 0xF7];

    /// A masked client frame with explicit first byte (FIN/RSV/opcode).
    pub(crate) fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn text(payload: &str) -> Vec<u8> {
        frame(0x81, payload.as_bytes())
    }

    fn close(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(reason);
        frame(0x88, &body)
    }

    /// An owned copy of an event, with adjacent data pieces merged.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Ev {
        Start(MessageKind),
        Data(Vec<u8>),
        End,
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
        Failed(Failure),
    }

    /// Feeds `bytes` in pieces of `piece` bytes, collecting events.
    pub(crate) fn feed(session: &mut Session, bytes: &[u8], piece: usize) -> Vec<Ev> {
        let mut events = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            let mut buf = chunk.to_vec();
            let mut pos = 0;
            loop {
                let (n, event) = session.receive(&mut buf[pos..]);
                pos += n;
                let Some(event) = event else { break };
                let ev = match event {
                    Event::MessageStart(kind) => Ev::Start(kind),
                    Event::MessageData(d) => {
                        assert!(!d.is_empty(), "empty data event");
                        if let Some(Ev::Data(prev)) = events.last_mut() {
                            prev.extend_from_slice(d);
                            continue;
                        }
                        Ev::Data(d.to_vec())
                    }
                    Event::MessageEnd => Ev::End,
                    Event::Ping(p) => Ev::Ping(p.to_vec()),
                    Event::Pong(p) => Ev::Pong(p.to_vec()),
                    Event::Close { code, reason } => Ev::Close(code, reason.to_string()),
                    Event::Failed(f) => Ev::Failed(f),
                };
                events.push(ev);
            }
            assert_eq!(pos, buf.len(), "receive returned None with input left");
        }
        events
    }

    /// The events for `bytes` must be the same however the input is split.
    fn events(bytes: &[u8]) -> Vec<Ev> {
        let whole = feed(&mut Session::default(), bytes, bytes.len());
        for piece in 1..bytes.len().min(40) {
            assert_eq!(
                feed(&mut Session::default(), bytes, piece),
                whole,
                "piece {piece}"
            );
        }
        whole
    }

    /// The failure `bytes` ends in, however the input is split. (How much valid data is
    /// delivered before it depends on the split, so only the failure is compared.)
    fn failed(bytes: &[u8]) -> Failure {
        let last = |piece| match feed(&mut Session::default(), bytes, piece).last() {
            Some(Ev::Failed(f)) => *f,
            other => panic!("expected a failure with piece {piece}, got {other:?}"),
        };
        let whole = last(bytes.len());
        for piece in 1..bytes.len().min(40) {
            assert_eq!(last(piece), whole, "piece {piece}");
        }
        whole
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    use Ev::*;

    #[test]
    fn single_frame_message_is_start_data_end() {
        assert_eq!(
            events(&text("Hello")),
            [Start(MessageKind::Text), Data(b"Hello".to_vec()), End]
        );
        assert_eq!(
            events(&frame(0x82, &[0, 255])),
            [Start(MessageKind::Binary), Data(vec![0, 255]), End]
        );
    }

    #[test]
    fn empty_message_has_no_data_event() {
        assert_eq!(events(&text("")), [Start(MessageKind::Text), End]);
    }

    #[test]
    fn fragmented_message_is_one_message() {
        let bytes = cat(&[frame(0x01, b"Hel"), frame(0x00, b""), frame(0x80, b"lo")]);
        assert_eq!(
            events(&bytes),
            [Start(MessageKind::Text), Data(b"Hello".to_vec()), End]
        );
    }

    #[test]
    fn large_payloads_use_16_and_64_bit_lengths() {
        for len in [126, 65_535, 65_536, 200_000] {
            let payload = vec![7u8; len];
            let evs = feed(&mut Session::default(), &frame(0x82, &payload), 4096);
            assert_eq!(evs, [Start(MessageKind::Binary), Data(payload), End]);
        }
    }

    #[test]
    fn control_frames_may_be_interleaved_inside_a_fragmented_message() {
        let bytes = cat(&[
            frame(0x01, b"He"),
            frame(0x89, b"ping!"),
            frame(0x00, b"l"),
            frame(0x8A, b""),
            frame(0x80, b"lo"),
        ]);
        assert_eq!(
            events(&bytes),
            [
                Start(MessageKind::Text),
                Data(b"He".to_vec()),
                Ping(b"ping!".to_vec()),
                Data(b"l".to_vec()),
                Pong(vec![]),
                Data(b"lo".to_vec()),
                End
            ]
        );
    }

    #[test]
    fn ping_payload_up_to_125_is_delivered_whole() {
        let payload = [0xFEu8; 125];
        assert_eq!(events(&frame(0x89, &payload)), [Ping(payload.to_vec())]);
    }

    #[test]
    fn continuation_without_started_message_is_protocol_error_1002() {
        assert_eq!(failed(&frame(0x80, b"x")), Failure::UnexpectedContinuation);
        // Also after a completed message.
        assert_eq!(
            failed(&cat(&[text("a"), frame(0x80, b"x")])),
            Failure::UnexpectedContinuation
        );
        assert_eq!(Failure::UnexpectedContinuation.close_code(), 1002);
    }

    #[test]
    fn new_data_frame_while_fragmented_message_open_is_protocol_error_1002() {
        assert_eq!(
            failed(&cat(&[frame(0x01, b"a"), text("b")])),
            Failure::ExpectedContinuation
        );
        assert_eq!(
            failed(&cat(&[frame(0x02, b"a"), frame(0x02, b"b")])),
            Failure::ExpectedContinuation
        );
        assert_eq!(Failure::ExpectedContinuation.close_code(), 1002);
    }

    #[test]
    fn frame_level_violations_fail_the_session() {
        assert_eq!(failed(&[0x81, 0x00]), Failure::UnmaskedFrame);
        assert_eq!(failed(&frame(0xC1, b"x")), Failure::ReservedBits);
        assert_eq!(failed(&frame(0x83, b"x")), Failure::ReservedOpcode(3));
        assert_eq!(failed(&frame(0x09, b"x")), Failure::FragmentedControlFrame);
        assert_eq!(
            failed(&frame(0x89, &[0; 126])),
            Failure::ControlFrameTooLong
        );
    }

    #[test]
    fn text_split_inside_a_code_point_across_frames_is_valid() {
        let euro = "€".as_bytes(); // E2 82 AC
        let bytes = cat(&[
            frame(0x01, &euro[..1]),
            frame(0x00, &euro[1..2]),
            frame(0x80, &euro[2..]),
        ]);
        assert_eq!(
            events(&bytes),
            [Start(MessageKind::Text), Data(euro.to_vec()), End]
        );
    }

    #[test]
    fn invalid_utf8_in_text_is_1007() {
        assert_eq!(failed(&frame(0x81, &[b'a', 0xFF])), Failure::InvalidUtf8);
        assert_eq!(Failure::InvalidUtf8.close_code(), 1007);
        // Binary messages are not validated.
        assert_eq!(events(&frame(0x82, &[0xFF])).last(), Some(&End));
    }

    #[test]
    fn text_ending_inside_a_code_point_is_1007() {
        let bytes = cat(&[frame(0x01, &[0xE2, 0x82]), frame(0x80, b"")]);
        assert_eq!(failed(&bytes), Failure::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_fails_fast_before_the_frame_completes() {
        // The first frame is invalid at its 2nd byte; the session fails without seeing the
        // rest of the frame or the message (Autobahn 6.4.x).
        let bytes = frame(0x01, &[b'a', 0xC0, b'b', b'c']);
        let mut s = Session::default();
        let evs = feed(&mut s, &bytes[..6 + 2], 100);
        assert_eq!(
            evs,
            [Start(MessageKind::Text), Failed(Failure::InvalidUtf8)]
        );
    }

    #[test]
    fn close_with_code_and_reason_is_reported() {
        assert_eq!(
            events(&close(1000, b"bye")),
            [Close(Some(1000), "bye".into())]
        );
        assert_eq!(events(&frame(0x88, b"")), [Close(None, String::new())]);
    }

    #[test]
    fn close_payload_of_length_1_is_protocol_error_1002() {
        assert_eq!(failed(&frame(0x88, &[3])), Failure::CloseBodyTooShort);
        assert_eq!(Failure::CloseBodyTooShort.close_code(), 1002);
    }

    #[test]
    fn close_codes_follow_the_registry_else_1002() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert_eq!(
                events(&close(code, b"")),
                [Close(Some(code), String::new())],
                "{code}"
            );
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                failed(&close(code, b"")),
                Failure::InvalidCloseCode(code),
                "{code}"
            );
            assert_eq!(Failure::InvalidCloseCode(code).close_code(), 1002);
        }
    }

    #[test]
    fn close_reason_must_be_valid_utf8_else_1007() {
        assert_eq!(
            failed(&close(1000, &[0xCE, 0xBA, 0xFF])),
            Failure::InvalidCloseReason
        );
        assert_eq!(Failure::InvalidCloseReason.close_code(), 1007);
    }

    #[test]
    fn input_after_close_is_ignored() {
        let bytes = cat(&[close(1000, b""), text("late"), vec![0xFF, 0x00]]);
        let mut s = Session::default();
        assert_eq!(feed(&mut s, &bytes, 3), [Close(Some(1000), String::new())]);
        assert!(s.is_done());
    }

    #[test]
    fn input_after_failure_is_ignored() {
        let bytes = cat(&[frame(0x80, b""), text("late")]);
        let mut s = Session::default();
        assert_eq!(
            feed(&mut s, &bytes, 1),
            [Failed(Failure::UnexpectedContinuation)]
        );
        assert!(s.is_done());
        assert_eq!(s.receive(&mut text("more")), (10, None));
    }

    #[test]
    fn frame_over_max_frame_size_is_1009() {
        let config = Config {
            max_frame_size: 10,
            max_message_size: 100,
        };
        let mut s = Session::new(config);
        assert_eq!(feed(&mut s, &frame(0x82, &[0; 10]), 100).last(), Some(&End));
        // Fails on the header, before any payload.
        let evs = feed(&mut s, &frame(0x82, &[0; 11])[..8], 100);
        assert_eq!(evs, [Failed(Failure::FrameTooBig)]);
        assert_eq!(Failure::FrameTooBig.close_code(), 1009);
    }

    #[test]
    fn message_over_max_message_size_is_1009_message_too_big() {
        let config = Config {
            max_frame_size: 10,
            max_message_size: 15,
        };
        let mut s = Session::new(config);
        let ok = cat(&[frame(0x02, &[0; 10]), frame(0x80, &[0; 5])]);
        assert_eq!(feed(&mut s, &ok, 7).last(), Some(&End));
        let too_big = cat(&[frame(0x02, &[0; 10]), frame(0x80, &[0; 6])]);
        let evs = feed(&mut s, &too_big, 7);
        assert_eq!(evs.last(), Some(&Failed(Failure::MessageTooBig)));
        assert_eq!(Failure::MessageTooBig.close_code(), 1009);
        assert_eq!(Failure::MessageTooBig.reason(), "message too big");
    }

    #[test]
    fn data_is_unmasked_in_place_in_the_caller_buffer() {
        let mut bytes = text("abc");
        let mut s = Session::default();
        let (n, ev) = s.receive(&mut bytes);
        assert_eq!((n, ev), (6, Some(Event::MessageStart(MessageKind::Text))));
        let (n, ev) = s.receive(&mut bytes[6..]);
        assert_eq!((n, ev), (3, Some(Event::MessageData(b"abc"))));
        assert_eq!(&bytes[6..], b"abc");
        assert!(!s.is_at_frame_boundary());
        let (n, ev) = s.receive(&mut []);
        assert_eq!((n, ev), (0, Some(Event::MessageEnd)));
        assert!(s.is_at_frame_boundary());
        assert_eq!(s.receive(&mut []), (0, None));
    }

    #[test]
    fn message_ends_here_marks_the_last_piece_of_a_valid_message_only() {
        let mut session = Session::default();
        // Fragmented text "héllo" split inside the two-byte "é", then a binary message.
        let word = "h\u{e9}llo".as_bytes();
        let mut input = frame(0x01, &word[..2]);
        input.extend(frame(0x80, &word[2..]));
        input.extend(frame(0x82, b"xy"));
        let mut ends = Vec::new();
        let mut pos = 0;
        loop {
            let (n, event) = session.receive(&mut input[pos..]);
            pos += n;
            match event {
                None => break,
                Some(Event::MessageData(piece)) => {
                    let piece = piece.to_vec();
                    ends.push((piece, session.message_ends_here()));
                }
                Some(_) => {}
            }
        }
        assert_eq!(
            ends,
            vec![
                (word[..2].to_vec(), false),
                (word[2..].to_vec(), true),
                (b"xy".to_vec(), true)
            ]
        );
        // A text message that ends inside a code point is not complete: MessageEnd fails.
        let mut session = Session::default();
        let mut input = frame(0x81, &word[..2]);
        let (_, event) = session.receive(&mut input);
        assert!(matches!(
            event,
            Some(Event::MessageStart(MessageKind::Text))
        ));
        let (_, event) = session.receive(&mut []);
        assert!(event.is_none());
        let mut rest = input.clone();
        let at = rest.len() - 2;
        let (_, event) = session.receive(&mut rest[at..]);
        assert!(matches!(event, Some(Event::MessageData(_))));
        assert!(!session.message_ends_here());
    }
}
