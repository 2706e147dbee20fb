//! Property tests, with tungstenite as the oracle for client framing and header parsing.

use nukleus_ws::{
    encode_header, is_valid_close_code, Config, Event, HeaderDecoder, MessageKind, OpCode, Session,
    Utf8Validator, MAX_SERVER_HEADER_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode as TOpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader as TFrameHeader};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Start(MessageKind),
    Data(Vec<u8>),
    End,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Failed(u16),
}

/// Feeds `bytes` split at `cuts`, collecting events with adjacent data pieces merged.
fn feed(session: &mut Session, bytes: &[u8], cuts: &[usize]) -> Vec<Ev> {
    let mut events: Vec<Ev> = Vec::new();
    let mut bounds: Vec<usize> = cuts.to_vec();
    bounds.push(0);
    bounds.push(bytes.len());
    bounds.sort_unstable();
    for w in bounds.windows(2) {
        let mut buf = bytes[w[0]..w[1]].to_vec();
        let mut pos = 0;
        loop {
            let (n, event) = session.receive(&mut buf[pos..]);
            pos += n;
            let Some(event) = event else { break };
            let ev = match event {
                Event::MessageStart(kind) => Ev::Start(kind),
                Event::MessageData(d) => {
                    assert!(!d.is_empty());
                    if let Some(Ev::Data(prev)) = events.last_mut() {
                        prev.extend_from_slice(d);
                        continue;
                    }
                    Ev::Data(d.to_vec())
                }
                Event::MessageEnd => Ev::End,
                Event::Ping(p) => Ev::Ping(p.to_vec()),
                Event::Pong(p) => Ev::Pong(p.to_vec()),
                Event::Close { code, reason } => Ev::Close(code, reason.to_owned()),
                Event::Failed(f) => Ev::Failed(f.close_code()),
            };
            events.push(ev);
        }
        assert_eq!(pos, buf.len(), "None returned with input left");
    }
    events
}

fn client_frame(opcode: TOpCode, fin: bool, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let header = TFrameHeader {
        is_final: fin,
        opcode,
        mask: Some(mask),
        ..TFrameHeader::default()
    };
    Frame::from_payload(header, payload.to_vec().into())
        .format(out)
        .expect("write to Vec");
}

