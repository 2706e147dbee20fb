//! Running a placement: stream files under `<stream_dir>/reaktor-<pid>/`, the wiring of rings
//! and nuklei (`wiring`), one pinned thread per core running its duty cycle (`core`) with an
//! idle strategy (`idle`), the stats file, the opt-in re-plan thread, and a clean shutdown.

mod core;
mod idle;
pub mod memory;
mod wiring;

pub use idle::{Idle, IdleStrategy};
pub use wiring::InstanceInfo;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use streams::layout::file_length;
use streams::{Doorbell, MapError};

use crate::error::StartError;
use crate::plan::Placement;
use crate::stats::{SharedStats, STATS_FILE};
use crate::topology::LoadedTopology;
use crate::{sizing, streamdir};

/// How often the stats file is rewritten.
const STATS_FILE_INTERVAL: Duration = Duration::from_millis(500);

/// A running reaktor.
pub struct Reaktor {
    shutdown: Arc<AtomicBool>,
    /// Set when a core thread died of a panic.
    failed: Arc<AtomicBool>,
    doorbells: Vec<Arc<Doorbell>>,
    controls: Vec<Arc<core::CoreControl>>,
    threads: Vec<JoinHandle<()>>,
    stats_thread: Option<JoinHandle<()>>,
    memory_thread: Option<JoinHandle<()>>,
    replan_thread: Option<JoinHandle<()>>,
    stream_dir: PathBuf,
    reloads: Arc<crate::reload::Reloads>,
    pub instances: Vec<InstanceInfo>,
    /// Everything measured, for the metrics nukleus, the stats file and embedders.
    pub stats: Arc<SharedStats>,
}

