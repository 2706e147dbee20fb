//! `reaktor top`: live per-stage cost of a running reaktor, from another process.
//!
//! Busy time, polls, work and gauges come from the `stats` file the runtime rewrites in its
//! stream directory twice a second; frames, bytes and occupancy come straight from the ring
//! trailers, mapped read-only ([`RingSpy::stats`]). Nothing here touches the nuklei.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use streams::RingSpy;

use crate::dump::{ends_of, open_rings};
use crate::stats::{add_ring_traffic, RingSample, Snapshot, StatsFile, STATS_FILE};
use crate::streamdir::{self, Liveness};

pub struct TopOptions {
    pub dir: PathBuf,
    pub interval: Duration,
    /// Print one table (after one interval) and exit.
    pub once: bool,
    /// Stop after this many tables.
    pub iterations: Option<u64>,
    /// At most this many stream buffers are listed.
    pub max_rings: usize,
}

/// Reads the stats file and every ring's trailer into one snapshot.
pub fn sample(dir: &Path, spies: &[RingSpy]) -> io::Result<Snapshot> {
    let path = dir.join(STATS_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut snapshot = StatsFile::parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    snapshot.rings = spies
        .iter()
        .map(|spy| {
            let (from, to) = ends_of(spy.label());
            RingSample {
                from: from.to_owned(),
                to: to.to_owned(),
                stats: spy.stats(),
            }
        })
        .collect();
    add_ring_traffic(&mut snapshot.instances, &snapshot.rings);
    Ok(snapshot)
}

fn human_bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn nanos(n: Option<f64>) -> String {
    match n {
        Some(n) if n >= 1e6 => format!("{:.1}ms", n / 1e6),
        Some(n) if n >= 1e3 => format!("{:.1}us", n / 1e3),
        Some(n) => format!("{n:.0}ns"),
        None => "-".to_owned(),
    }
}

/// The table for the interval between `before` and `now`, `wall` seconds apart.
pub fn render(
    before: &Snapshot,
    now: &Snapshot,
    wall: f64,
    dir: &Path,
    max_rings: usize,
) -> String {
    let mut out = String::new();
    let interval = (now.uptime_nanos.saturating_sub(before.uptime_nanos)) as f64;
    let _ = writeln!(
        out,
        "reaktor {}  up {:.1}s  interval {:.2}s  {}",
        now.pid,
        now.uptime_nanos as f64 / 1e9,
        wall,
        dir.display()
    );
    let _ = writeln!(
        out,
        "{:<18} {:>4} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>10} {:>6}",
        "INSTANCE",
        "CORE",
        "BUSY%",
        "POLLS/s",
        "FRM_IN/s",
        "FRM_OUT/s",
        "B_IN/s",
        "B_OUT/s",
        "COST/FRM",
        "AVG/FRM",
        "CONN"
    );
    let wall = wall.max(1e-9);
    for i in &now.instances {
        let b = before.instances.iter().find(|x| x.name == i.name);
        let delta = |f: &dyn Fn(&crate::stats::InstanceSample) -> u64| {
            f(i).saturating_sub(b.map_or(0, f)) as f64
        };
        let busy = delta(&|x| x.busy_nanos);
        let frames = delta(&|x| x.frames());
        let busy_pct = if interval > 0.0 {
            100.0 * busy / interval
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<18} {:>4} {:>6.1} {:>9.0} {:>9.0} {:>9.0} {:>8} {:>8} {:>10} {:>10} {:>6}",
            i.name,
            i.core,
            busy_pct,
            delta(&|x| x.polls) / wall,
            delta(&|x| x.frames_in) / wall,
            delta(&|x| x.frames_out) / wall,
            human_bytes(delta(&|x| x.bytes_in) / wall),
            human_bytes(delta(&|x| x.bytes_out) / wall),
            nanos((frames > 0.0).then(|| busy / frames)),
            nanos((i.frames() > 0).then(|| i.busy_nanos as f64 / i.frames() as f64)),
            i.gauge("connections")
                .map_or("-".to_owned(), |c| c.to_string()),
        );
    }
    // Per stage: instances of a kind together, with the measured cost per request.
    let costs = crate::planner::measured_costs(now).unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{:<10} {:>9} {:>7} {:>11} {:>12}",
        "STAGE", "INSTANCES", "BUSY%", "FRAMES/s", "COST/REQ"
    );
    let mut kinds: Vec<&str> = Vec::new();
    for i in &now.instances {
        if !kinds.contains(&i.kind.as_str()) {
            kinds.push(&i.kind);
        }
    }
    for kind in kinds {
        let of_kind = now.instances.iter().filter(|i| i.kind == kind);
        let (mut busy, mut frames, mut count) = (0.0, 0.0, 0);
        for i in of_kind {
            let b = before.instances.iter().find(|x| x.name == i.name);
            busy += i.busy_nanos.saturating_sub(b.map_or(0, |x| x.busy_nanos)) as f64;
            frames += i.frames().saturating_sub(b.map_or(0, |x| x.frames())) as f64;
            count += 1;
        }
        let cost = costs
            .iter()
            .find(|(k, _)| k == kind)
            .map(|&(_, c)| c * 1000.0);
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>7.1} {:>11.0} {:>12}",
            kind,
            count,
            if interval > 0.0 {
                100.0 * busy / interval
            } else {
                0.0
            },
            frames / wall,
            nanos(cost)
        );
    }
    // The fullest (then busiest) stream buffers.
    let mut rings: Vec<(&RingSample, u64)> = now
        .rings
        .iter()
        .map(|r| {
            let b = before
                .rings
                .iter()
                .find(|x| x.from == r.from && x.to == r.to);
            let frames = r
                .stats
                .records_written
                .saturating_sub(b.map_or(0, |x| x.stats.records_written));
            (r, frames)
        })
        .collect();
    rings.sort_by(|a, b| {
        b.0.stats
            .occupancy()
            .cmp(&a.0.stats.occupancy())
            .then(b.1.cmp(&a.1))
    });
    let _ = writeln!(
        out,
        "\n{:<40} {:>11} {:>10} {:>9} {:>6}",
        "STREAM BUFFER", "OCCUPANCY", "CAPACITY", "FRAMES/s", "FULL"
    );
    let shown = rings.len().min(max_rings);
    for (r, frames) in &rings[..shown] {
        let _ = writeln!(
            out,
            "{:<40} {:>11} {:>10} {:>9.0} {:>6}",
            format!("{} -> {}", r.from, r.to),
            human_bytes(r.stats.occupancy() as f64),
            human_bytes(r.stats.capacity as f64),
            *frames as f64 / wall,
            r.stats.full_count
        );
    }
    if rings.len() > shown {
        let _ = writeln!(out, "({} more stream buffers)", rings.len() - shown);
    }
    out
}

