//! The placement step: which nuklei run on which core. With `placement = "auto"` the planner
//! fills in every `[[core]]`; then the placed topology is checked as a whole (known kinds,
//! chains that fit together, routes to placed kinds, each kind's own checks, a
//! `stream_capacity` that carries the kinds' windows and records). `main` calls it
//! after loading the topology and before starting the runtime.

use std::collections::BTreeSet;

use toml::Spanned;

use crate::error::{Invalid, TopologyError};
use crate::kind::Check;
use crate::kinds::{self, Registry};
use crate::plan::kind_edges;
use crate::planner::{self, stage_kinds, Plan};
use crate::sizing;
use crate::topology::{
    validate_direction_split, CoreSection, LoadedTopology, PlacementMode, TCP_OUT,
};

/// Places the nuklei of `loaded` (filling in the cores with placement = "auto") and checks
/// the result. Returns the planner's decisions when it made them.
pub fn place(loaded: &mut LoadedTopology) -> Result<Option<Plan>, TopologyError> {
    let (path, text) = (loaded.path.clone(), loaded.text.clone());
    let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
        crate::topology::invalid_at(&path, &text, span, message)
    };
    let plan = fill_cores(loaded, &invalid)?;
    add_required_cores(loaded);
    check(loaded, &invalid)?;
    Ok(plan)
}

/// A kind the topology needs although no chain or route names it, and that no core lists,
/// gets a core of its own, unpinned (the election of a `[cluster]` member).
fn add_required_cores(loaded: &mut LoadedTopology) {
    for kind in kinds::REGISTRY {
        let listed = loaded
            .topology
            .cores
            .iter()
            .any(|c| c.nuklei.get_ref().iter().any(|k| k == kind.name()));
        if kind.runs_alone() && kind.required(loaded) && !listed {
            loaded.topology.cores.push(CoreSection {
                cpu: None,
                nuklei: Spanned::new(0..0, vec![kind.name().to_owned()]),
            });
        }
    }
}

/// Checks a placed topology.
fn check(loaded: &LoadedTopology, invalid: Invalid<'_>) -> Result<(), TopologyError> {
    let topology = &loaded.topology;
    if topology.cores.is_empty() {
        return Err(invalid(
            None,
            "no [[core]] sections: declare at least one core and the nuklei it runs".into(),
        ));
    }
    let mut placed = BTreeSet::new();
    for core in &topology.cores {
        if core.nuklei.get_ref().is_empty() {
            return Err(invalid(
                Some(core.nuklei.span()),
                "a core must run at least one nukleus".into(),
            ));
        }
        for kind in core.nuklei.get_ref() {
            if kinds::kind(kind).is_none() && kind != TCP_OUT {
                return Err(invalid(
                    Some(core.nuklei.span()),
                    format!(
                        "unknown nukleus kind `{kind}`; known kinds: {}, and `{TCP_OUT}` (the output half of a tcp instance split by direction)",
                        kinds::names().join(", ")
                    ),
                ));
            }
            placed.insert(kind.clone());
        }
        if let Some(cpu) = &core.cpu {
            let available = std::thread::available_parallelism().map_or(1, |n| n.get());
            if *cpu.get_ref() >= available && topology.reaktor.pin {
                return Err(invalid(
                    Some(cpu.span()),
                    format!(
                        "cpu {} does not exist: this machine has cpus 0..{}",
                        cpu.get_ref(),
                        available - 1
                    ),
                ));
            }
        }
    }
    validate_direction_split(topology, invalid)?;
    for listener in &topology.listeners {
        let chain = listener.chain.get_ref();
        let faces_network = chain
            .first()
            .and_then(|k| kinds::kind(k))
            .is_some_and(|k| k.accepts().is_empty() && !k.runs_alone());
        if !faces_network || chain.len() < 2 {
            return Err(invalid(
                Some(listener.chain.span()),
                format!("listener `{}`: chain must start with \"tcp\" and name the next nukleus, e.g. [\"tcp\", \"http\"]", listener.name),
            ));
        }
        for kind in chain {
            if kind == TCP_OUT {
                return Err(invalid(
                    Some(listener.chain.span()),
                    format!("listener `{}`: `{TCP_OUT}` is the output half of a tcp instance and goes in a [[core]] list, not in a chain; the chain starts with \"tcp\"", listener.name),
                ));
            }
            if !placed.contains(kind) {
                return Err(invalid(
                    Some(listener.chain.span()),
                    format!(
                        "listener `{}`: nukleus `{kind}` is not placed on any [[core]]",
                        listener.name
                    ),
                ));
            }
        }
    }
    let edges = kind_edges(loaded);
    let check = Check {
        loaded,
        edges: &edges,
        invalid,
        kinds: &Registry,
    };
    for kind in kinds::REGISTRY {
        kind.validate(&check)?;
    }
    let needs: Vec<_> = kinds::REGISTRY
        .iter()
        .filter(|k| placed.contains(k.name()))
        .flat_map(|k| k.stream_needs(loaded))
        .collect();
    let capacity = &topology.reaktor.stream_capacity;
    sizing::check_capacity(*capacity.get_ref(), &needs)
        .map_err(|message| invalid(Some(capacity.span()), message))?;
    // Every pair that exchanges streams must fit: the application side accepts what the
    // network side offers.
    for listener in &topology.listeners {
        for pair in listener.chain.get_ref().windows(2) {
            if kinds::carries(&pair[0], &pair[1]).is_none() {
                return Err(invalid(
                    Some(listener.chain.span()),
                    mismatch(&pair[0], &pair[1]),
                ));
            }
        }
    }
    for kind in kinds::REGISTRY {
        for route in kind.routes(loaded) {
            if kinds::carries(kind.name(), route.to.get_ref()).is_none() {
                return Err(invalid(
                    Some(route.to.span()),
                    mismatch(kind.name(), route.to.get_ref()),
                ));
            }
        }
    }
    Ok(())
}

