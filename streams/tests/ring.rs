//! Specification of the ring buffer: ordering, wrap-around, back-pressure, record sizes,
//! cross-thread transfer and cross-process observation.

use std::process::Command;

use streams::layout::{align_record, max_record_length, RECORD_HEADER_LENGTH};
use streams::{ring, ClaimError, RingSpy, SharedMapping, SpyMapping, SpyRecord};

fn anonymous_ring(capacity: usize) -> (streams::RingWriter, streams::RingReader) {
    ring(SharedMapping::anonymous(capacity, "test").unwrap())
}

fn drain(reader: &mut streams::RingReader) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    reader.read(usize::MAX, |t, p| out.push((t, p.to_vec())));
    out
}

#[test]
fn records_arrive_in_order_only_after_publish() {
    let (mut writer, mut reader) = anonymous_ring(1024);
    writer.claim(7, 3).unwrap().copy_from_slice(b"abc");
    writer.claim(8, 0).unwrap();
    assert!(
        drain(&mut reader).is_empty(),
        "unpublished records must be invisible"
    );
    assert!(writer.publish());
    assert_eq!(drain(&mut reader), vec![(7, b"abc".to_vec()), (8, vec![])]);
    assert!(!writer.publish(), "nothing new to publish");
}

#[test]
fn wrap_around_inserts_padding_that_the_reader_skips() {
    let capacity = 1024;
    let (mut writer, mut reader) = anonymous_ring(capacity);
    // 100-byte payload -> 108 -> 112 aligned; 9 records = 1008 bytes, leaving 16 at the end.
    for i in 0..9u8 {
        writer.claim(1, 100).unwrap().fill(i);
    }
    writer.publish();
    assert_eq!(drain(&mut reader).len(), 9);
    // The next 112-byte record does not fit in the 16 remaining bytes: padding, then wrap.
    writer.claim(2, 100).unwrap().fill(0xAB);
    writer.publish();
    let got = drain(&mut reader);
    assert_eq!(got, vec![(2, vec![0xAB; 100])]);
    for round in 0..50u8 {
        writer.claim(3, 37 + round as usize).unwrap().fill(round);
        writer.publish();
        assert_eq!(
            drain(&mut reader),
            vec![(3, vec![round; 37 + round as usize])]
        );
    }
}

#[test]
fn full_buffer_refuses_until_the_reader_consumes() {
    let capacity = 1024;
    let (mut writer, mut reader) = anonymous_ring(capacity);
    let payload = max_record_length(capacity) - RECORD_HEADER_LENGTH; // 120 -> 128-byte records
    for _ in 0..8 {
        writer.claim(1, payload).unwrap();
    }
    assert_eq!(writer.claim(1, 0), Err(ClaimError::Full));
    writer.publish();
    assert_eq!(reader.read(1, |_, _| {}), 1);
    assert!(
        writer.claim(1, payload).is_ok(),
        "one record consumed frees one record of space"
    );
    assert_eq!(writer.claim(1, 0), Err(ClaimError::Full));
}

#[test]
fn records_larger_than_an_eighth_of_capacity_are_refused() {
    let (mut writer, _reader) = anonymous_ring(4096);
    let max = writer.max_payload();
    assert!(writer.claim(1, max).is_ok());
    assert_eq!(
        writer.claim(1, max + 1),
        Err(ClaimError::TooLarge {
            length: max + 1 + RECORD_HEADER_LENGTH,
            max: 512
        })
    );
}

#[test]
fn every_record_size_up_to_the_maximum_round_trips() {
    let (mut writer, mut reader) = anonymous_ring(8192);
    for size in 0..=writer.max_payload() {
        let out = writer.claim(9, size).unwrap();
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i + size) as u8;
        }
        writer.publish();
        let mut seen = 0;
        reader.read(usize::MAX, |t, p| {
            assert_eq!(t, 9);
            assert_eq!(p.len(), size);
            assert!(p.iter().enumerate().all(|(i, b)| *b == (i + size) as u8));
            seen += 1;
        });
        assert_eq!(seen, 1, "size {size}");
    }
}

#[test]
fn trim_shrinks_the_last_record_and_reuses_the_space() {
    let (mut writer, mut reader) = anonymous_ring(1024);
    writer.claim(1, 100).unwrap()[..5].copy_from_slice(b"hello");
    writer.trim_last(5);
    writer.claim(2, 1).unwrap()[0] = b'!';
    writer.publish();
    assert_eq!(
        drain(&mut reader),
        vec![(1, b"hello".to_vec()), (2, b"!".to_vec())]
    );
    let stats = reader.watch().stats();
    assert_eq!(
        stats.tail,
        (align_record(8 + 5) + align_record(8 + 1)) as u64
    );
    assert_eq!(stats.records_written, 2);
}