#[derive(Debug, Clone)]
enum Item {
    Message {
        kind: MessageKind,
        payload: Vec<u8>,
        /// Frame boundaries, as indexes into the payload (may split code points).
        cuts: Vec<Index>,
        /// A ping to interleave after each non-final fragment, if any.
        pings: Vec<Option<Vec<u8>>>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn payload(kind: MessageKind) -> BoxedStrategy<Vec<u8>> {
    match kind {
        MessageKind::Text => prop_oneof![
            8 => vec(any::<char>(), 0..100).prop_map(|c| String::from_iter(c).into_bytes()),
            1 => "[a-z]{65536,66000}".prop_map(String::into_bytes),
        ]
        .boxed(),
        MessageKind::Binary => prop_oneof![
            8 => vec(any::<u8>(), 0..300),
            1 => vec(any::<u8>(), 65_530..70_000),
        ]
        .boxed(),
    }
}

fn item() -> impl Strategy<Value = Item> {
    let control = vec(any::<u8>(), 0..=125);
    prop_oneof![
        6 => prop_oneof![Just(MessageKind::Text), Just(MessageKind::Binary)]
            .prop_flat_map(|kind| (
                Just(kind),
                payload(kind),
                vec(any::<Index>(), 0..6),
                vec(proptest::option::weighted(0.3, vec(any::<u8>(), 0..=125)), 6),
            ))
            .prop_map(|(kind, payload, cuts, pings)| Item::Message { kind, payload, cuts, pings }),
        1 => control.clone().prop_map(Item::Ping),
        1 => control.prop_map(Item::Pong),
    ]
}

fn close_frame() -> impl Strategy<Value = Option<(u16, String)>> {
    proptest::option::of((
        (1000u16..5000).prop_filter("valid", |c| is_valid_close_code(*c)),
        vec(any::<char>(), 0..30).prop_map(|c| {
            let mut s = String::from_iter(c);
            while s.len() > 123 {
                s.pop();
            }
            s
        }),
    ))
}

/// Encodes the items as client frames and the events the session must report for them.
fn encode(items: &[Item], close: &Option<(u16, String)>, masks: &[[u8; 4]]) -> (Vec<u8>, Vec<Ev>) {
    let mut wire = Vec::new();
    let mut expected: Vec<Ev> = Vec::new();
    let mut masks = masks.iter().copied().cycle();
    let push_data = |expected: &mut Vec<Ev>, data: &[u8]| {
        if data.is_empty() {
            return;
        }
        if let Some(Ev::Data(prev)) = expected.last_mut() {
            prev.extend_from_slice(data);
        } else {
            expected.push(Ev::Data(data.to_vec()));
        }
    };
    for item in items {
        match item {
            Item::Message {
                kind,
                payload,
                cuts,
                pings,
            } => {
                let mut bounds: Vec<usize> =
                    cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                bounds.push(0);
                bounds.push(payload.len());
                bounds.sort_unstable();
                expected.push(Ev::Start(*kind));
                let frames = bounds.len() - 1;
                for (i, w) in bounds.windows(2).enumerate() {
                    let opcode = match (i, kind) {
                        (0, MessageKind::Text) => TOpCode::Data(Data::Text),
                        (0, MessageKind::Binary) => TOpCode::Data(Data::Binary),
                        _ => TOpCode::Data(Data::Continue),
                    };
                    let fin = i == frames - 1;
                    let piece = &payload[w[0]..w[1]];
                    client_frame(opcode, fin, piece, masks.next().unwrap(), &mut wire);
                    push_data(&mut expected, piece);
                    if let (false, Some(Some(ping))) = (fin, pings.get(i)) {
                        client_frame(
                            TOpCode::Control(Control::Ping),
                            true,
                            ping,
                            masks.next().unwrap(),
                            &mut wire,
                        );
                        expected.push(Ev::Ping(ping.clone()));
                    }
                }
                expected.push(Ev::End);
            }
            Item::Ping(p) => {
                client_frame(
                    TOpCode::Control(Control::Ping),
                    true,
                    p,
                    masks.next().unwrap(),
                    &mut wire,
                );
                expected.push(Ev::Ping(p.clone()));
            }
            Item::Pong(p) => {
                client_frame(
                    TOpCode::Control(Control::Pong),
                    true,
                    p,
                    masks.next().unwrap(),
                    &mut wire,
                );
                expected.push(Ev::Pong(p.clone()));
            }
        }
    }
    if let Some((code, reason)) = close {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(reason.as_bytes());
        client_frame(
            TOpCode::Control(Control::Close),
            true,
            &body,
            masks.next().unwrap(),
            &mut wire,
        );
        expected.push(Ev::Close(Some(*code), reason.clone()));
        // Whatever follows a close is ignored, even garbage.
        wire.extend_from_slice(&[0xFF, 0x00, 0x13, 0x37]);
    }
    (wire, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random messages, fragmented at random (code points split across frames), with pings
    /// interleaved, fed in random splits, come out exactly as sent.
    #[test]
    fn messages_round_trip_through_any_fragmentation_and_split(
        items in vec(item(), 0..8),
        close in close_frame(),
        masks in vec(any::<[u8; 4]>(), 1..8),
        splits in vec(any::<Index>(), 0..40),
    ) {
        let (wire, expected) = encode(&items, &close, &masks);
        let cuts: Vec<usize> = splits.iter().map(|i| i.index(wire.len() + 1)).collect();
        let mut session = Session::new(Config::default());
        prop_assert_eq!(feed(&mut session, &wire, &cuts), expected);
        prop_assert_eq!(session.is_done(), close.is_some());
        if close.is_none() {
            prop_assert!(session.is_at_frame_boundary());
        }
    }

    /// The incremental validator agrees with `std::str::from_utf8` however the bytes are
    /// split, and fails in the very piece holding the byte that makes the input invalid.
    #[test]
    fn utf8_validator_agrees_with_std_and_fails_fast(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..64),
            (vec(any::<char>(), 0..32), vec((any::<Index>(), any::<u8>()), 0..3)).prop_map(|(chars, edits)| {
                let mut b = String::from_iter(chars).into_bytes();
                for (at, byte) in edits {
                    if !b.is_empty() {
                        let i = at.index(b.len());
                        b[i] = byte;
                    }
                }
                b
            }),
            vec(any::<char>(), 0..32).prop_map(|c| String::from_iter(c).into_bytes()),
        ],
        splits in vec(any::<Index>(), 0..10),
    ) {
        let mut bounds: Vec<usize> = splits.iter().map(|i| i.index(bytes.len() + 1)).collect();
        bounds.push(0);
        bounds.push(bytes.len());
        bounds.sort_unstable();
        let mut v = Utf8Validator::new();
        let mut failed_in: Option<(usize, usize)> = None;
        for w in bounds.windows(2) {
            if v.feed(&bytes[w[0]..w[1]]).is_err() {
                failed_in = Some((w[0], w[1]));
                break;
            }
        }
        let ours = failed_in.is_none() && v.finish().is_ok();
        let std_result = std::str::from_utf8(&bytes);
        prop_assert_eq!(ours, std_result.is_ok());
        if let Err(e) = std_result {
            match e.error_len() {
                // Truncated at the end: only `finish` can tell.
                None => prop_assert_eq!(failed_in, None),
                Some(len) => {
                    let at = e.valid_up_to();
                    // A possible lead byte is invalid only through the byte after its prefix.
                    let detected = if (0xC2..=0xF4).contains(&bytes[at]) { at + len } else { at };
                    let (start, end) = failed_in.expect("invalid input must fail before finish");
                    prop_assert!(start <= detected && detected < end, "detected at {} failed in {}..{}", detected, start, end);
                }
            }
        }
    }

    /// Headers tungstenite writes for clients decode the same, split anywhere.
    #[test]
    fn header_decoder_agrees_with_tungstenite(
        fin in any::<bool>(),
        op in 0usize..6,
        len in prop_oneof![0u64..=125, 126u64..=65_535, 65_536u64..(1 << 40)],
        mask in any::<[u8; 4]>(),
        split in any::<Index>(),
    ) {
        let ops = [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong];
        let opcode = ops[op];
        let (fin, len) = if opcode.is_control() { (true, len % 126) } else { (fin, len) };
        let header = TFrameHeader {
            is_final: fin,
            opcode: TOpCode::from(opcode as u8),
            mask: Some(mask),
            ..TFrameHeader::default()
        };
        let mut wire = Vec::new();
        header.format(len, &mut wire).unwrap();
        let cut = split.index(wire.len() + 1);
        let mut d = HeaderDecoder::new();
        let (n1, first) = d.decode(&wire[..cut]).unwrap();
        let (n2, second) = d.decode(&wire[cut..]).unwrap();
        prop_assert_eq!(n1 + n2, wire.len());
        let decoded = first.or(second).expect("complete header");
        prop_assert_eq!((decoded.fin, decoded.opcode, decoded.mask, decoded.payload_len), (fin, opcode, mask, len));
    }

    /// Server headers parse in tungstenite as written: unmasked, same fields.
    #[test]
    fn encoded_server_headers_parse_in_tungstenite(
        fin in any::<bool>(),
        binary in any::<bool>(),
        len in prop_oneof![0u64..=125, 126u64..=65_535, 65_536u64..(1 << 62)],
    ) {
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        let mut out = [0u8; MAX_SERVER_HEADER_LEN];
        let n = encode_header(fin, opcode, len, &mut out);
        let mut cursor = Cursor::new(&out[..n]);
        let (header, parsed_len) = TFrameHeader::parse(&mut cursor).unwrap().expect("complete");
        prop_assert_eq!(cursor.position() as usize, n);
        prop_assert_eq!(parsed_len, len);
        prop_assert_eq!(header.is_final, fin);
        prop_assert_eq!(header.mask, None);
        prop_assert_eq!(u8::from(header.opcode), opcode as u8);
    }

    /// Arbitrary bytes never panic the session; it consumes everything it is given and
    /// reports nothing after a close or a failure.
    #[test]
    fn arbitrary_input_never_panics(bytes in vec(any::<u8>(), 0..512), splits in vec(any::<Index>(), 0..8)) {
        let cuts: Vec<usize> = splits.iter().map(|i| i.index(bytes.len() + 1)).collect();
        let events = feed(&mut Session::default(), &bytes, &cuts);
        if let Some(i) = events.iter().position(|e| matches!(e, Ev::Close(..) | Ev::Failed(_))) {
            prop_assert_eq!(i, events.len() - 1);
        }
    }
}
