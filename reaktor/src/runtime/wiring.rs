//! Wiring a placement: one poller and doorbell per core, two rings per linked pair of
//! instances (each end's link told the peer's role from the plan), every nukleus built by its
//! kind and registered with its core's poller.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mio::Poll;
use streams::{ring, Doorbell, Link, PeerLink, SharedMapping, TokenRange};

use super::core::{Core, Placed, DOORBELL, TOKENS_PER_NUKLEUS};
use super::idle::IdleStrategy;
use crate::error::StartError;
use crate::kind::{BoxedNukleus, Build, Instance};
use crate::kinds::{self, Registry};
use crate::plan::{role, Placement};
use crate::stats::{InstanceEntry, NukleusStats, RingEntry, SharedStats};
use crate::topology::{LoadedTopology, TCP_OUT};

/// One nukleus instance as the embedder sees it.
pub struct InstanceInfo {
    pub name: String,
    pub kind: String,
    pub core: usize,
    pub stats: Arc<NukleusStats>,
}

/// A wired placement, ready for its core threads.
pub struct Wired {
    pub cores: Vec<Core>,
    /// The kinds' reload hooks.
    pub reloads: Arc<crate::reload::Reloads>,
    pub instances: Vec<InstanceInfo>,
    pub stats: Arc<SharedStats>,
    /// The re-plan's steering of new connections between the tcp instances, when on.
    pub steering: Option<Arc<nukleus_tcp::Steering>>,
    /// The core of each tcp instance, in steering order.
    pub tcp_cores: Vec<usize>,
}

/// A poller and doorbell per `[[core]]`.
fn cores(loaded: &LoadedTopology) -> Result<Vec<Core>, StartError> {
    let reaktor = &loaded.topology.reaktor;
    let mut cores = Vec::new();
    for (core, section) in loaded.topology.cores.iter().enumerate() {
        let poll = Poll::new().map_err(|source| StartError::Poll { core, source })?;
        let doorbell = Arc::new(
            Doorbell::new(poll.registry(), DOORBELL)
                .map_err(|source| StartError::Poll { core, source })?,
        );
        let cpu = if reaktor.pin {
            section.cpu.as_ref().map(|c| *c.get_ref())
        } else {
            None
        };
        cores.push(Core {
            poll,
            doorbell,
            nuklei: Vec::new(),
            watches: Vec::new(),
            cpu,
            idle: IdleStrategy::new(reaktor.idle_spins, reaktor.idle_yields),
            control: Arc::default(),
        });
    }
    Ok(cores)
}

/// Two rings per linked pair; each side gets a link (its tx, the other's tx as rx) with the
/// peer's role. Returns every instance's links and the rings for the measurements.
fn links(
    placement: &Placement,
    cores: &mut [Core],
    stream_dir: &Path,
    capacity: usize,
) -> Result<(Vec<Vec<PeerLink>>, Vec<RingEntry>), StartError> {
    let mut links: Vec<Vec<PeerLink>> = placement.instances.iter().map(|_| Vec::new()).collect();
    let mut ring_entries = Vec::new();
    for &(a, b) in &placement.links {
        let (x, y) = (&placement.instances[a], &placement.instances[b]);
        let file = |from: &Instance, to: &Instance| {
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
            role: role(&x.kind, &y.kind),
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
            role: role(&y.kind, &x.kind),
            link: Link {
                peer: x.name(),
                tx: b_tx,
                rx: b_rx,
                peer_doorbell: (y.core != a_reader).then(|| cores[a_reader].doorbell.clone()),
            },
        });
    }
    Ok((links, ring_entries))
}

