//! Cost and traffic measurement of a running reaktor, and its exports:
//!
//! - per nukleus instance: busy time, polls and work units (counted by the core loop in
//!   [`NukleusStats`]), gauges the nukleus reports (snapshot published by its core at most
//!   once a second), and frames and bytes in and out, read from the trailers of the rings it
//!   reads and writes (the writer counts them on publish; reading them costs the nuklei
//!   nothing);
//! - per ring: frames, bytes, occupancy (published, not yet consumed) and full count;
//! - derived: cost per frame and per byte (busy time over frames/bytes in + out).
//!
//! Exports: Prometheus text ([`Snapshot::to_prometheus`]) served by the `metrics` kind,
//! and the `stats` file that the runtime rewrites in its stream directory twice a second for
//! `reaktor top` and `reaktor plan --measured` in other processes ([`Snapshot::to_stats_file`],
//! [`StatsFile::parse`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use streams::{Nukleus, RingStats, RingWatch};

/// Cost counters of one nukleus instance, written by its core thread, read by anyone.
#[derive(Debug, Default)]
pub struct NukleusStats {
    pub busy_nanos: AtomicU64,
    pub polls: AtomicU64,
    pub work: AtomicU64,
    /// The nukleus's gauges as its core last published them (at most once a second).
    gauges: Mutex<Vec<(&'static str, u64)>>,
}

impl NukleusStats {
    /// Counts one poll that took `busy_nanos` and did `work` units (busy time counts only for
    /// a poll that did work). The core thread is the only writer: a load and a store each,
    /// not a locked read-modify-write, on the core loop's every turn.
    pub fn count_poll(&self, busy_nanos: u64, work: u64) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            )
        };
        if work > 0 {
            add(&self.busy_nanos, busy_nanos);
            add(&self.work, work);
        }
        add(&self.polls, 1);
    }

    /// (busy nanoseconds, polls, work units).
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.busy_nanos.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed),
            self.work.load(Ordering::Relaxed),
        )
    }

    pub fn gauges(&self) -> Vec<(&'static str, u64)> {
        self.gauges.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Called by the core thread: replaces the snapshot unless a reader holds it right now
    /// (then the next publication will do; the core never waits).
    pub fn publish_gauges(&self, nukleus: &dyn Nukleus, scratch: &mut Vec<(&'static str, u64)>) {
        scratch.clear();
        nukleus.gauges(scratch);
        if let Ok(mut gauges) = self.gauges.try_lock() {
            gauges.clear();
            gauges.extend_from_slice(scratch);
        }
    }
}

/// Name of the stats file inside a reaktor's stream directory.
pub const STATS_FILE: &str = "stats";
const STATS_MAGIC: &str = "reaktor-stats 1";

/// One nukleus instance as the measurement sees it.
pub struct InstanceEntry {
    pub name: String,
    pub kind: String,
    pub core: usize,
    pub stats: Arc<NukleusStats>,
}

/// One ring: written by instance `from`, read by instance `to`.
pub struct RingEntry {
    pub from: usize,
    pub to: usize,
    pub watch: RingWatch,
}

/// The most recent operator events kept ([`EventLog`]).
pub const EVENTS_KEPT: usize = 64;

/// One thing that happened to the running reaktor, for operators (a re-plan that moved new
/// connections, ...): when (since start) and what, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Numbered from 1 in the order they happened.
    pub seq: u64,
    pub at_nanos: u64,
    pub text: String,
}

/// The last [`EVENTS_KEPT`] events. Written rarely (by the re-plan thread), read by the
/// operator console; never touched by a core's duty cycle.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<std::collections::VecDeque<Event>>,
    count: AtomicU64,
}

impl EventLog {
    pub fn push(&self, at_nanos: u64, text: String) {
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        let seq = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(Event {
            seq,
            at_nanos,
            text,
        });
    }

    /// Events logged so far (including those no longer kept).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The kept events numbered above `after`.
    pub fn since(&self, after: u64) -> Vec<Event> {
        self.events
            .lock()
            .map(|e| e.iter().filter(|e| e.seq > after).cloned().collect())
            .unwrap_or_default()
    }
}

