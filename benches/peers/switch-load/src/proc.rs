//! The server's CPU time and memory from /proc, and the meter of a run.

use std::time::Instant;

pub(crate) fn clk_tck() -> f64 {
    std::env::var("CLK_TCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0)
}

/// utime+stime of a process in seconds (all its threads, live and exited).
pub(crate) fn cpu_s(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3; utime is field 14, stime field 15.
    let t: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    t / clk_tck()
}

/// A `kB` line of /proc/PID/status, in bytes.
pub(crate) fn status_bytes(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in s.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|v| v.strip_prefix(':')) {
            return v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
        }
    }
    0
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// CPU accounting of one measured interval: the server (--pid) and this process.
pub(crate) struct Meter {
    pub(crate) pid: u32,
    pub(crate) t0: Instant,
    pub(crate) srv0: f64,
    pub(crate) me0: f64,
}

impl Meter {
    pub(crate) fn start(pid: u32) -> Meter {
        Meter {
            pid,
            t0: Instant::now(),
            srv0: if pid > 0 { cpu_s(pid) } else { 0.0 },
            me0: cpu_s(std::process::id()),
        }
    }
    /// `wall`, and the key=value fields for `ops` operations.
    pub(crate) fn report(&self, ops: u64, unit: &str) -> (f64, String) {
        let wall = self.t0.elapsed().as_secs_f64();
        let srv = if self.pid > 0 {
            cpu_s(self.pid) - self.srv0
        } else {
            0.0
        };
        let me = cpu_s(std::process::id()) - self.me0;
        let per = if ops > 0 { srv * 1e9 / ops as f64 } else { 0.0 };
        let per_cpu_s = if srv > 0.0 { ops as f64 / srv } else { 0.0 };
        (
            wall,
            format!(
                "{unit}={ops} seconds={wall:.3} {unit}_per_s={:.0} server_cpu_s={srv:.2} server_ns_per_op={per:.0} \
                 {unit}_per_server_cpu_s={per_cpu_s:.0} server_pct={:.0} client_pct={:.0} load={}",
                ops as f64 / wall,
                100.0 * srv / wall,
                100.0 * me / wall,
                loadavg()
            ),
        )
    }
}