/// Builds every stream and nukleus of `placement` and registers the nuklei with their cores.
pub fn wire(
    loaded: &LoadedTopology,
    placement: &Placement,
    stream_dir: &Path,
    start: Instant,
) -> Result<Wired, StartError> {
    let topology = &loaded.topology;
    let mut cores = cores(loaded)?;
    let capacity = *topology.reaktor.stream_capacity.get_ref();
    let (links, ring_entries) = links(placement, &mut cores, stream_dir, capacity)?;

    let all_stats: Vec<Arc<NukleusStats>> = placement
        .instances
        .iter()
        .map(|_| Arc::new(NukleusStats::default()))
        .collect();
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
        events: Default::default(),
    });
    // Runtime re-plan: the instances that accept connections (the kinds facing the network)
    // steer new connections between them.
    let tcp_cores: Vec<usize> = placement
        .instances
        .iter()
        .filter(|i| kinds::kind(&i.kind).is_some_and(|k| k.accepts().is_empty() && !k.runs_alone()))
        .map(|i| i.core)
        .collect();
    let replan = *topology.reaktor.replan_interval_ms.get_ref();
    let steering =
        (replan > 0 && tcp_cores.len() > 1).then(|| nukleus_tcp::Steering::new(tcp_cores.len()));

    // What the kinds apply of the topology file read again while running.
    let path = loaded.path.clone();
    let reloads = crate::reload::Reloads::new(Box::new(move || crate::kinds::load(&path)));
    // A cluster member's standing: written by its election, read by its switch instances.
    let mastership = loaded
        .cluster
        .as_ref()
        .map(|_| Arc::new(streams::Mastership::new()));
    // The machinery of kinds that sit above placement (the console plans topologies).
    let machinery = crate::console::Machinery::default();
    // Build every nukleus; a tcp instance split by direction also yields its tcp.out's.
    let mut built: Vec<Option<BoxedNukleus>> = placement.instances.iter().map(|_| None).collect();
    for (i, (instance, links)) in placement.instances.iter().zip(links).enumerate() {
        if instance.kind == TCP_OUT {
            continue;
        }
        let kind = kinds::kind(&instance.kind).expect("placement admits only registered kinds");
        let build = Build {
            loaded,
            instance,
            links,
            stats: &shared,
            steering: steering.as_ref(),
            kinds: &Registry,
            doorbell: &cores[instance.core].doorbell,
            mastership: mastership.as_ref(),
            reloads: &reloads,
            machinery: &machinery,
        };
        let pair = placement.direction_pairs.iter().find(|(tcp, _)| *tcp == i);
        if let Some(&(_, out)) = pair {
            let out_core = placement.instances[out].core;
            let (input, output) = kind
                .build_split(
                    build,
                    cores[instance.core].doorbell.clone(),
                    cores[out_core].doorbell.clone(),
                )
                .unwrap_or_else(|| {
                    Err(StartError::Nukleus {
                        kind: instance.kind.clone(),
                        message: format!("`{}` cannot be split by direction", instance.kind),
                    })
                })?;
            built[i] = Some(input);
            built[out] = Some(output);
        } else {
            built[i] = Some(kind.build(build)?);
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
        if kinds::kind(&instance.kind).is_some_and(|k| k.runs_alone()) {
            cores[instance.core].idle = IdleStrategy::alone();
        }
        cores[instance.core].nuklei.push(Placed {
            nukleus,
            stats,
            name: instance.name(),
        });
    }
    register(&mut cores)?;
    Ok(Wired {
        cores,
        reloads,
        instances,
        stats: shared,
        steering,
        tcp_cores,
    })
}

/// Registers every nukleus's sockets with its core's poller, each in its own token range.
fn register(cores: &mut [Core]) -> Result<(), StartError> {
    for core in cores.iter_mut() {
        for (k, placed) in core.nuklei.iter_mut().enumerate() {
            let tokens = TokenRange {
                first: (k + 1) * TOKENS_PER_NUKLEUS,
                count: TOKENS_PER_NUKLEUS,
            };
            placed
                .nukleus
                .register(core.poll.registry(), tokens)
                .map_err(|source| StartError::Register {
                    name: placed.name.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}
