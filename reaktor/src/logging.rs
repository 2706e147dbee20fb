//! Logging: the `tracing` subscriber of the binary, with repeated lines rate-limited per
//! cause so that a flood (a client failing TLS handshakes in a loop, thousands of slow
//! consumers at once) costs a few lines and a count instead of one line per event.
//!
//! A cause is a log call site (the line in the source that logs). In every window of
//! `[reaktor] log_window_ms`, the first `log_burst` lines of a call site at INFO, WARN or
//! ERROR are written; the rest are counted, and once the window is over one line at the same
//! level says how many were suppressed and what the first of them said. DEBUG and TRACE,
//! which an operator turns on to see everything, are never suppressed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// `target` of the lines that report suppressed lines (never suppressed themselves).
pub const SUMMARY_TARGET: &str = "reaktor::log";

/// Longest excerpt of a suppressed line kept for its summary.
const EXCERPT: usize = 200;

/// How many lines per call site and window pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lines per call site per window; 0: no limit.
    pub burst: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            burst: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// One call site's count in the current window.
struct Site {
    started: Instant,
    passed: u32,
    /// Suppressed in the current window.
    suppressed: u64,
    /// Suppressed in windows that ended before the summary was written.
    unreported: u64,
    level: Level,
    location: &'static str,
    /// What the first suppressed line said (its message and fields).
    excerpt: String,
}

/// The suppressed lines of one call site, to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub level: Level,
    /// The lines' call site (`event file:line`).
    pub location: &'static str,
    pub count: u64,
    pub excerpt: String,
}

/// The per-call-site counts, shared by the layer and whoever writes the summaries.
#[derive(Default)]
pub struct Throttle {
    limits: Mutex<Limits>,
    /// By call site (`event file:line`).
    sites: Mutex<HashMap<&'static str, Site>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Arc<Throttle> {
        Arc::new(Throttle {
            limits: Mutex::new(limits),
            sites: Mutex::new(HashMap::new()),
        })
    }

    pub fn set_limits(&self, limits: Limits) {
        if let Ok(mut l) = self.limits.lock() {
            *l = limits;
        }
    }

    fn limits(&self) -> Limits {
        self.limits.lock().map(|l| *l).unwrap_or_default()
    }

    /// Whether a line logged at `location` (its call site) may be written at `now`;
    /// `excerpt` is asked for only when the line is the first one suppressed in its window.
    pub fn admit(
        &self,
        location: &'static str,
        level: Level,
        now: Instant,
        excerpt: impl FnOnce() -> String,
    ) -> bool {
        let limits = self.limits();
        if limits.burst == 0 {
            return true;
        }
        let Ok(mut sites) = self.sites.lock() else {
            return true;
        };
        let s = sites.entry(location).or_insert_with(|| Site {
            started: now,
            passed: 0,
            suppressed: 0,
            unreported: 0,
            level,
            location,
            excerpt: String::new(),
        });
        if now.saturating_duration_since(s.started) >= limits.window {
            s.unreported += s.suppressed;
            s.started = now;
            s.passed = 0;
            s.suppressed = 0;
        }
        if s.passed < limits.burst {
            s.passed += 1;
            return true;
        }
        if s.suppressed == 0 && s.unreported == 0 {
            s.excerpt = excerpt();
        }
        s.suppressed += 1;
        false
    }

    /// Takes the counts of suppressed lines whose window is over at `now` (all of them when
    /// `everything`, e.g. at shutdown).
    pub fn take_suppressed(&self, now: Instant, everything: bool) -> Vec<Suppressed> {
        let window = self.limits().window;
        let Ok(mut sites) = self.sites.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in sites.values_mut() {
            let over = everything || now.saturating_duration_since(s.started) >= window;
            let count = s.unreported + if over { s.suppressed } else { 0 };
            if count == 0 {
                continue;
            }
            out.push(Suppressed {
                level: s.level,
                location: s.location,
                count,
                excerpt: std::mem::take(&mut s.excerpt),
            });
            s.unreported = 0;
            if over {
                s.suppressed = 0;
            }
        }
        // Quiet call sites are forgotten, so the table stays as small as the set of causes
        // seen in the last window.
        sites.retain(|_, s| now.saturating_duration_since(s.started) < window * 2);
        out
    }

    /// Writes one line per call site with suppressed lines whose window is over.
    pub fn report(&self, now: Instant, everything: bool) {
        for s in self.take_suppressed(now, everything) {
            let (count, location, like) = (s.count, s.location, s.excerpt.as_str());
            let message = "similar log lines suppressed (rate limit per cause: [reaktor] log_burst, log_window_ms)";
            match s.level {
                Level::ERROR => {
                    tracing::error!(target: SUMMARY_TARGET, suppressed = count, location, like, "{message}")
                }
                Level::WARN => {
                    tracing::warn!(target: SUMMARY_TARGET, suppressed = count, location, like, "{message}")
                }
                _ => {
                    tracing::info!(target: SUMMARY_TARGET, suppressed = count, location, like, "{message}")
                }
            }
        }
    }
}

