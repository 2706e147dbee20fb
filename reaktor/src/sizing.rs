//! Stream buffer sizing, checked before anything runs: whether `stream_capacity` can carry
//! what the placed kinds' settings put into one buffer (a full window of one stream, the
//! largest record written whole), and how much space the stream files take.
//!
//! A buffer too small for one window fills while every peer keeps within its credit, and the
//! writer resets the stream (a 64 KiB POST on `stream_capacity = 65536` was reset); a record
//! larger than an eighth of the buffer cannot be written at all. Sans-I/O: numbers in,
//! numbers or a message out.

use streams::frame;
use streams::layout::{file_length, max_record_length, RECORD_HEADER_LENGTH};

use crate::kind::StreamNeed;

/// What nuklei keep free of a record when they size a DATA payload (`max_payload() - 64`).
const DATA_ROOM_RESERVE: usize = 64;

/// Ring bytes a DATA frame takes beyond its payload: record header, DATA header and at most 7
/// bytes of alignment.
const DATA_OVERHEAD: usize = RECORD_HEADER_LENGTH + frame::DATA_EXTENSION_OFFSET + 7;

/// Bytes of a buffer of `capacity` that one stream's full `window` can occupy at once: the
/// payload in DATA frames of the largest size nuklei write, their headers, and a padding
/// record of up to one record at the wrap-around.
pub fn window_footprint(window: usize, capacity: usize) -> usize {
    let max_record = max_record_length(capacity);
    let payload_per_frame = max_record - RECORD_HEADER_LENGTH - DATA_ROOM_RESERVE;
    window + window.div_ceil(payload_per_frame) * DATA_OVERHEAD + max_record
}

/// Whether a buffer of `capacity` carries `need`.
pub fn carries(need: &StreamNeed, capacity: usize) -> bool {
    match need {
        StreamNeed::Window { bytes, .. } => window_footprint(*bytes, capacity) <= capacity,
        StreamNeed::Record { bytes, .. } => {
            streams::layout::align_record(*bytes) <= max_record_length(capacity)
        }
    }
}

/// Why a buffer of `capacity` cannot carry `need`.
fn shortfall(need: &StreamNeed, capacity: usize) -> String {
    match need {
        StreamNeed::Window { setting, bytes } => format!(
            "{setting} needs {} bytes in one buffer",
            window_footprint(*bytes, capacity)
        ),
        StreamNeed::Record { setting, bytes } => format!(
            "{setting} needs records of {bytes} bytes, and a buffer of {capacity} takes \
             records of at most {} (an eighth)",
            max_record_length(capacity)
        ),
    }
}

/// Checks that buffers of `capacity` carry every need; the error names each unmet one and
/// the smallest capacity that carries them all.
pub fn check_capacity(capacity: usize, needs: &[StreamNeed]) -> Result<(), String> {
    let unmet: Vec<String> = needs
        .iter()
        .filter(|n| !carries(n, capacity))
        .map(|n| shortfall(n, capacity))
        .collect();
    if unmet.is_empty() {
        return Ok(());
    }
    let mut enough = capacity.next_power_of_two().max(1024);
    while enough < streams::layout::MAX_CAPACITY && !needs.iter().all(|n| carries(n, enough)) {
        enough *= 2;
    }
    Err(format!(
        "stream_capacity {capacity} cannot carry the configured windows and frame sizes: {} \
         (one stream's full window, in DATA frames with their headers plus a record of padding \
         at the wrap-around, must fit in one buffer); use stream_capacity = {enough} or more, \
         or lower those settings",
        unmet.join("; ")
    ))
}

/// Bytes the stream files of `rings` buffers of `capacity` take on disk.
pub fn stream_space(rings: usize, capacity: usize) -> u64 {
    rings as u64 * file_length(capacity) as u64
}

/// `n` bytes for people, exactly too: `16.0 MiB (16777216 bytes)`.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB ({n} bytes)", n as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(bytes: usize) -> StreamNeed {
        StreamNeed::Window {
            setting: format!("[http] window = {bytes}"),
            bytes,
        }
    }

    #[test]
    fn a_window_as_large_as_the_buffer_does_not_fit_in_it() {
        // 65536 bytes in frames of at most 8120: 9 frames, 71 bytes of overhead each, and a
        // record of padding at the wrap.
        assert_eq!(window_footprint(65536, 65536), 65536 + 9 * 71 + 8192);
        assert!(!carries(&window(65536), 65536));
        assert!(carries(&window(65536), 131072));
        assert!(carries(&window(16384), 65536));
    }

    #[test]
    fn a_record_must_fit_in_an_eighth_of_the_buffer() {
        let head = |bytes| StreamNeed::Record {
            setting: "[http] max_header_bytes = 8192".into(),
            bytes,
        };
        assert!(carries(&head(8192), 65536));
        assert!(!carries(&head(8193), 65536));
        assert!(carries(&head(8256), 131072));
    }

    #[test]
    fn the_error_names_every_unmet_setting_and_a_capacity_that_works() {
        let needs = [
            window(65536),
            window(4096),
            StreamNeed::Record {
                setting: "[http] max_header_bytes = 8192".into(),
                bytes: 8256,
            },
        ];
        let e = check_capacity(65536, &needs).unwrap_err();
        assert!(e.contains("[http] window = 65536 needs 74367 bytes"), "{e}");
        assert!(!e.contains("window = 4096"), "{e}");
        assert!(
            e.contains("[http] max_header_bytes = 8192 needs records of 8256"),
            "{e}"
        );
        assert!(e.contains("use stream_capacity = 131072 or more"), "{e}");
        assert_eq!(check_capacity(131072, &needs), Ok(()));
        assert_eq!(check_capacity(65536, &[window(4096)]), Ok(()));
    }

    #[test]
    fn stream_space_counts_header_and_trailer_of_every_file() {
        assert_eq!(stream_space(58, 16 << 20), 58 * (16 << 20) + 58 * 640);
        assert_eq!(mib(16 << 20), "16.0 MiB (16777216 bytes)");
    }
}
