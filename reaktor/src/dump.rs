//! `reaktor dump`: attach to a running reaktor from another process, map its stream files
//! read-only and print the frames that flow through them.
//!
//! Every stream file is opened with [`RingSpy`], which only reads: it never writes the
//! mapping (the mapping is read-only), never takes a lock and never makes the writer or the
//! reader wait, so a slow or stopped dump cannot slow the nuklei down. A spy that falls more
//! than a buffer behind is lapped: it reports how many bytes it missed and resumes at the
//! consumer's position.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use streams::frame::{self, Frame};
use streams::{RingSpy, SpyMapping, SpyRecord};

use crate::kind::preview;
use crate::kinds;
use crate::stats::STATS_FILE;
use crate::streamdir::{self, Liveness, OWNER_FILE};

/// Opens every stream file in `dir` (sorted by name). `from_tail`: see only frames published
/// from now on; otherwise also those the consumer has not read yet.
pub fn open_rings(dir: &Path, from_tail: bool) -> io::Result<Vec<RingSpy>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n != STATS_FILE && n != OWNER_FILE)
        })
        .collect();
    paths.sort();
    let mut spies = Vec::new();
    for path in paths {
        match SpyMapping::open(&path) {
            Ok(map) if from_tail => spies.push(RingSpy::from_tail(map)),
            Ok(map) => spies.push(RingSpy::new(map)),
            Err(e) => tracing::debug!(error = %e, "not a stream file, skipped"),
        }
    }
    if spies.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no stream files in {}", dir.display()),
        ));
    }
    Ok(spies)
}