pub fn top(options: &TopOptions, out: &mut dyn Write) -> io::Result<()> {
    let spies = open_rings(&options.dir, true)?;
    let mut before = sample(&options.dir, &spies)?;
    if let Liveness::Gone(why) = streamdir::liveness(&options.dir) {
        return Err(io::Error::other(format!(
            "reaktor {} is not running ({why}); {} is what it left, and its next start in the \
             same stream root removes it",
            before.pid,
            options.dir.display()
        )));
    }
    let mut taken = std::time::Instant::now();
    let mut printed = 0u64;
    loop {
        std::thread::sleep(options.interval);
        let gone = matches!(streamdir::liveness(&options.dir), Liveness::Gone(_));
        let now = match sample(&options.dir, &spies) {
            Ok(_) if gone => {
                writeln!(out, "reaktor {} exited", before.pid)?;
                return Ok(());
            }
            Ok(now) => now,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                writeln!(out, "reaktor {} exited", before.pid)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let wall = taken.elapsed().as_secs_f64();
        taken = std::time::Instant::now();
        let table = render(&before, &now, wall, &options.dir, options.max_rings);
        if options.once {
            out.write_all(table.as_bytes())?;
            return out.flush();
        }
        // Clear the screen and home the cursor, like top(1).
        write!(out, "\x1b[H\x1b[2J{table}")?;
        out.flush()?;
        printed += 1;
        if options.iterations.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::InstanceSample;

    #[test]
    fn the_table_shows_rates_over_the_interval() {
        let instance = |busy, polls| InstanceSample {
            name: "core0.http0".into(),
            kind: "http".into(),
            busy_nanos: busy,
            polls,
            gauges: vec![("connections".into(), 2), ("requests_total".into(), 10)],
            ..InstanceSample::default()
        };
        let before = Snapshot {
            pid: 7,
            uptime_nanos: 1_000_000_000,
            instances: vec![instance(0, 0)],
            rings: vec![],
        };
        let now = Snapshot {
            uptime_nanos: 2_000_000_000,
            instances: vec![instance(250_000_000, 1000)],
            ..before.clone()
        };
        let table = render(&before, &now, 1.0, Path::new("/x"), 5);
        let row = table
            .lines()
            .find(|l| l.starts_with("core0.http0"))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..4], ["core0.http0", "0", "25.0", "1000"], "{table}");
        assert_eq!(cells.last(), Some(&"2"));
        // 250 ms of busy time over 10 requests: 25 ms per request.
        let stage = table.lines().find(|l| l.starts_with("http ")).unwrap();
        assert!(stage.ends_with("25.0ms"), "{table}");
    }
}
