//! Specification of frame layouts and flow-control arithmetic.

use streams::frame::{self, Frame};
use streams::{ring, FlowViolation, Header, RecvWindow, SendWindow, SharedMapping};

fn frames_of(writer_fill: impl FnOnce(&mut streams::RingWriter)) -> Vec<(u32, Vec<u8>)> {
    let (mut writer, mut reader) = ring(SharedMapping::anonymous(4096, "t").unwrap());
    writer_fill(&mut writer);
    writer.publish();
    let mut out = Vec::new();
    reader.read(usize::MAX, |t, p| out.push((t, p.to_vec())));
    out
}

#[test]
fn every_frame_type_round_trips_through_a_ring() {
    let header = Header {
        stream_id: 7,
        trace_id: 11,
        timestamp: 13,
        sequence: 17,
        acknowledge: 19,
        maximum: 23,
    };
    let frames = frames_of(|w| {
        w.begin(&header, 99, b"GET /").unwrap();
        w.data(
            &header,
            frame::FLAG_INIT | frame::FLAG_FIN,
            42,
            b"ext",
            b"payload",
        )
        .unwrap();
        w.end(&header, b"").unwrap();
        w.abort(&header, b"why").unwrap();
        w.reset(&header, b"").unwrap();
        w.flush(&header, b"f").unwrap();
        w.window(
            &Header {
                stream_id: 8,
                acknowledge: 1000,
                maximum: 65536,
                ..Header::default()
            },
            5,
        )
        .unwrap();
        w.signal(&header, 3, b"sig").unwrap();
    });
    let kinds: Vec<&str> = frames.iter().map(|(t, _)| frame::type_name(*t)).collect();
    assert_eq!(
        kinds,
        ["BEGIN", "DATA", "END", "ABORT", "RESET", "FLUSH", "WINDOW", "SIGNAL"]
    );

    let begin = Frame::new(frames[0].0, &frames[0].1).unwrap();
    assert_eq!(begin.header(), header);
    assert_eq!((begin.affinity(), begin.extension()), (99, &b"GET /"[..]));

    let data = Frame::new(frames[1].0, &frames[1].1).unwrap();
    assert_eq!(data.flags(), frame::FLAG_INIT | frame::FLAG_FIN);
    assert_eq!(
        (data.reserved(), data.extension(), data.payload()),
        (42, &b"ext"[..], &b"payload"[..])
    );

    assert_eq!(
        Frame::new(frames[3].0, &frames[3].1).unwrap().extension(),
        b"why"
    );
    let window = Frame::new(frames[6].0, &frames[6].1).unwrap();
    assert_eq!(
        (
            window.stream_id(),
            window.acknowledge(),
            window.maximum(),
            window.padding()
        ),
        (8, 1000, 65536, 5)
    );
    let signal = Frame::new(frames[7].0, &frames[7].1).unwrap();
    assert_eq!((signal.signal_id(), signal.payload()), (3, &b"sig"[..]));
}

#[test]
fn data_can_be_claimed_written_in_place_and_trimmed() {
    let frames = frames_of(|w| {
        let out = w.claim_data(&Header::new(1), 0, 400, b"", 400).unwrap();
        out[..4].copy_from_slice(b"read");
        w.trim_data(4, 4);
    });
    let data = Frame::new(frames[0].0, &frames[0].1).unwrap();
    assert_eq!((data.payload(), data.reserved()), (&b"read"[..], 4));
}

#[test]
fn malformed_frames_are_rejected_not_trusted() {
    assert!(Frame::new(frame::DATA, &[0; 10]).is_err());
    let mut bad = vec![0u8; 60];
    bad[52..56].copy_from_slice(&100u32.to_le_bytes()); // extension longer than the frame
    assert!(Frame::new(frame::DATA, &bad).is_err());
    assert!(Frame::new(0x1234, &[0; 64]).is_err());
}

#[test]
fn stream_ids_pair_initial_odd_with_reply_even() {
    assert!(!frame::is_reply(5));
    assert_eq!(frame::peer_stream(5), 4);
    assert_eq!(frame::peer_stream(4), 5);
}

#[test]
fn a_sender_never_exceeds_the_granted_window_including_padding() {
    let mut send = SendWindow::default();
    assert_eq!(send.writable(100), 0, "no credit before the first WINDOW");
    send.on_window(0, 100, 10);
    assert_eq!(send.writable(1000), 90);
    assert_eq!(send.consume(90), 100);
    assert_eq!(send.writable(1), 0);
    send.on_window(50, 100, 10);
    assert_eq!(send.writable(1000), 40);
    send.on_window(20, 100, 10); // stale WINDOW: ignored
    assert_eq!(send.writable(1000), 40);
}