fn mismatch(network: &str, application: &str) -> String {
    let offer = kinds::kind(network).and_then(|k| k.offers());
    let accepts = kinds::kind(application).map(|k| k.accepts()).unwrap_or(&[]);
    format!("`{network}` cannot hand its streams to `{application}`: `{network}` offers {offer:?}, `{application}` accepts {accepts:?}")
}

/// Validates `[cost]` and the placement keys; with placement = "auto", plans and fills in the
/// nuklei of every core. Returns the plan when it made one.
fn fill_cores(
    loaded: &mut LoadedTopology,
    invalid: Invalid<'_>,
) -> Result<Option<Plan>, TopologyError> {
    let topology = &loaded.topology;
    for (key, value) in &topology.cost {
        if key != "hop" && key != TCP_OUT && kinds::kind(key).is_none() {
            return Err(invalid(
                Some(value.span()),
                format!(
                    "[cost] `{key}` is not a nukleus kind; known kinds: {}, `tcp.out` (the part of tcp's cost spent writing), and `hop`",
                    kinds::names().join(", ")
                ),
            ));
        }
        if !value.get_ref().is_finite() || *value.get_ref() < 0.0 {
            return Err(invalid(
                Some(value.span()),
                format!("[cost] `{key}` must be a finite number >= 0"),
            ));
        }
    }
    let section = &topology.reaktor;
    let auto = section
        .placement
        .as_ref()
        .is_some_and(|p| *p.get_ref() == PlacementMode::Auto);
    if !auto {
        if let Some(cores) = &section.cores {
            return Err(invalid(Some(cores.span()), "`cores` is only used with placement = \"auto\"; list the nuklei of each [[core]] instead".into()));
        }
        if let Some(cpus) = &section.cpus {
            return Err(invalid(
                Some(cpus.span()),
                "`cpus` is only used with placement = \"auto\"; give each [[core]] a `cpu` instead"
                    .into(),
            ));
        }
        for (n, core) in topology.cores.iter().enumerate() {
            if core.nuklei.span() == (0..0) {
                return Err(invalid(
                    core.cpu.as_ref().map(|c| c.span()),
                    format!("[[core]] number {} has no `nuklei`: list the nuklei it runs, or set placement = \"auto\" in [reaktor]", n + 1),
                ));
            }
        }
        return Ok(None);
    }
    let placement_span = section.placement.as_ref().map(|p| p.span()).unwrap_or(0..0);
    for core in &topology.cores {
        if core.nuklei.span() != (0..0) {
            return Err(invalid(
                Some(core.nuklei.span()),
                "with placement = \"auto\" the planner chooses each core's nuklei: give [[core]] only a `cpu`, or set placement = \"explicit\"".into(),
            ));
        }
    }
    let sources = [
        !topology.cores.is_empty(),
        section.cores.is_some(),
        section.cpus.is_some(),
    ];
    if sources.iter().filter(|&&s| s).count() > 1 {
        return Err(invalid(
            Some(placement_span),
            "give the cores of an auto placement one way only: [[core]] sections with a `cpu`, `cores = N`, or `cpus = [...]`".into(),
        ));
    }
    let cpus: Vec<Option<Spanned<usize>>> = if !topology.cores.is_empty() {
        topology.cores.iter().map(|c| c.cpu.clone()).collect()
    } else if let Some(cores) = &section.cores {
        if *cores.get_ref() == 0 || *cores.get_ref() > 1024 {
            return Err(invalid(
                Some(cores.span()),
                "`cores` must be between 1 and 1024".into(),
            ));
        }
        vec![None; *cores.get_ref()]
    } else if let Some(cpus) = &section.cpus {
        if cpus.get_ref().is_empty() {
            return Err(invalid(
                Some(cpus.span()),
                "`cpus` must list at least one cpu".into(),
            ));
        }
        cpus.get_ref()
            .iter()
            .map(|&c| Some(Spanned::new(cpus.span(), c)))
            .collect()
    } else {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..available)
            .map(|c| Some(Spanned::new(placement_span.clone(), c)))
            .collect()
    };
    if stage_kinds(loaded).is_empty() {
        return Err(invalid(
            Some(placement_span),
            "placement = \"auto\" needs at least one [[listener]]: the planner places the nuklei of its chain and routes".into(),
        ));
    }
    let unknown = |kind: &String| kinds::kind(kind).is_none();
    let found = topology
        .listeners
        .iter()
        .find_map(|l| {
            l.chain
                .get_ref()
                .iter()
                .find(|k| unknown(k))
                .map(|k| (k, l.chain.span()))
        })
        .or_else(|| {
            kinds::REGISTRY
                .iter()
                .flat_map(|k| k.routes(loaded))
                .find(|r| unknown(r.to.get_ref()))
                .map(|r| (r.to.get_ref(), r.to.span()))
        });
    if let Some((kind, span)) = found {
        return Err(invalid(
            Some(span),
            format!(
                "unknown nukleus kind `{kind}`; known kinds: {}",
                kinds::names().join(", ")
            ),
        ));
    }
    let plan = planner::plan(&planner::plan_input(loaded, cpus.len(), &[]));
    loaded.topology.cores = plan
        .cores
        .iter()
        .zip(cpus)
        .map(|(kinds, cpu)| CoreSection {
            cpu,
            nuklei: Spanned::new(placement_span.clone(), kinds.clone()),
        })
        .collect();
    Ok(Some(plan))
}