/// `core0.http0` -> `http`.
pub fn kind_of(instance: &str) -> &str {
    let name = instance.split_once('.').map_or(instance, |(_, n)| n);
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// The writer and reader instance names of a ring label `"a -> b"`.
pub fn ends_of(label: &str) -> (&str, &str) {
    label.split_once(" -> ").unwrap_or((label, ""))
}

/// What is known about a BEGIN extension on a ring between kinds `from` and `to`: the kind on
/// the network side of the pair describes the protocol it offers.
fn begin_details(from: &str, to: &str, stream_id: u64, ext: &[u8]) -> String {
    let initial = !frame::is_reply(stream_id);
    kinds::network_side(from, to)
        .and_then(|k| k.describe_begin(initial, ext))
        .unwrap_or_default()
}

/// One line for a frame seen on the ring labelled `label`.
pub fn describe_frame(label: &str, type_id: u32, bytes: &[u8]) -> String {
    let (from, to) = ends_of(label);
    let (from_kind, to_kind) = (kind_of(from), kind_of(to));
    let f = match Frame::new(type_id, bytes) {
        Ok(f) => f,
        Err(e) => {
            return format!(
                "{label:<34} {:<7} len={} malformed: {e}",
                frame::type_name(type_id),
                bytes.len()
            )
        }
    };
    // A DATA flagged OPEN stands for a BEGIN (its extension) and a DATA (its payload).
    let opens = type_id == frame::DATA && f.flags() & frame::FLAG_OPEN != 0;
    let mut line = format!(
        "{:>12.6} {label:<34} {:<6} stream={:#018x} len={}",
        f.timestamp() as f64 / 1e9,
        if opens {
            "BEGIN+DATA"
        } else {
            frame::type_name(type_id)
        },
        f.stream_id(),
        bytes.len()
    );
    let details = match type_id {
        frame::BEGIN => begin_details(from_kind, to_kind, f.stream_id(), f.extension()),
        frame::DATA => {
            let mut d = String::new();
            if opens {
                d = begin_details(from_kind, to_kind, f.stream_id(), f.extension());
                if !d.is_empty() {
                    d.push_str("; ");
                }
            }
            d.push_str(&format!(
                "seq={} reserved={} payload={}",
                f.sequence(),
                f.reserved(),
                f.payload().len()
            ));
            let flags = f.flags();
            if flags & (frame::FLAG_INIT | frame::FLAG_FIN | frame::FLAG_OPEN) != 0 {
                d.push_str(&format!(
                    " flags={}{}{}",
                    if flags & frame::FLAG_OPEN != 0 {
                        "O"
                    } else {
                        ""
                    },
                    if flags & frame::FLAG_INIT != 0 {
                        "I"
                    } else {
                        ""
                    },
                    if flags & frame::FLAG_FIN != 0 {
                        "F"
                    } else {
                        ""
                    }
                ));
            }
            if let Some(word) = kinds::network_side(from_kind, to_kind)
                .filter(|_| !opens)
                .and_then(|k| k.describe_data(f.extension()))
            {
                d.push(' ');
                d.push_str(word);
            }
            let secret = [from_kind, to_kind]
                .iter()
                .any(|k| kinds::kind(k).is_some_and(|k| k.secret_payload()));
            if !f.payload().is_empty() && !secret {
                d.push_str(&format!(" \"{}\"", preview(f.payload(), 48)));
            }
            d
        }
        frame::WINDOW => format!(
            "ack={} max={} padding={}",
            f.acknowledge(),
            f.maximum(),
            f.padding()
        ),
        frame::END | frame::ABORT | frame::RESET | frame::FLUSH if !f.extension().is_empty() => {
            format!("ext=\"{}\"", preview(f.extension(), 48))
        }
        _ => String::new(),
    };
    if !details.is_empty() {
        line.push_str("  ");
        line.push_str(&details);
    }
    line
}

pub struct DumpOptions {
    pub dir: PathBuf,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Also print frames published before the dump started and not yet consumed.
    pub backlog: bool,
    /// Only rings whose label contains this text.
    pub filter: Option<String>,
}

/// Prints frames until a bound is reached or the reaktor exits; returns the frames printed.
pub fn dump(options: &DumpOptions, out: &mut dyn Write) -> io::Result<u64> {
    let mut spies = open_rings(&options.dir, !options.backlog)?;
    if let Some(filter) = &options.filter {
        spies.retain(|s| s.label().contains(filter.as_str()));
    }
    let pid = spies.first().map_or(0, |s| s.writer_pid());
    let gone = match streamdir::liveness(&options.dir) {
        Liveness::Gone(why) if !options.backlog => {
            return Err(io::Error::other(format!(
                "reaktor {pid} is not running ({why}); {} is what it left (`--backlog` prints \
                 the frames it did not consume; its next start in the same stream root removes \
                 the directory)",
                options.dir.display()
            )));
        }
        Liveness::Gone(why) => Some(why),
        _ => None,
    };
    writeln!(
        out,
        "# attached to {} stream buffers of reaktor {pid} in {}",
        spies.len(),
        options.dir.display()
    )?;
    if let Some(why) = &gone {
        writeln!(
            out,
            "# reaktor {pid} is not running ({why}): frames it left unconsumed"
        )?;
    }
    out.flush()?;
    let deadline = options.duration.map(|d| Instant::now() + d);
    let mut printed = 0u64;
    let mut buffer = Vec::new();
    let mut idle = 0u32;
    // Frames of one sweep over all rings, printed in timestamp order.
    let mut batch: Vec<(u64, String)> = Vec::new();
    loop {
        let mut seen = false;
        batch.clear();
        for spy in &mut spies {
            // A bounded batch per ring per sweep, so one busy ring cannot starve the others.
            for _ in 0..256 {
                match spy.next(&mut buffer) {
                    None => break,
                    Some(SpyRecord::Lapped { missed }) => {
                        seen = true;
                        writeln!(
                            out,
                            "# {}: lapped by the writer, {missed} bytes of frames missed",
                            spy.label()
                        )?;
                    }
                    Some(SpyRecord::Record { type_id, .. }) => {
                        seen = true;
                        let timestamp = Frame::new(type_id, &buffer).map_or(0, |f| f.timestamp());
                        batch.push((timestamp, describe_frame(spy.label(), type_id, &buffer)));
                    }
                }
            }
        }
        batch.sort_by_key(|(timestamp, _)| *timestamp);
        for (_, line) in &batch {
            writeln!(out, "{line}")?;
            printed += 1;
            if options.count.is_some_and(|c| printed >= c) {
                out.flush()?;
                return Ok(printed);
            }
        }
        out.flush()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(printed);
        }
        if seen {
            idle = 0;
        } else {
            idle += 1;
            if gone.is_some() {
                return Ok(printed);
            }
            if idle >= 1000 && matches!(streamdir::liveness(&options.dir), Liveness::Gone(_)) {
                writeln!(out, "# reaktor {pid} exited")?;
                return Ok(printed);
            }
            if idle >= 1000 {
                idle = 100;
            }
            // Polling: the spy must not ask the writers for anything, not even a wake-up.
            std::thread::sleep(Duration::from_micros(if idle < 100 { 100 } else { 1000 }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams::{ring, Header, SharedMapping};

    #[test]
    fn kinds_and_ends_come_from_instance_names() {
        assert_eq!(kind_of("core0.http0"), "http");
        assert_eq!(kind_of("core12.switch3"), "switch");
        assert_eq!(
            ends_of("core0.tcp0 -> core1.http1"),
            ("core0.tcp0", "core1.http1")
        );
    }

    #[test]
    fn request_and_response_heads_are_decoded() {
        let mut ext = Vec::new();
        nukleus_http::ext::encode_request(
            &mut ext,
            1,
            "GET",
            "/healthz",
            [("Host", &b"localhost"[..])].into_iter(),
        );
        let dir = std::env::temp_dir().join(format!("reaktor-dump-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring");
        let (mut tx, _rx) =
            ring(SharedMapping::create(&path, 65536, "core0.http0 -> core0.echo0").unwrap());
        let mut spies = open_rings(&dir, true).unwrap();
        tx.begin(&Header::new(0x11), 0, &ext).unwrap();
        let mut response = Vec::new();
        nukleus_http::ext::encode_response(
            &mut response,
            200,
            [("Content-Length", &b"3"[..])].into_iter(),
        );
        tx.begin(&Header::new(0x10), 0, &response).unwrap();
        tx.publish();
        let mut buffer = Vec::new();
        let Some(SpyRecord::Record { type_id, .. }) = spies[0].next(&mut buffer) else {
            panic!("no record")
        };
        let line = describe_frame(spies[0].label(), type_id, &buffer);
        assert!(line.contains("BEGIN"), "{line}");
        assert!(
            line.contains("request GET /healthz HTTP/1.1 Host: localhost"),
            "{line}"
        );
        // A reply BEGIN on an app -> http ring is a response head.
        let line = describe_frame("core0.echo0 -> core0.http0", frame::BEGIN, &{
            spies[0].next(&mut buffer).unwrap();
            buffer.clone()
        });
        assert!(line.contains("response 200 Content-Length: 3"), "{line}");
        // A whole response in one record (DATA flagged OPEN): its head and its body.
        let mut open = Vec::new();
        {
            let (mut tx, mut rx) = ring(SharedMapping::anonymous(4096, "open").unwrap());
            tx.begin_data(&Header::new(0x10), frame::FLAG_FIN, 3, &response, b"ok\n")
                .unwrap();
            tx.publish();
            rx.read(1, |_, bytes| open = bytes.to_vec());
        }
        let line = describe_frame("core0.echo0 -> core0.http0", frame::DATA, &open);
        assert!(line.contains("BEGIN+DATA"), "{line}");
        assert!(line.contains("response 200 Content-Length: 3"), "{line}");
        assert!(
            line.contains("flags=OF") && line.contains("\"ok\\n\""),
            "{line}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
