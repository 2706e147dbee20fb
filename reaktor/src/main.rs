//! `reaktor run --topology FILE` serves; `reaktor plan --topology FILE` prints the placement.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reaktor::plan::Placement;
use reaktor::runtime::Reaktor;
use reaktor::topology;

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
    /// Print which nukleus runs on which core, and the streams between them.
    Plan {
        #[arg(long, default_value = "examples/default.toml")]
        topology: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REAKTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Plan { topology } => match topology::load(&topology) {
            Ok(loaded) => {
                print!(
                    "{}",
                    Placement::from_topology(&loaded.topology).describe(&loaded.topology)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            topology,
            stream_dir,
        } => run(topology, stream_dir),
    }
}

fn run(topology: PathBuf, stream_dir: Option<PathBuf>) -> ExitCode {
    let loaded = match topology::load(&topology) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Install signal handlers before any thread starts, so every thread inherits them.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
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
    let signal = signals.forever().next();
    tracing::info!(?signal, "shutting down");
    reaktor.stop();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