/// Everything measured, shared by the core threads (writers), the stats-file thread and the
/// `metrics` nukleus (readers). Every read is an atomic load or a brief lock of a gauge
/// snapshot that the owning core replaces at most once a second.
pub struct SharedStats {
    pub started: Instant,
    pub pid: u32,
    pub instances: Vec<InstanceEntry>,
    pub rings: Vec<RingEntry>,
    /// What happened (re-plans), for the operator console.
    pub events: EventLog,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceSample {
    pub name: String,
    pub kind: String,
    pub core: usize,
    pub busy_nanos: u64,
    pub polls: u64,
    pub work: u64,
    pub gauges: Vec<(String, u64)>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl InstanceSample {
    pub fn frames(&self) -> u64 {
        self.frames_in + self.frames_out
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_in + self.bytes_out
    }

    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.gauges.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RingSample {
    pub from: String,
    pub to: String,
    pub stats: RingStats,
}

/// A consistent-enough picture of the counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub pid: u32,
    pub uptime_nanos: u64,
    pub instances: Vec<InstanceSample>,
    pub rings: Vec<RingSample>,
}

impl SharedStats {
    pub fn snapshot(&self) -> Snapshot {
        let mut instances: Vec<InstanceSample> = self
            .instances
            .iter()
            .map(|i| {
                let (busy_nanos, polls, work) = i.stats.counters();
                InstanceSample {
                    name: i.name.clone(),
                    kind: i.kind.clone(),
                    core: i.core,
                    busy_nanos,
                    polls,
                    work,
                    gauges: i
                        .stats
                        .gauges()
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect(),
                    ..InstanceSample::default()
                }
            })
            .collect();
        let rings = self
            .rings
            .iter()
            .map(|r| RingSample {
                from: self.instances[r.from].name.clone(),
                to: self.instances[r.to].name.clone(),
                stats: r.watch.stats(),
            })
            .collect::<Vec<_>>();
        add_ring_traffic(&mut instances, &rings);
        Snapshot {
            pid: self.pid,
            uptime_nanos: self.started.elapsed().as_nanos() as u64,
            instances,
            rings,
        }
    }
}

/// Adds each ring's frames and bytes to the instance that writes it (out) and reads it (in).
pub fn add_ring_traffic(instances: &mut [InstanceSample], rings: &[RingSample]) {
    for ring in rings {
        if let Some(i) = instances.iter_mut().find(|i| i.name == ring.from) {
            i.frames_out += ring.stats.records_written;
            i.bytes_out += ring.stats.bytes_written;
        }
        if let Some(i) = instances.iter_mut().find(|i| i.name == ring.to) {
            i.frames_in += ring.stats.records_written;
            i.bytes_in += ring.stats.bytes_written;
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (format 0.0.4) writer: groups samples under one HELP/TYPE.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (String, f64)>,
    ) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if value.is_finite() {
                let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
            }
        }
    }
}

fn instance_labels(i: &InstanceSample) -> String {
    format!(
        "instance=\"{}\",kind=\"{}\",core=\"{}\"",
        escape(&i.name),
        escape(&i.kind),
        i.core
    )
}

fn ring_labels(r: &RingSample) -> String {
    format!("from=\"{}\",to=\"{}\"", escape(&r.from), escape(&r.to))
}

fn metric_name_part(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Snapshot {
    pub fn to_prometheus(&self) -> String {
        let mut e = Exposition { out: String::new() };
        let per_instance = |f: &dyn Fn(&InstanceSample) -> f64| -> Vec<(String, f64)> {
            self.instances
                .iter()
                .map(|i| (instance_labels(i), f(i)))
                .collect()
        };
        let per_ring = |f: &dyn Fn(&RingStats) -> f64| -> Vec<(String, f64)> {
            self.rings
                .iter()
                .map(|r| (ring_labels(r), f(&r.stats)))
                .collect()
        };
        let _ = writeln!(
            e.out,
            "# HELP reaktor_uptime_seconds Seconds since the reaktor started.\n# TYPE reaktor_uptime_seconds gauge\nreaktor_uptime_seconds {}",
            self.uptime_nanos as f64 / 1e9
        );
        e.family(
            "reaktor_nukleus_busy_seconds_total",
            "counter",
            "Time a nukleus instance spent in polls that did work.",
            per_instance(&|i| i.busy_nanos as f64 / 1e9),
        );
        e.family(
            "reaktor_nukleus_polls_total",
            "counter",
            "Polls of a nukleus instance by its core loop.",
            per_instance(&|i| i.polls as f64),
        );
        e.family(
            "reaktor_nukleus_work_total",
            "counter",
            "Work units a nukleus instance reported (frames, socket events, timers).",
            per_instance(&|i| i.work as f64),
        );
        e.family(
            "reaktor_nukleus_frames_in_total",
            "counter",
            "Frames published to a nukleus instance by its peers.",
            per_instance(&|i| i.frames_in as f64),
        );
        e.family(
            "reaktor_nukleus_frames_out_total",
            "counter",
            "Frames a nukleus instance published to its peers.",
            per_instance(&|i| i.frames_out as f64),
        );
        e.family(
            "reaktor_nukleus_bytes_in_total",
            "counter",
            "Stream bytes (records with headers) published to a nukleus instance.",
            per_instance(&|i| i.bytes_in as f64),
        );
        e.family(
            "reaktor_nukleus_bytes_out_total",
            "counter",
            "Stream bytes (records with headers) a nukleus instance published.",
            per_instance(&|i| i.bytes_out as f64),
        );
        e.family(
            "reaktor_nukleus_cost_per_frame_seconds",
            "gauge",
            "Busy time per frame in or out, since start.",
            self.instances
                .iter()
                .filter(|i| i.frames() > 0)
                .map(|i| {
                    (
                        instance_labels(i),
                        i.busy_nanos as f64 / 1e9 / i.frames() as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        e.family(
            "reaktor_nukleus_cost_per_byte_seconds",
            "gauge",
            "Busy time per stream byte in or out, since start.",
            self.instances
                .iter()
                .filter(|i| i.bytes() > 0)
                .map(|i| {
                    (
                        instance_labels(i),
                        i.busy_nanos as f64 / 1e9 / i.bytes() as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        e.family(
            "reaktor_stream_frames_total",
            "counter",
            "Frames published on a stream buffer.",
            per_ring(&|s| s.records_written as f64),
        );
        e.family(
            "reaktor_stream_bytes_total",
            "counter",
            "Bytes published on a stream buffer (records with headers and padding).",
            per_ring(&|s| s.bytes_written as f64),
        );
        e.family(
            "reaktor_stream_occupancy_bytes",
            "gauge",
            "Bytes published on a stream buffer and not yet consumed (queue depth).",
            per_ring(&|s| s.occupancy() as f64),
        );
        e.family(
            "reaktor_stream_capacity_bytes",
            "gauge",
            "Capacity of a stream buffer.",
            per_ring(&|s| s.capacity as f64),
        );
        e.family(
            "reaktor_stream_full_total",
            "counter",
            "Records refused because a stream buffer was full (a sizing bug, see DESIGN 3).",
            per_ring(&|s| s.full_count as f64),
        );
        // Gauges the nuklei report, one family per kind and name, e.g. reaktor_tcp_connections.
        let mut families: Vec<(String, Vec<(String, f64)>)> = Vec::new();
        for i in &self.instances {
            for (name, value) in &i.gauges {
                let family = format!(
                    "reaktor_{}_{}",
                    metric_name_part(&i.kind),
                    metric_name_part(name)
                );
                let sample = (
                    format!("instance=\"{}\",core=\"{}\"", escape(&i.name), i.core),
                    *value as f64,
                );
                match families.iter_mut().find(|(f, _)| *f == family) {
                    Some((_, samples)) => samples.push(sample),
                    None => families.push((family, vec![sample])),
                }
            }
        }
        for (family, samples) in families {
            let (kind, help) = if family.ends_with("_total") {
                ("counter", "Counter reported by the nukleus.")
            } else {
                ("gauge", "Gauge reported by the nukleus.")
            };
            e.family(&family, kind, help, samples);
        }
        e.out
    }

    /// The `stats` file: instance counters and gauges (ring counters are in the ring files).
    pub fn to_stats_file(&self) -> String {
        let mut out = format!(
            "{STATS_MAGIC}\npid {}\nuptime_nanos {}\n",
            self.pid, self.uptime_nanos
        );
        for i in &self.instances {
            let _ = write!(
                out,
                "instance {} {} {} {} {} {}",
                i.name, i.kind, i.core, i.busy_nanos, i.polls, i.work
            );
            for (name, value) in &i.gauges {
                let _ = write!(out, " {name}={value}");
            }
            out.push('\n');
        }
        out
    }
}

/// A parsed `stats` file: instances without ring traffic.
pub struct StatsFile;

impl StatsFile {
    pub fn parse(text: &str) -> Result<Snapshot, String> {
        let mut lines = text.lines();
        if lines.next() != Some(STATS_MAGIC) {
            return Err(format!(
                "not a reaktor stats file (expected `{STATS_MAGIC}`)"
            ));
        }
        let mut snapshot = Snapshot::default();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| -> Result<u64, String> {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("bad stats line `{line}`"))
            };
            match words.first() {
                Some(&"pid") => snapshot.pid = number(1)? as u32,
                Some(&"uptime_nanos") => snapshot.uptime_nanos = number(1)?,
                Some(&"instance") if words.len() >= 7 => {
                    let mut gauges = Vec::new();
                    for word in &words[7..] {
                        let (name, value) = word
                            .split_once('=')
                            .ok_or_else(|| format!("bad gauge `{word}`"))?;
                        gauges.push((
                            name.to_owned(),
                            value.parse().map_err(|_| format!("bad gauge `{word}`"))?,
                        ));
                    }
                    snapshot.instances.push(InstanceSample {
                        name: words[1].to_owned(),
                        kind: words[2].to_owned(),
                        core: number(3)? as usize,
                        busy_nanos: number(4)?,
                        polls: number(5)?,
                        work: number(6)?,
                        gauges,
                        ..InstanceSample::default()
                    });
                }
                Some(_) => return Err(format!("bad stats line `{line}`")),
                None => {}
            }
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut instances = vec![
            InstanceSample {
                name: "core0.tcp0".into(),
                kind: "tcp".into(),
                core: 0,
                busy_nanos: 2_000_000,
                polls: 10,
                work: 4,
                gauges: vec![
                    ("connections".into(), 3),
                    ("connections_accepted_total".into(), 7),
                ],
                ..InstanceSample::default()
            },
            InstanceSample {
                name: "core0.http0".into(),
                kind: "http".into(),
                core: 0,
                busy_nanos: 1_000_000,
                polls: 10,
                work: 2,
                gauges: vec![("connections".into(), 3)],
                ..InstanceSample::default()
            },
        ];
        let rings = vec![RingSample {
            from: "core0.tcp0".into(),
            to: "core0.http0".into(),
            stats: RingStats {
                capacity: 65536,
                tail: 800,
                head: 600,
                records_written: 10,
                bytes_written: 800,
                full_count: 1,
            },
        }];
        add_ring_traffic(&mut instances, &rings);
        Snapshot {
            pid: 42,
            uptime_nanos: 5_000_000_000,
            instances,
            rings,
        }
    }

    #[test]
    fn ring_traffic_counts_out_for_the_writer_and_in_for_the_reader() {
        let s = sample();
        assert_eq!(
            (s.instances[0].frames_out, s.instances[0].frames_in),
            (10, 0)
        );
        assert_eq!(
            (s.instances[1].bytes_in, s.instances[1].bytes_out),
            (800, 0)
        );
    }

    #[test]
    fn the_exposition_groups_families_and_derives_cost() {
        let text = sample().to_prometheus();
        assert!(text.contains(
            "reaktor_nukleus_cost_per_frame_seconds{instance=\"core0.tcp0\",kind=\"tcp\",core=\"0\"} 0.0002\n"
        ));
        assert!(text.contains(
            "reaktor_stream_occupancy_bytes{from=\"core0.tcp0\",to=\"core0.http0\"} 200\n"
        ));
        assert!(text.contains("# TYPE reaktor_tcp_connections_accepted_total counter\n"));
        assert!(text.contains("# TYPE reaktor_http_connections gauge\n"));
        // Every family's TYPE line appears once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
    }

    #[test]
    fn the_stats_file_round_trips() {
        let mut s = sample();
        let parsed = StatsFile::parse(&s.to_stats_file()).unwrap();
        s.rings.clear();
        for i in &mut s.instances {
            (i.frames_in, i.frames_out, i.bytes_in, i.bytes_out) = (0, 0, 0, 0);
        }
        assert_eq!(parsed, s);
        assert!(StatsFile::parse("something else").is_err());
        assert!(StatsFile::parse("reaktor-stats 1\ninstance a b x 1 2 3\n").is_err());
    }
}
