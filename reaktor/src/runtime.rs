//! Running a placement: stream files, one pinned thread per core polling its nuklei with an
//! idle strategy (spin, then yield, then block in epoll until a socket or a doorbell wakes
//! it), per-nukleus cost accounting, and a clean shutdown.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use streams::{
    ring, Doorbell, Link, Nukleus, PeerLink, PollContext, RingWatch, SharedMapping, TokenRange,
};

use crate::metrics::{InstanceEntry, RingEntry, SharedStats, STATS_FILE};
use crate::plan::Placement;
use crate::topology::LoadedTopology;

/// Token of a core's doorbell; nukleus `k` on a core owns tokens `[(k + 1) << 32, (k + 2) << 32)`.
const DOORBELL: Token = Token(0);
const TOKENS_PER_NUKLEUS: usize = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create stream directory {path}: {source}")]
    StreamDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Map(#[from] streams::MapError),
    #[error("{0}")]
    Tcp(#[from] nukleus_tcp::TcpError),
    /// A nukleus could not be built from its configuration.
    #[error("{kind}: {message}")]
    Nukleus { kind: String, message: String },
    #[error("cannot set up the poller of core {core}: {source}")]
    Poll { core: usize, source: io::Error },
    #[error("cannot register nukleus {name}: {source}")]
    Register { name: String, source: io::Error },
}

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
    fn publish_gauges(&self, nukleus: &dyn Nukleus, scratch: &mut Vec<(&'static str, u64)>) {
        scratch.clear();
        nukleus.gauges(scratch);
        if let Ok(mut gauges) = self.gauges.try_lock() {
            gauges.clear();
            gauges.extend_from_slice(scratch);
        }
    }
}

/// How often a core publishes its nuklei's gauges, and the stats file is rewritten.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
const STATS_FILE_INTERVAL: Duration = Duration::from_millis(500);

pub struct InstanceInfo {
    pub name: String,
    pub kind: String,
    pub core: usize,
    pub stats: Arc<NukleusStats>,
}

/// A running reaktor.
pub struct Reaktor {
    shutdown: Arc<AtomicBool>,
    /// Set when a core thread died of a panic.
    failed: Arc<AtomicBool>,
    doorbells: Vec<Arc<Doorbell>>,
    threads: Vec<JoinHandle<()>>,
    stats_thread: Option<JoinHandle<()>>,
    replan_thread: Option<JoinHandle<()>>,
    stream_dir: PathBuf,
    pub instances: Vec<InstanceInfo>,
    /// Everything measured, for the metrics nukleus, the stats file and embedders.
    pub stats: Arc<SharedStats>,
}

fn default_stream_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

struct CoreSetup {
    poll: Poll,
    doorbell: Arc<Doorbell>,
    nuklei: Vec<(Box<dyn Nukleus + Send>, Arc<NukleusStats>, String)>,
    watches: Vec<RingWatch>,
    cpu: Option<usize>,
    /// Idle strategy: spin this many idle iterations (cheap epoll checks), then yield this
    /// many, then park in epoll until a socket, a doorbell or a deadline wakes the core.
    idle_spins: u32,
    idle_yields: u32,
}

impl Reaktor {
    /// Builds every stream and nukleus, binds listeners, and starts the core threads.
    pub fn start(
        loaded: &LoadedTopology,
        stream_root: Option<&Path>,
    ) -> Result<Reaktor, StartError> {
        let topology = &loaded.topology;
        let placement = Placement::from_topology(topology);
        let root = stream_root
            .map(Path::to_owned)
            .or_else(|| topology.reaktor.stream_dir.clone())
            .unwrap_or_else(default_stream_root);
        let stream_dir = root.join(format!("reaktor-{}", std::process::id()));
        std::fs::create_dir_all(&stream_dir).map_err(|source| StartError::StreamDir {
            path: stream_dir.clone(),
            source,
        })?;
        let result = Self::build(loaded, &placement, &stream_dir);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&stream_dir);
        }
        result
    }

    fn build(
        loaded: &LoadedTopology,
        placement: &Placement,
        stream_dir: &Path,
    ) -> Result<Reaktor, StartError> {
        let topology = &loaded.topology;
        let capacity = *topology.reaktor.stream_capacity.get_ref();
        let mut cores = Vec::new();
        for (core, section) in topology.cores.iter().enumerate() {
            let poll = Poll::new().map_err(|source| StartError::Poll { core, source })?;
            let doorbell = Arc::new(
                Doorbell::new(poll.registry(), DOORBELL)
                    .map_err(|source| StartError::Poll { core, source })?,
            );
            let cpu = if topology.reaktor.pin {
                section.cpu.as_ref().map(|c| *c.get_ref())
            } else {
                None
            };
            cores.push(CoreSetup {
                poll,
                doorbell,
                nuklei: Vec::new(),
                watches: Vec::new(),
                cpu,
                idle_spins: topology.reaktor.idle_spins,
                idle_yields: topology.reaktor.idle_yields,
            });
        }

        // Two rings per linked pair; each side gets a Link (its tx, the other's tx as rx).
        let mut links: Vec<Vec<PeerLink>> =
            placement.instances.iter().map(|_| Vec::new()).collect();
        let mut ring_entries = Vec::new();
        for &(a, b) in &placement.links {
            let (x, y) = (&placement.instances[a], &placement.instances[b]);
            let file = |from: &crate::plan::Instance, to: &crate::plan::Instance| {
                let label = format!("{} -> {}", from.name(), to.name());
                SharedMapping::create(
                    &stream_dir.join(format!("{}-{}", from.name(), to.name())),
                    capacity,
                    &label,
                )
            };
            let (a_tx, b_rx) = ring(file(x, y)?);
            let (b_tx, a_rx) = ring(file(y, x)?);
            // Frames are counted for the instance that reads them (a tcp.out for a split tcp).
            ring_entries.push(RingEntry {
                from: a,
                to: placement.reader(b),
                watch: b_rx.watch(),
            });
            ring_entries.push(RingEntry {
                from: b,
                to: placement.reader(a),
                watch: a_rx.watch(),
            });
            // A tcp instance split by direction writes on its core and reads on its tcp.out's.
            let (a_reader, b_reader) = (placement.reader_core(a), placement.reader_core(b));
            cores[b_reader].watches.push(b_rx.watch());
            cores[a_reader].watches.push(a_rx.watch());
            links[a].push(PeerLink {
                kind: y.kind.clone(),
                core: y.core,
                link: Link {
                    peer: y.name(),
                    tx: a_tx,
                    rx: a_rx,
                    peer_doorbell: (x.core != b_reader).then(|| cores[b_reader].doorbell.clone()),
                },
            });
            links[b].push(PeerLink {
                kind: x.kind.clone(),
                core: x.core,
                link: Link {
                    peer: x.name(),
                    tx: b_tx,
                    rx: b_rx,
                    peer_doorbell: (y.core != a_reader).then(|| cores[a_reader].doorbell.clone()),
                },
            });
        }

        let all_stats: Vec<Arc<NukleusStats>> = placement
            .instances
            .iter()
            .map(|_| Arc::new(NukleusStats::default()))
            .collect();
        let start = Instant::now();
        let shared = Arc::new(SharedStats {
            started: start,
            pid: std::process::id(),
            instances: placement
                .instances
                .iter()
                .zip(&all_stats)
                .map(|(instance, stats)| InstanceEntry {
                    name: instance.name(),
                    kind: instance.kind.clone(),
                    core: instance.core,
                    stats: stats.clone(),
                })
                .collect(),
            rings: ring_entries,
        });
        // Runtime re-plan: the tcp instances steer new connections between them.
        let tcp_cores: Vec<usize> = placement
            .instances
            .iter()
            .filter(|i| i.kind == "tcp")
            .map(|i| i.core)
            .collect();
        let replan = *topology.reaktor.replan_interval_ms.get_ref();
        let steering = (replan > 0 && tcp_cores.len() > 1)
            .then(|| nukleus_tcp::Steering::new(tcp_cores.len()));
        // Build every nukleus; a tcp instance split by direction also yields its tcp.out's.
        let mut built: Vec<Option<Box<dyn Nukleus + Send>>> =
            placement.instances.iter().map(|_| None).collect();
        for (i, (instance, links)) in placement.instances.iter().zip(links).enumerate() {
            if instance.kind == crate::topology::TCP_OUT {
                continue;
            }
            let pair = placement.direction_pairs.iter().find(|(tcp, _)| *tcp == i);
            if let Some(&(_, out)) = pair {
                let out_core = placement.instances[out].core;
                let (input, output) = crate::kinds::build_tcp_split(
                    loaded,
                    instance,
                    links,
                    steering.as_ref(),
                    cores[instance.core].doorbell.clone(),
                    cores[out_core].doorbell.clone(),
                )?;
                built[i] = Some(input);
                built[out] = Some(output);
            } else {
                built[i] = Some(crate::kinds::build(
                    loaded,
                    instance,
                    links,
                    &shared,
                    steering.as_ref(),
                )?);
            }
        }
        let mut instances = Vec::new();
        for (i, (instance, nukleus)) in placement.instances.iter().zip(built).enumerate() {
            let nukleus = nukleus.expect("validation pairs every tcp.out with a tcp");
            let stats = all_stats[i].clone();
            instances.push(InstanceInfo {
                name: instance.name(),
                kind: instance.kind.clone(),
                core: instance.core,
                stats: stats.clone(),
            });
            cores[instance.core]
                .nuklei
                .push((nukleus, stats, instance.name()));
        }

        for core in cores.iter_mut() {
            for (k, (nukleus, _, name)) in core.nuklei.iter_mut().enumerate() {
                let tokens = TokenRange {
                    first: (k + 1) * TOKENS_PER_NUKLEUS,
                    count: TOKENS_PER_NUKLEUS,
                };
                nukleus
                    .register(core.poll.registry(), tokens)
                    .map_err(|source| StartError::Register {
                        name: name.clone(),
                        source,
                    })?;
            }
        }

        let shutdown = Arc::new(AtomicBool::new(false));
        let doorbells: Vec<Arc<Doorbell>> = cores.iter().map(|c| c.doorbell.clone()).collect();
        let mut threads = Vec::new();
        let failed = Arc::new(AtomicBool::new(false));
        // Each core thread's id, for the re-plan's scheduler statistics.
        let core_tids: Arc<Vec<AtomicU64>> =
            Arc::new(cores.iter().map(|_| AtomicU64::new(0)).collect());
        for (index, core) in cores.into_iter().enumerate() {
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
                    let run =
                        std::panic::AssertUnwindSafe(|| run_core(index, core, shutdown, start));
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
            let (shared, shutdown, dir) = (shared.clone(), shutdown.clone(), stream_dir.to_owned());
            std::thread::Builder::new()
                .name("reaktor-stats".into())
                .spawn(move || write_stats_file(&shared, &shutdown, &dir))
                .expect("spawning the stats thread")
        };
        let replan_thread = steering.map(|steering| {
            let shutdown = shutdown.clone();
            let interval = Duration::from_millis(replan);
            tracing::info!(
                interval_ms = replan,
                "runtime re-plan on: new connections move away from a core whose thread gets {}x less of its cpu than the best core's",
                crate::replan::POORER
            );
            let core_tids = core_tids.clone();
            std::thread::Builder::new()
                .name("reaktor-replan".into())
                .spawn(move || {
                    crate::replan::run(steering, tcp_cores, core_tids, interval, shutdown)
                })
                .expect("spawning the re-plan thread")
        });
        Ok(Reaktor {
            shutdown,
            failed,
            doorbells,
            threads,
            stats_thread: Some(stats_thread),
            replan_thread,
            stream_dir: stream_dir.to_owned(),
            instances,
            stats: shared,
        })
    }

    pub fn stream_dir(&self) -> &Path {
        &self.stream_dir
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
        for thread in [self.stats_thread, self.replan_thread]
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

fn run_core(index: usize, mut core: CoreSetup, shutdown: Arc<AtomicBool>, start: Instant) {
    if let Some(cpu) = core.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            tracing::warn!(
                core = index,
                cpu,
                "cannot pin core thread; running unpinned"
            );
        }
    }
    tracing::debug!(core = index, nuklei = core.nuklei.len(), "core running");
    let mut events = Events::with_capacity(1024);
    let mut idle = 0u32;
    let mut gauge_scratch = Vec::new();
    let mut gauges_published = start;
    let mut gauges_stale = true;
    while !shutdown.load(Ordering::Relaxed) {
        let mut now = Instant::now();
        // Gauges: at most once a second while busy, and once more before parking so an idle
        // core's last state is visible.
        if gauges_stale
            && (idle == core.idle_spins.max(1)
                || now.duration_since(gauges_published) >= GAUGE_INTERVAL)
        {
            for (nukleus, stats, _) in core.nuklei.iter() {
                stats.publish_gauges(&**nukleus, &mut gauge_scratch);
            }
            gauges_published = now;
            gauges_stale = false;
        }
        let mut work = 0;
        for (nukleus, stats, _) in core.nuklei.iter_mut() {
            let context = PollContext {
                now,
                timestamp: now.duration_since(start).as_nanos() as u64,
                core: index,
            };
            let done = nukleus.poll(&context);
            let after = Instant::now();
            if done > 0 {
                // Busy time is charged only to polls that did something: idle polls are the
                // idle strategy's cost, not the stage's.
                stats.busy_nanos.fetch_add(
                    after.duration_since(now).as_nanos() as u64,
                    Ordering::Relaxed,
                );
                stats.work.fetch_add(done as u64, Ordering::Relaxed);
            }
            stats.polls.fetch_add(1, Ordering::Relaxed);
            work += done;
            now = after;
        }
        let timeout = if work > 0 {
            idle = 0;
            gauges_stale = true;
            Some(Duration::ZERO)
        } else {
            idle = idle.saturating_add(1);
            if idle <= core.idle_spins {
                Some(Duration::ZERO)
            } else if idle <= core.idle_spins + core.idle_yields {
                std::thread::yield_now();
                Some(Duration::ZERO)
            } else {
                core.doorbell.park();
                if core.watches.iter().any(|w| w.has_pending())
                    || core.nuklei.iter().any(|(n, _, _)| n.has_pending())
                    || shutdown.load(Ordering::SeqCst)
                {
                    core.doorbell.unpark();
                    Some(Duration::ZERO)
                } else {
                    let deadline = core
                        .nuklei
                        .iter()
                        .filter_map(|(n, _, _)| n.deadline())
                        .min();
                    deadline.map(|d| d.saturating_duration_since(Instant::now()))
                }
            }
        };
        if let Err(e) = core.poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(core = index, error = %e, "epoll failed");
            }
        }
        core.doorbell.unpark();
        for event in events.iter() {
            let token = event.token().0;
            if token == DOORBELL.0 {
                continue;
            }
            if let Some((nukleus, _, _)) = core.nuklei.get_mut(token / TOKENS_PER_NUKLEUS - 1) {
                nukleus.on_event(event);
            }
        }
    }
    for (nukleus, _, _) in core.nuklei.iter_mut() {
        nukleus.shutdown();
    }
    tracing::debug!(core = index, "core stopped");
}