/// The layer that asks the [`Throttle`] about every INFO, WARN and ERROR line.
pub struct ThrottleLayer(pub Arc<Throttle>);

impl<S: Subscriber> Layer<S> for ThrottleLayer {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || meta.target() == SUMMARY_TARGET {
            return true;
        }
        self.0
            .admit(meta.name(), *meta.level(), Instant::now(), || {
                excerpt_of(event)
            })
    }
}

/// The message and fields of an event as one short line.
fn excerpt_of(event: &Event<'_>) -> String {
    struct Excerpt(String);
    impl Visit for Excerpt {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if self.0.len() >= EXCERPT {
                return;
            }
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?} ");
            } else {
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }
    }
    let mut excerpt = Excerpt(String::new());
    event.record(&mut excerpt);
    let mut text = excerpt.0.trim_end().to_owned();
    if text.len() > EXCERPT {
        let mut cut = EXCERPT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Installs the binary's subscriber: `REAKTOR_LOG` (EnvFilter syntax, default `info`) to
/// stderr (coloured only on a terminal), rate-limited by the returned [`Throttle`] (default limits until the topology
/// sets its own).
pub fn init() -> Arc<Throttle> {
    use tracing_subscriber::prelude::*;
    let throttle = Throttle::new(Limits::default());
    let filter = tracing_subscriber::EnvFilter::try_from_env("REAKTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(ThrottleLayer(throttle.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours for a terminal; plain text for log files and pipes.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    throttle
}

/// Writes the summaries of suppressed lines about once a second until `stop` is set, then
/// the rest.
pub fn spawn_reporter(
    throttle: Arc<Throttle>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("reaktor-log".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_secs(1));
                throttle.report(Instant::now(), false);
            }
            throttle.report(Instant::now(), true);
        })
        .expect("spawning the log reporter thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_per_site_and_window_then_lines_are_counted() {
        let t = Throttle::new(Limits {
            burst: 3,
            window: Duration::from_secs(10),
        });
        let now = Instant::now();
        let admit =
            |site, at: Duration| t.admit(site, Level::WARN, now + at, || format!("line at {at:?}"));
        let passed = (0..100)
            .filter(|i| admit("a.rs:1", Duration::from_millis(*i)))
            .count();
        assert_eq!(passed, 3);
        assert!(
            admit("b.rs:2", Duration::ZERO),
            "another cause has its own burst"
        );
        assert!(
            t.take_suppressed(now + Duration::from_secs(1), false)
                .is_empty(),
            "window still open"
        );
        let report = t.take_suppressed(now + Duration::from_secs(10), false);
        assert_eq!(
            report,
            vec![Suppressed {
                level: Level::WARN,
                location: "a.rs:1",
                count: 97,
                excerpt: "line at 3ms".into()
            }]
        );
        assert!(
            t.take_suppressed(now + Duration::from_secs(11), false)
                .is_empty(),
            "reported once"
        );
        assert!(
            admit("a.rs:1", Duration::from_secs(12)),
            "a new window, a new burst"
        );
    }

    #[test]
    fn lines_suppressed_in_a_window_that_ended_before_the_report_are_still_counted() {
        let t = Throttle::new(Limits {
            burst: 1,
            window: Duration::from_secs(1),
        });
        let now = Instant::now();
        for ms in [0, 10, 20, 1500, 1510] {
            t.admit(
                "a.rs:1",
                Level::ERROR,
                now + Duration::from_millis(ms),
                String::new,
            );
        }
        let report = t.take_suppressed(now + Duration::from_millis(2600), false);
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].count, 3, "2 in the first window, 1 in the second");
    }

    #[test]
    fn at_shutdown_every_count_is_reported() {
        let t = Throttle::new(Limits {
            burst: 1,
            window: Duration::from_secs(60),
        });
        let now = Instant::now();
        for _ in 0..5 {
            t.admit("a.rs:1", Level::INFO, now, String::new);
        }
        assert!(t.take_suppressed(now, false).is_empty());
        assert_eq!(t.take_suppressed(now, true)[0].count, 4);
    }

    #[test]
    fn burst_zero_turns_the_limit_off() {
        let t = Throttle::new(Limits {
            burst: 0,
            window: Duration::from_secs(1),
        });
        let now = Instant::now();
        assert!((0..1000).all(|_| t.admit("a.rs:1", Level::WARN, now, String::new)));
    }
}