#[test]
fn a_receiver_detects_a_window_violation_and_batches_window_updates() {
    let mut recv = RecvWindow::new(100);
    assert!(recv.window_due(), "the first grant is always due");
    assert_eq!(recv.announce(), (0, 100));
    recv.on_data(60).unwrap();
    assert_eq!(
        recv.on_data(41),
        Err(FlowViolation {
            sequence: 60,
            reserved: 41,
            acknowledge: 0,
            maximum: 100
        })
    );
    recv.release(40);
    assert!(!recv.window_due(), "less than half the window released");
    recv.release(20);
    assert!(recv.window_due());
    assert_eq!(recv.announce(), (60, 100));
    recv.on_data(100).unwrap();
}

/// The header of the open records below: stream 8, its data from sequence 100.
fn open_header() -> Header {
    Header {
        stream_id: 8,
        sequence: 100,
        ..Header::default()
    }
}

#[test]
fn a_begin_and_its_data_round_trip_in_one_open_record() {
    let header = open_header();
    let frames = frames_of(|w| {
        w.begin_data(&header, frame::FLAG_FIN, 13, b"head", b"Hello, World!")
            .unwrap();
        w.data(&header, 0, 2, b"", b"no").unwrap();
    });
    assert_eq!(frames.len(), 2, "one record for BEGIN, DATA and END");
    let open = Frame::new(frames[0].0, &frames[0].1).unwrap();
    assert_eq!(open.type_id(), frame::DATA);
    assert_eq!(open.flags(), frame::FLAG_OPEN | frame::FLAG_FIN);
    assert_eq!(
        (
            open.sequence(),
            open.reserved(),
            open.extension(),
            open.payload()
        ),
        (100, 13, &b"head"[..], &b"Hello, World!"[..])
    );
    // Layout: the flag in the header word, the extension's length at 52, then the bytes.
    let bytes = &frames[0].1;
    assert_eq!(bytes[frame::WORD_OFFSET], 0x05);
    assert_eq!(bytes[frame::DATA_EXTENSION_LENGTH_OFFSET], 4);
    assert_eq!(&bytes[frame::DATA_EXTENSION_OFFSET..][..4], b"head");
    let plain = Frame::new(frames[1].0, &frames[1].1).unwrap();
    assert_eq!(plain.flags() & frame::FLAG_OPEN, 0);
}

#[test]
fn an_open_record_written_from_joined_bytes_is_the_one_written_from_two() {
    let header = open_header();
    let frames = frames_of(|w| {
        w.begin_data(&header, frame::FLAG_FIN, 13, b"head", b"Hello, World!")
            .unwrap();
        w.begin_data_joined(&header, frame::FLAG_FIN, 13, b"headHello, World!", 4)
            .unwrap();
        w.begin_data(&header, 0, 0, b"", b"").unwrap();
        w.begin_data_joined(&header, 0, 0, b"", 0).unwrap();
        w.begin_data(&header, 0, 0, b"only", b"").unwrap();
        w.begin_data_joined(&header, 0, 0, b"only", 4).unwrap();
    });
    assert_eq!(frames.len(), 6);
    for pair in frames.chunks(2) {
        assert_eq!(pair[0], pair[1]);
    }
}

#[test]
#[should_panic(expected = "the extension lies within the joined bytes")]
fn a_joined_extension_longer_than_the_bytes_panics() {
    frames_of(|w| {
        let _ = w.begin_data_joined(&Header::new(8), 0, 0, b"ab", 3);
    });
}

#[test]
fn an_open_record_with_a_head_longer_than_the_frame_is_refused() {
    let mut bytes = frames_of(|w| {
        w.begin_data(&Header::new(8), frame::FLAG_FIN, 2, b"head", b"ok")
            .unwrap();
    })
    .remove(0)
    .1;
    let available = bytes.len() - frame::DATA_EXTENSION_OFFSET;
    bytes[frame::DATA_EXTENSION_LENGTH_OFFSET..][..4]
        .copy_from_slice(&(available as u32 + 1).to_le_bytes());
    assert!(matches!(
        Frame::new(frame::DATA, &bytes),
        Err(frame::FrameError::BadExtension { .. })
    ));
    // An extension that takes every byte leaves an empty body, not a misread one.
    bytes[frame::DATA_EXTENSION_LENGTH_OFFSET..][..4]
        .copy_from_slice(&(available as u32).to_le_bytes());
    assert_eq!(Frame::new(frame::DATA, &bytes).unwrap().payload(), b"");
}
