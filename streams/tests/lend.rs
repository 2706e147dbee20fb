//! Specification of lent frames (`RingWriter::lend`, `give_back`, `lend_data`): a claimed
//! record filled by code that does not hold the writer, trimmed to what it wrote, never
//! visible to the reader while it is lent, and ordered with the records around it.

use streams::frame::{self, Frame};
use streams::layout::{align_record, max_record_length, RECORD_HEADER_LENGTH};
use streams::{ring, ClaimError, Header, RingReader, RingWriter, SharedMapping};

fn anonymous_ring(capacity: usize) -> (RingWriter, RingReader) {
    ring(SharedMapping::anonymous(capacity, "lend").unwrap())
}

fn drain(reader: &mut RingReader) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    reader.read(usize::MAX, |t, p| out.push((t, p.to_vec())));
    out
}

#[test]
fn a_lent_frame_is_filled_given_back_trimmed_and_published() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let mut frame = writer.lend(5, 1, 100).unwrap();
    assert_eq!(frame.len(), 100);
    frame.bytes()[..3].copy_from_slice(b"abc");
    assert!(!writer.publish(), "a lent frame is not published");
    assert!(drain(&mut reader).is_empty());
    writer.give_back(frame, 3);
    assert!(writer.publish());
    assert_eq!(drain(&mut reader), vec![(5, b"abc".to_vec())]);
    // The space beyond the 3 bytes went back to the ring: the next record follows at once.
    writer.claim(6, 1).unwrap()[0] = 9;
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(6, vec![9])]);
    assert_eq!(
        reader.watch().stats().bytes_written,
        (align_record(RECORD_HEADER_LENGTH + 3) + align_record(RECORD_HEADER_LENGTH + 1)) as u64
    );
}

#[test]
fn a_frame_given_back_last_is_the_one_trim_last_trims() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let mut frame = writer.lend(5, 1, 100).unwrap();
    frame.bytes()[..10].copy_from_slice(b"0123456789");
    writer.give_back(frame, 10);
    writer.trim_last(4);
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(5, b"0123".to_vec())]);
}

#[test]
fn publishing_while_lent_publishes_only_the_records_before_it() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    writer.claim(1, 2).unwrap().copy_from_slice(b"xy");
    let mut frame = writer.lend(2, 1, 64).unwrap();
    // Claimed after the lent frame: stays behind it.
    writer.claim(3, 1).unwrap()[0] = b'z';
    assert!(writer.publish());
    assert_eq!(drain(&mut reader), vec![(1, b"xy".to_vec())]);
    assert!(!writer.publish(), "nothing more before the lent frame");
    frame.bytes()[..4].copy_from_slice(b"lent");
    writer.give_back(frame, 4);
    assert!(writer.publish());
    // Its unused space became padding, which the reader skips: the order is kept.
    assert_eq!(
        drain(&mut reader),
        vec![(2, b"lent".to_vec()), (3, b"z".to_vec())]
    );
}

#[test]
fn a_frame_given_back_unused_is_dropped() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let frame = writer.lend(2, 0, 64).unwrap();
    writer.give_back(frame, 0);
    assert!(
        !writer.publish(),
        "the last record dropped: nothing to publish"
    );
    // Not the last record: it becomes padding.
    let frame = writer.lend(2, 0, 64).unwrap();
    writer.claim(3, 1).unwrap()[0] = 1;
    writer.give_back(frame, 0);
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(3, vec![1])]);
}

#[test]
fn a_frame_filled_exactly_to_its_end_is_kept_whole() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let mut frame = writer.lend(4, 1, 61).unwrap();
    assert_eq!(frame.len(), 61);
    frame.bytes().fill(7);
    writer.claim(5, 0).unwrap();
    writer.give_back(frame, 61);
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(4, vec![7; 61]), (5, vec![])]);
}