impl Reaktor {
    /// Builds every stream and nukleus of a placed topology (see `place::place`), binds
    /// listeners, and starts the core threads.
    pub fn start(
        loaded: &LoadedTopology,
        stream_root: Option<&Path>,
    ) -> Result<Reaktor, StartError> {
        let topology = &loaded.topology;
        let placement = Placement::from_topology(loaded);
        let root = stream_root
            .map(Path::to_owned)
            .or_else(|| topology.reaktor.stream_dir.clone())
            .unwrap_or_else(streamdir::default_root);
        let stream_dir = streamdir::dir_of(std::process::id(), Some(&root));
        create_stream_dir(&stream_dir)?;
        remove_dead_stream_dirs(&root, &stream_dir);
        let capacity = *topology.reaktor.stream_capacity.get_ref();
        let space_error = |available: u64| StartError::StreamSpace {
            dir: stream_dir.clone(),
            available: sizing::mib(available),
            needed: sizing::mib(sizing::stream_space(2 * placement.links.len(), capacity)),
            files: 2 * placement.links.len(),
            file_size: sizing::mib(file_length(capacity) as u64),
            capacity,
        };
        let needed = sizing::stream_space(2 * placement.links.len(), capacity);
        let result = match streams::available_space(&stream_dir) {
            Ok(available) if available < needed => Err(space_error(available)),
            // The files reserve their blocks as they are created: one that finds no room
            // (something else took it meanwhile) is the same error.
            _ => Self::launch(loaded, &placement, &stream_dir).map_err(|e| match e {
                StartError::Map(MapError::NoSpace { .. }) => {
                    space_error(streams::available_space(&stream_dir).unwrap_or(0))
                }
                e => e,
            }),
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&stream_dir);
        }
        result
    }

    fn launch(
        loaded: &LoadedTopology,
        placement: &Placement,
        stream_dir: &Path,
    ) -> Result<Reaktor, StartError> {
        let start = Instant::now();
        let wired = wiring::wire(loaded, placement, stream_dir, start)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let doorbells: Vec<Arc<Doorbell>> =
            wired.cores.iter().map(|c| c.doorbell.clone()).collect();
        let controls: Vec<Arc<core::CoreControl>> =
            wired.cores.iter().map(|c| c.control.clone()).collect();
        // Each core thread's id, for the re-plan's scheduler statistics.
        let core_tids: Arc<Vec<AtomicU64>> =
            Arc::new(wired.cores.iter().map(|_| AtomicU64::new(0)).collect());
        let mut threads = Vec::new();
        for (index, core) in wired.cores.into_iter().enumerate() {
            let (shutdown, failed) = (shutdown.clone(), failed.clone());
            let tids = core_tids.clone();
            let handle = std::thread::Builder::new()
                .name(format!("reaktor-core{index}"))
                .spawn(move || {
                    // Nuklei must not panic (bad input gets an error on its own stream). If
                    // one does anyway, a silently dead core would leave the server half up:
                    // stop the whole reaktor with a failure status so a supervisor restarts it.
                    if let Some(tid) = crate::replan::current_tid() {
                        tids[index].store(tid, Ordering::Relaxed);
                    }
                    let run = std::panic::AssertUnwindSafe(|| core.run(index, &shutdown, start));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(core = index, "a nukleus panicked; stopping the reaktor");
                        failed.store(true, Ordering::SeqCst);
                        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
                    }
                })
                .expect("spawning a core thread");
            threads.push(handle);
        }
        let stats_thread = {
            let (shared, shutdown, dir) =
                (wired.stats.clone(), shutdown.clone(), stream_dir.to_owned());
            std::thread::Builder::new()
                .name("reaktor-stats".into())
                .spawn(move || write_stats_file(&shared, &shutdown, &dir))
                .expect("spawning the stats thread")
        };
        let memory_thread = {
            let guard = memory::Guard {
                controls: controls.clone(),
                doorbells: doorbells.clone(),
                limit: memory::limit_of(*loaded.topology.reaktor.max_memory_bytes.get_ref()),
            };
            if let Some(limit) = guard.limit {
                tracing::debug!(limit_mib = limit >> 20, "memory limit");
            }
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("reaktor-memory".into())
                .spawn(move || guard.run(&shutdown))
                .expect("spawning the memory thread")
        };
        let replan = *loaded.topology.reaktor.replan_interval_ms.get_ref();
        let tcp_cores = wired.tcp_cores;
        let replan_thread = wired.steering.map(|steering| {
            let shutdown = shutdown.clone();
            let interval = Duration::from_millis(replan);
            tracing::info!(
                interval_ms = replan,
                "runtime re-plan on: new connections move away from a core whose thread gets {}x less of its cpu than the best core's",
                crate::replan::POORER
            );
            let core_tids = core_tids.clone();
            let stats = wired.stats.clone();
            std::thread::Builder::new()
                .name("reaktor-replan".into())
                .spawn(move || {
                    crate::replan::run(steering, tcp_cores, core_tids, interval, shutdown, &stats)
                })
                .expect("spawning the re-plan thread")
        });
        Ok(Reaktor {
            shutdown,
            failed,
            doorbells,
            controls,
            threads,
            stats_thread: Some(stats_thread),
            memory_thread: Some(memory_thread),
            replan_thread,
            stream_dir: stream_dir.to_owned(),
            reloads: wired.reloads,
            instances: wired.instances,
            stats: wired.stats,
        })
    }

    pub fn stream_dir(&self) -> &Path {
        &self.stream_dir
    }

    /// Graceful stop: every core stops accepting, lets what is in flight finish and closes
    /// what is idle; returns once every core is drained (true), or at `deadline` or when
    /// `interrupted()` says so (false). Call [`stop`](Self::stop) after it.
    pub fn drain(&self, deadline: Instant, mut interrupted: impl FnMut() -> bool) -> bool {
        for (control, doorbell) in self.controls.iter().zip(&self.doorbells) {
            control.request_drain();
            doorbell.ring_always();
        }
        loop {
            if self.controls.iter().all(|c| c.is_drained()) {
                return true;
            }
            if Instant::now() >= deadline || interrupted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads the topology file again and applies what can be applied while running (the
    /// switch's tokens); what was applied, or why the file was refused.
    pub fn reload(&self) -> Result<Vec<String>, crate::reload::ReloadError> {
        self.reloads.reload()
    }

    /// Stops every core (listeners closed, connections shut), joins the threads and removes
    /// the stream files. Returns false if a core had died of a panic.
    pub fn stop(self) -> bool {
        self.shutdown.store(true, Ordering::SeqCst);
        for doorbell in &self.doorbells {
            doorbell.ring_always();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        for thread in [self.stats_thread, self.replan_thread, self.memory_thread]
            .into_iter()
            .flatten()
        {
            thread.thread().unpark();
            let _ = thread.join();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.stream_dir) {
            tracing::warn!(error = %e, dir = %self.stream_dir.display(), "cannot remove stream directory");
        }
        !self.failed.load(Ordering::SeqCst)
    }
}

/// Creates this process's stream directory with its owner file (one left by an earlier
/// process with this pid goes first).
fn create_stream_dir(dir: &Path) -> Result<(), StartError> {
    let fail = |source| StartError::StreamDir {
        path: dir.to_owned(),
        source,
    };
    streamdir::clear_own(dir).map_err(fail)?;
    std::fs::create_dir_all(dir).map_err(fail)?;
    match streamdir::OwnerRecord::current() {
        Ok(me) => me.write(dir).map_err(fail)?,
        // Without /proc the directory cannot be judged later; it is still usable.
        Err(e) => tracing::warn!(error = %e, "cannot describe this process; no owner file"),
    }
    Ok(())
}

/// Removes the stream directories under `root` of reaktors that are gone (`kill -9`, a crash),
/// logging each; never fails the start.
fn remove_dead_stream_dirs(root: &Path, own: &Path) {
    match streamdir::remove_dead(root, own) {
        Ok(sweep) => {
            for r in sweep.removed {
                tracing::info!(
                    dir = %r.dir.display(),
                    pid = r.pid,
                    freed_mib = r.bytes >> 20,
                    reason = %r.reason,
                    "removed the stream directory of a reaktor that is gone"
                );
            }
            for (dir, why) in sweep.skipped {
                tracing::warn!(dir = %dir.display(), why = %why, "left a stream directory in place that may be stale");
            }
        }
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot look for stale stream directories")
        }
    }
}

/// Rewrites `<dir>/stats` (write a temporary file, then rename, so readers never see half a
/// file) every [`STATS_FILE_INTERVAL`] until shutdown: `reaktor top` and `reaktor plan
/// --measured` read it from other processes.
fn write_stats_file(shared: &SharedStats, shutdown: &AtomicBool, dir: &Path) {
    let path = dir.join(STATS_FILE);
    let temporary = dir.join(format!(".{STATS_FILE}.tmp"));
    let mut warned = false;
    while !shutdown.load(Ordering::Relaxed) {
        let text = shared.snapshot().to_stats_file();
        let result =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = result {
            if !warned {
                tracing::warn!(error = %e, path = %path.display(), "cannot write the stats file");
                warned = true;
            }
        }
        std::thread::park_timeout(STATS_FILE_INTERVAL);
    }
}