#[test]
fn read_limit_bounds_the_work_of_one_poll() {
    let (mut writer, mut reader) = anonymous_ring(4096);
    for _ in 0..10 {
        writer.claim(1, 8).unwrap();
    }
    writer.publish();
    assert_eq!(reader.read(3, |_, _| {}), 3);
    assert_eq!(reader.read(100, |_, _| {}), 7);
}

#[test]
fn millions_of_records_cross_threads_intact_and_in_order() {
    const RECORDS: u64 = 3_000_000;
    let (mut writer, mut reader) = anonymous_ring(64 * 1024);
    let producer = std::thread::spawn(move || {
        let mut sequence = 0u64;
        while sequence < RECORDS {
            // Variable sizes (8..=200 bytes) so records straddle the wrap at every offset.
            let size = 8 + (sequence % 193) as usize;
            match writer.claim(1 + (sequence % 5) as u32, size) {
                Ok(out) => {
                    out[..8].copy_from_slice(&sequence.to_le_bytes());
                    for (i, b) in out[8..].iter_mut().enumerate() {
                        *b = (sequence as usize + i) as u8;
                    }
                    sequence += 1;
                    if sequence.is_multiple_of(16) {
                        writer.publish();
                    }
                }
                Err(ClaimError::Full) => {
                    writer.publish();
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        writer.publish();
    });
    let mut expected = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while expected < RECORDS {
        assert!(
            std::time::Instant::now() < deadline,
            "consumer stalled at {expected}"
        );
        let n = reader.read(1000, |t, p| {
            let sequence = u64::from_le_bytes(p[..8].try_into().unwrap());
            assert_eq!(sequence, expected, "out of order or lost");
            assert_eq!(t, 1 + (sequence % 5) as u32);
            assert_eq!(p.len(), 8 + (sequence % 193) as usize);
            assert!(
                p[8..]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (sequence as usize + i) as u8),
                "corrupt payload"
            );
            expected += 1;
        });
        if n == 0 {
            std::thread::yield_now();
        }
    }
    producer.join().unwrap();
}

/// Child side of `a_second_process_maps_the_file_read_only_and_sees_the_frames`: prints what
/// a spy sees in the file named by `REAKTOR_SPY_FILE`.
#[test]
fn spy_child_process() {
    let Ok(path) = std::env::var("REAKTOR_SPY_FILE") else {
        return; // only meaningful when started by the parent test
    };
    let mut spy = RingSpy::new(SpyMapping::open(path.as_ref()).unwrap());
    let mut payload = Vec::new();
    while let Some(record) = spy.next(&mut payload) {
        match record {
            SpyRecord::Record { type_id, .. } => {
                println!("SPY {type_id} {}", String::from_utf8_lossy(&payload))
            }
            SpyRecord::Lapped { missed } => println!("SPY LAPPED {missed}"),
        }
    }
    println!("SPY LABEL {} PID {}", spy.label(), spy.writer_pid());
}

#[test]
fn a_second_process_maps_the_file_read_only_and_sees_the_frames() {
    let dir = std::env::temp_dir().join(format!("reaktor-spy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("core0.tcp-http");
    let (mut writer, _reader) =
        ring(SharedMapping::create(&path, 4096, "core0 tcp -> http").unwrap());
    for word in ["alpha", "beta", "gamma"] {
        writer
            .claim(2, word.len())
            .unwrap()
            .copy_from_slice(word.as_bytes());
    }
    writer.publish();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spy_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REAKTOR_SPY_FILE", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest may print "test spy_child_process ... " on the same line as the first output.
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("SPY ").map(|at| &l[at..]))
        .collect();
    assert_eq!(
        lines,
        vec![
            "SPY 2 alpha",
            "SPY 2 beta",
            "SPY 2 gamma",
            &format!("SPY LABEL core0 tcp -> http PID {}", std::process::id()),
        ],
        "child output: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_spy_detects_being_lapped_and_resumes_at_the_consumer() {
    let dir = std::env::temp_dir().join(format!("reaktor-lap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ring");
    let (mut writer, mut reader) = ring(SharedMapping::create(&path, 1024, "lap").unwrap());
    let mut spy = RingSpy::new(SpyMapping::open(&path).unwrap());
    // Write and consume two full laps while the spy sleeps.
    for i in 0..40u8 {
        writer.claim(1, 56).unwrap().fill(i);
        writer.publish();
        reader.read(usize::MAX, |_, _| {});
    }
    writer.claim(1, 56).unwrap().fill(99);
    writer.publish();
    let mut payload = Vec::new();
    assert!(matches!(spy.next(&mut payload), Some(SpyRecord::Lapped { missed }) if missed > 1024));
    assert_eq!(
        spy.next(&mut payload),
        Some(SpyRecord::Record {
            position: 40 * 64,
            type_id: 1
        })
    );
    assert_eq!(payload, vec![99; 56]);
    assert_eq!(spy.next(&mut payload), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