#[test]
fn a_lend_takes_the_largest_record_that_fits_now() {
    let capacity = 1024;
    let (mut writer, mut reader) = anonymous_ring(capacity);
    // At most a record's maximum.
    let frame = writer.lend(1, 0, usize::MAX).unwrap();
    assert_eq!(
        frame.len(),
        max_record_length(capacity) - RECORD_HEADER_LENGTH
    );
    writer.give_back(frame, 0);
    // Fill the ring to 112 bytes from full: the lend gets what is left, less its header.
    for _ in 0..8 {
        writer.claim(1, 104).unwrap();
    }
    writer.claim(1, 80).unwrap();
    let free = capacity - 8 * align_record(RECORD_HEADER_LENGTH + 104) - 88;
    let frame = writer.lend(2, 1, usize::MAX).unwrap();
    assert_eq!(frame.len(), free - RECORD_HEADER_LENGTH);
    writer.give_back(frame, 0);
    // Asking for more than fits is refused, and not counted as a refused record.
    assert_eq!(writer.lend(2, free, free).unwrap_err(), ClaimError::Full);
    assert_eq!(reader.watch().stats().full_count, 0);
    // Once the reader has consumed, the lend wraps: padding to the end, then the frame.
    writer.publish();
    assert_eq!(drain(&mut reader).len(), 9);
    let mut frame = writer.lend(2, 1, usize::MAX).unwrap();
    let before_end = free - RECORD_HEADER_LENGTH;
    assert!(
        frame.len() > before_end,
        "wrapped to the start for a larger frame"
    );
    frame.bytes()[..2].copy_from_slice(b"ok");
    writer.give_back(frame, 2);
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(2, b"ok".to_vec())]);
}

#[test]
fn a_full_ring_lends_nothing_until_the_reader_consumes() {
    let capacity = 1024;
    let (mut writer, mut reader) = anonymous_ring(capacity);
    let record = max_record_length(capacity) - RECORD_HEADER_LENGTH;
    for _ in 0..8 {
        writer.claim(1, record).unwrap();
    }
    assert_eq!(writer.lend(2, 0, 100).unwrap_err(), ClaimError::Full);
    writer.publish();
    assert_eq!(drain(&mut reader).len(), 8);
    let frame = writer.lend(2, 0, 100).unwrap();
    assert_eq!(frame.len(), 100);
    writer.give_back(frame, 0);
}

#[test]
fn deferred_records_go_before_a_lent_frame() {
    let capacity = 1024;
    let (mut writer, mut reader) = anonymous_ring(capacity);
    let record = max_record_length(capacity) - RECORD_HEADER_LENGTH;
    for _ in 0..8 {
        writer.claim(1, record).unwrap();
    }
    writer.write_or_defer(9, b"end");
    assert_eq!(writer.deferred(), 1);
    writer.publish();
    drain(&mut reader);
    let mut frame = writer.lend(2, 1, 100).unwrap();
    frame.bytes()[0] = b'!';
    writer.give_back(frame, 1);
    writer.publish();
    assert_eq!(
        drain(&mut reader),
        vec![(9, b"end".to_vec()), (2, b"!".to_vec())]
    );
}

#[test]
#[should_panic(expected = "one frame lent at a time")]
fn a_second_lend_before_the_first_is_back_panics() {
    let (mut writer, _reader) = anonymous_ring(4096);
    let _frame = writer.lend(1, 0, 8).unwrap();
    let _ = writer.lend(1, 0, 8);
}

#[test]
#[should_panic(expected = "goes back to the writer that lent it")]
fn a_frame_given_to_another_writer_panics() {
    let (mut writer, _reader) = anonymous_ring(4096);
    let (mut other, _other_reader) = anonymous_ring(4096);
    let _mine = other.lend(1, 0, 8).unwrap();
    let frame = writer.lend(1, 0, 8).unwrap();
    other.give_back(frame, 0);
}

#[test]
#[should_panic(expected = "used more than was lent")]
fn giving_back_more_than_was_lent_panics() {
    let (mut writer, _reader) = anonymous_ring(4096);
    let frame = writer.lend(1, 0, 8).unwrap();
    writer.give_back(frame, 9);
}

