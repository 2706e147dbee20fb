//! `reaktor run --topology FILE` serves; `reaktor plan --topology FILE` prints the placement;
//! `reaktor top` and `reaktor dump` observe a running reaktor from another process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use reaktor::plan::Placement;
use reaktor::runtime::Reaktor;
use reaktor::topology::LoadedTopology;

#[derive(Parser)]
#[command(
    name = "reaktor",
    version,
    about = "Nuklei on cores, connected by shared-memory streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the nuklei of a topology and serve until SIGINT or SIGTERM.
    Run {
        #[arg(long, default_value = "examples/default.toml")]
        topology: PathBuf,
        /// Directory for stream files (overrides the topology's stream_dir).
        #[arg(long)]
        stream_dir: Option<PathBuf>,
    },
    /// Print which nukleus runs on which core, the streams between them and, with
    /// placement = "auto", the planner's decisions and the cost each used.
    Plan {
        #[arg(long, default_value = "examples/default.toml")]
        topology: PathBuf,
        /// Re-plan with the per-stage cost measured by a running reaktor (its stats file).
        #[command(flatten)]
        measured: MeasuredTarget,
        /// Print the placement as JSON (cores, instances, links and their rings, the words
        /// above for each, the planner's decisions, the predicted load) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Live per-stage cost of a running reaktor (busy time, frames, bytes, buffer occupancy).
    Top {
        #[command(flatten)]
        target: Target,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one table (after one interval) and exit.
        #[arg(long)]
        once: bool,
        /// Stop after this many refreshes.
        #[arg(long)]
        iterations: Option<u64>,
        /// List at most this many stream buffers.
        #[arg(long, default_value_t = 10)]
        rings: usize,
    },
    /// A port switch cluster as its members see it.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print the frames flowing through a running reaktor's stream buffers, read-only.
    Dump {
        #[command(flatten)]
        target: Target,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Also print frames published before the dump attached and not yet consumed.
        #[arg(long)]
        backlog: bool,
        /// Only stream buffers whose label contains this text (e.g. "http0 -> ").
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Ask a member (GET URL/v1/cluster), then every member it lists: one line per member
    /// (role, term, epoch, leader, serving, lease left) and who serves. Exit status 0 when
    /// exactly one member serves and every reachable member follows it, 1 otherwise.
    Status {
        /// A member's API URL, e.g. http://127.0.0.1:8081
        #[arg(long)]
        url: String,
        /// How long to wait for each member.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

/// Which running reaktor: by pid (stream directory `<stream-root>/reaktor-<pid>`) or by its
/// stream directory.
#[derive(clap::Args)]
struct Target {
    #[arg(long, required_unless_present = "stream_dir")]
    pid: Option<u32>,
    /// Where the reaktor's `reaktor-<pid>` directory lives (default /dev/shm, else the temp dir).
    #[arg(long, requires = "pid")]
    stream_root: Option<PathBuf>,
    /// The reaktor's stream directory itself (`.../reaktor-<pid>`).
    #[arg(long, conflicts_with = "pid")]
    stream_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MeasuredTarget {
    /// Pid of the running reaktor whose measured cost to use.
    #[arg(long = "measured-pid")]
    pid: Option<u32>,
    #[arg(long = "measured-stream-root", requires = "pid")]
    stream_root: Option<PathBuf>,
    /// Stream directory (`.../reaktor-<pid>`) of the running reaktor whose cost to use.
    #[arg(long = "measured-stream-dir", conflicts_with = "pid")]
    stream_dir: Option<PathBuf>,
}

fn resolve(pid: Option<u32>, root: Option<&Path>, dir: Option<&Path>) -> Option<PathBuf> {
    match (dir, pid) {
        (Some(dir), _) => Some(dir.to_owned()),
        (None, Some(pid)) => Some(reaktor::streamdir::dir_of(pid, root)),
        (None, None) => None,
    }
}

impl Target {
    fn dir(&self) -> PathBuf {
        resolve(
            self.pid,
            self.stream_root.as_deref(),
            self.stream_dir.as_deref(),
        )
        .expect("clap requires --pid or --stream-dir")
    }
}

/// `print!`/`println!` that stop quietly when stdout is gone (`reaktor plan | head`) instead
/// of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The topology at `path`, loaded (every kind's settings) and placed (the planner's decisions
/// when placement = "auto"): the steps before anything runs.
fn load_and_place(
    path: &Path,
) -> Result<(LoadedTopology, Option<reaktor::planner::Plan>), reaktor::error::TopologyError> {
    let mut loaded = reaktor::kinds::load(path)?;
    let plan = reaktor::place::place(&mut loaded)?;
    Ok((loaded, plan))
}

/// The counters a running reaktor last wrote to its stats file.
fn read_snapshot(dir: &Path) -> Result<reaktor::stats::Snapshot, String> {
    std::fs::read_to_string(dir.join(reaktor::stats::STATS_FILE))
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|text| reaktor::stats::StatsFile::parse(&text))
        .map_err(|e| format!("cannot read the measured cost: {e}"))
}

/// Per-kind cost measured by the reaktor whose stream directory is `dir`.
fn measured_costs(dir: &Path) -> Result<Vec<(String, f64)>, String> {
    reaktor::planner::measured_costs(&read_snapshot(dir)?)
}

fn plan(topology: &Path, measured: &MeasuredTarget, json: bool) -> ExitCode {
    let (loaded, auto_plan) = match load_and_place(topology) {
        Ok(placed) => placed,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        // With a running reaktor, its measured cost is what the prediction uses.
        let costs = match resolve(
            measured.pid,
            measured.stream_root.as_deref(),
            measured.stream_dir.as_deref(),
        ) {
            None => Vec::new(),
            Some(dir) => match measured_costs(&dir) {
                Ok(costs) => costs,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let input = reaktor::console::view::plan_input(&loaded, &costs);
        let view = reaktor::console::view::view(&loaded, auto_plan.as_ref(), &input);
        match serde_json::to_string_pretty(&view) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(plan) = &auto_plan {
        out!("{}", plan.describe());
    }
    out!(
        "{}",
        Placement::from_topology(&loaded).describe(&loaded.topology)
    );
    let Some(dir) = resolve(
        measured.pid,
        measured.stream_root.as_deref(),
        measured.stream_dir.as_deref(),
    ) else {
        return ExitCode::SUCCESS;
    };
    let snapshot = match read_snapshot(&dir) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let costs = match reaktor::planner::measured_costs(&snapshot) {
        Ok(costs) => costs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cores = loaded.topology.cores.len();
    let input = reaktor::planner::plan_input(&loaded, cores, &costs);
    let plan = reaktor::planner::plan(&input);
    outln!(
        "\nre-planned with the cost reaktor {} measured (us of busy time per request):",
        snapshot.pid
    );
    out!("{}", plan.describe());
    for (n, kinds) in plan.cores.iter().enumerate() {
        outln!("core {n}: {}", kinds.join(", "));
    }
    outln!("# to plan with these costs at start, add to the topology:\n[cost]");
    for stage in &input.stages {
        if stage.source == reaktor::planner::CostSource::Measured {
            outln!("{} = {:.3}", stage.kind, stage.cost);
        }
    }
    if let Some(out) = input
        .tcp_out
        .as_ref()
        .filter(|o| o.source == reaktor::planner::CostSource::Measured)
    {
        // Measured when tcp ran split by direction: the part of tcp's cost spent writing.
        outln!("\"{}\" = {:.3}", out.kind, out.cost);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let throttle = reaktor::logging::init();
    match Cli::parse().command {
        Command::Plan {
            topology,
            measured,
            json,
        } => plan(&topology, &measured, json),
        Command::Top {
            target,
            interval,
            once,
            iterations,
            rings,
        } => {
            let options = reaktor::top::TopOptions {
                dir: target.dir(),
                interval: Duration::from_secs_f64(interval.clamp(0.05, 3600.0)),
                once,
                iterations,
                max_rings: rings,
            };
            match reaktor::top::top(&options, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dump {
            target,
            count,
            duration,
            backlog,
            filter,
        } => {
            let options = reaktor::dump::DumpOptions {
                dir: target.dir(),
                count,
                duration: duration.map(|d| Duration::from_secs_f64(d.clamp(0.0, 1e9))),
                backlog,
                filter,
            };
            match reaktor::dump::dump(&options, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                // A closed pipe (`reaktor dump | head`) is a normal way to stop.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            topology,
            stream_dir,
        } => run(topology, stream_dir, &throttle),
        Command::Cluster {
            command: ClusterCommand::Status { url, timeout_ms },
        } => {
            let timeout = Duration::from_millis(timeout_ms.clamp(1, 60_000));
            match reaktor::cluster_cli::status(&url, timeout, &mut std::io::stdout().lock()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn run(
    topology: PathBuf,
    stream_dir: Option<PathBuf>,
    throttle: &Arc<reaktor::logging::Throttle>,
) -> ExitCode {
    let loaded = match load_and_place(&topology) {
        Ok((loaded, _)) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = &loaded.topology.reaktor;
    throttle.set_limits(reaktor::logging::Limits {
        burst: *settings.log_burst.get_ref() as u32,
        window: Duration::from_millis(*settings.log_window_ms.get_ref()),
    });
    let stop_reporter = Arc::new(AtomicBool::new(false));
    let reporter = reaktor::logging::spawn_reporter(throttle.clone(), stop_reporter.clone());
    // Install signal handlers before any thread starts, so every thread inherits them.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reaktor = match Reaktor::start(&loaded, stream_dir.as_deref()) {
        Ok(reaktor) => reaktor,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for address in &loaded.listener_addresses {
        tracing::info!(%address, topology = %loaded.path.display(), streams = %reaktor.stream_dir().display(), "reaktor listening");
    }
    // SIGHUP reloads what can be reloaded; SIGINT and SIGTERM drain, then stop.
    let signal = signals.forever().find(|&signal| {
        if signal != signal_hook::consts::SIGHUP {
            return true;
        }
        match reaktor.reload() {
            Ok(applied) => tracing::info!(?applied, topology = %loaded.path.display(), "reloaded"),
            Err(e) => tracing::error!(error = %e, "reload refused"),
        }
        false
    });
    let drain_timeout = Duration::from_millis(*settings.drain_timeout_ms.get_ref());
    tracing::info!(
        ?signal,
        drain_timeout_ms = drain_timeout.as_millis() as u64,
        "draining: no new connections, requests in flight may finish, idle ones close (the signal again stops at once)"
    );
    let started = std::time::Instant::now();
    let drained = reaktor.drain(started + drain_timeout, || {
        signals
            .pending()
            .any(|signal| signal != signal_hook::consts::SIGHUP)
    });
    let drain_ms = started.elapsed().as_millis() as u64;
    if drained {
        tracing::info!(drain_ms, "drained; shutting down");
    } else {
        tracing::info!(
            drain_ms,
            "drain cut short (drain_timeout_ms or a second signal); closing the rest"
        );
    }
    let clean = reaktor.stop();
    stop_reporter.store(true, Ordering::Relaxed);
    reporter.thread().unpark();
    let _ = reporter.join();
    if !clean {
        tracing::error!("stopped after a core failure");
        return ExitCode::FAILURE;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