#[test]
fn a_lent_frame_can_be_filled_on_another_thread() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let frame = writer.lend(3, 1, 32).unwrap();
    let frame = std::thread::spawn(move || {
        let mut frame = frame;
        frame.bytes()[..5].copy_from_slice(b"there");
        frame
    })
    .join()
    .unwrap();
    writer.give_back(frame, 5);
    writer.publish();
    assert_eq!(drain(&mut reader), vec![(3, b"there".to_vec())]);
}

#[test]
fn a_lent_data_frame_reads_back_as_data_with_its_header() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    let header = Header::at(1, 77);
    let mut frame = writer.lend_data(&header, 1, 200).unwrap();
    assert_eq!(frame.len(), 200);
    frame.bytes()[..6].copy_from_slice(b"record");
    writer.give_back(frame, 6);
    // Dropped when nothing was written: no empty DATA frame.
    let frame = writer.lend_data(&header, 1, 200).unwrap();
    writer.give_back(frame, 0);
    writer.publish();
    let got = drain(&mut reader);
    assert_eq!(got.len(), 1);
    let f = Frame::new(got[0].0, &got[0].1).unwrap();
    assert_eq!(f.type_id(), frame::DATA);
    assert_eq!((f.stream_id(), f.timestamp(), f.flags()), (1, 77, 0));
    assert!(f.extension().is_empty());
    assert_eq!(f.payload(), b"record");
}

/// A record as the reader sees it: its type and payload.
type Record = (u32, Vec<u8>);

/// A tiny deterministic generator (xorshift64*), so the model test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

#[test]
fn lends_claims_and_reads_in_any_order_keep_every_record_in_order() {
    for seed in 1..=200u64 {
        let capacity = 1024 << (seed % 3);
        let (mut writer, mut reader) = anonymous_ring(capacity);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // The records the reader must see, in order, and those it saw.
        let mut expected: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut seen: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut lent: Option<(streams::LentFrame, usize, Vec<Record>)> = None;
        let mut next = 0u8;
        for _ in 0..300 {
            next = next.wrapping_add(1);
            match rng.below(5) {
                0 if lent.is_none() => {
                    if let Ok(frame) = writer.lend(2, 0, rng.below(capacity)) {
                        // Records claimed while it is out come after it.
                        let at = expected.len();
                        lent = Some((frame, at, Vec::new()));
                    }
                }
                1 => {
                    if let Some((mut frame, at, after)) = lent.take() {
                        let used = rng.below(frame.len() + 1);
                        frame.bytes()[..used].fill(next);
                        writer.give_back(frame, used);
                        let mut tail = expected.split_off(at);
                        if used > 0 {
                            expected.push((2, vec![next; used]));
                        }
                        assert_eq!(tail.len(), after.len());
                        expected.append(&mut tail);
                    }
                }
                2 => {
                    let len = rng.below(capacity / 8);
                    if let Ok(out) = writer.claim(1, len) {
                        out.fill(next);
                        expected.push((1, vec![next; len]));
                        if let Some((_, _, after)) = &mut lent {
                            after.push((1, vec![next; len]));
                        }
                    }
                }
                3 => {
                    writer.publish();
                }
                _ => seen.extend(drain(&mut reader)),
            }
            // The reader never sees a lent record or anything after it.
            let visible = lent.as_ref().map_or(expected.len(), |(_, at, _)| *at);
            assert!(seen.len() <= visible, "seed {seed}: read past a lent frame");
            assert_eq!(seen[..], expected[..seen.len()], "seed {seed}");
        }
        if let Some((frame, at, _)) = lent.take() {
            writer.give_back(frame, 0);
            let tail = expected.split_off(at);
            expected.extend(tail);
        }
        writer.publish();
        seen.extend(drain(&mut reader));
        assert_eq!(seen, expected, "seed {seed}");
    }
}
