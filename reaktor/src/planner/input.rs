//! The planner's input: the stages a topology uses, their cost (measured, declared in
//! `[cost]`, or the kind's default) and the edges between them.

use super::model::{
    default_cost, CostSource, PlanInput, StageCost, DEFAULT_HOP, DEFAULT_TCP_OUT_SHARE,
};
use crate::kinds;
use crate::topology::LoadedTopology;

/// The kinds a topology uses, in pipeline order: listener chains, then route targets.
pub fn stage_kinds(loaded: &LoadedTopology) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |kind: &str| {
        if !names.iter().any(|k| k == kind) {
            names.push(kind.to_owned());
        }
    };
    for listener in &loaded.topology.listeners {
        for kind in listener.chain.get_ref() {
            add(kind);
        }
    }
    for kind in kinds::REGISTRY {
        for route in kind.routes(loaded) {
            add(route.to.get_ref());
        }
    }
    names
}

/// The planner's input for `topology` on `cores` cores: each stage's cost is taken from
/// `measured` (kind -> cost) if present, else from the `[cost]` table, else the default.
pub fn plan_input(loaded: &LoadedTopology, cores: usize, measured: &[(String, f64)]) -> PlanInput {
    let topology = &loaded.topology;
    let cost_of = |kind: &str| {
        if let Some(&(_, cost)) = measured.iter().find(|(k, _)| k == kind) {
            (cost, CostSource::Measured)
        } else if let Some(cost) = topology.cost.get(kind) {
            (*cost.get_ref(), CostSource::Declared)
        } else {
            (default_cost(kind), CostSource::Default)
        }
    };
    let (hop, hop_source) = match topology.cost.get("hop") {
        Some(hop) => (*hop.get_ref(), CostSource::Declared),
        None => (DEFAULT_HOP, CostSource::Default),
    };
    let out = crate::topology::TCP_OUT;
    let measured_out = measured.iter().find(|(k, _)| k == out).map(|&(_, c)| c);
    let stages: Vec<StageCost> = stage_kinds(loaded)
        .into_iter()
        .map(|kind| {
            let (mut cost, source) = cost_of(&kind);
            // A reaktor that ran tcp split measured its reads as tcp and its writes as tcp.out.
            if kind == "tcp" && source == CostSource::Measured {
                cost += measured_out.unwrap_or(0.0);
            }
            StageCost { kind, cost, source }
        })
        .collect();
    let tcp_out = stages.iter().find(|s| s.kind == "tcp").map(|tcp| {
        let (cost, source) = match (measured_out, topology.cost.get(out)) {
            (Some(cost), _) if tcp.source == CostSource::Measured => (cost, CostSource::Measured),
            (_, Some(cost)) => (*cost.get_ref(), CostSource::Declared),
            _ => (tcp.cost * DEFAULT_TCP_OUT_SHARE, CostSource::Default),
        };
        StageCost {
            kind: out.to_owned(),
            cost: cost.min(tcp.cost),
            source,
        }
    });
    PlanInput {
        stages,
        edges: crate::plan::kind_edges(loaded),
        cores,
        hop,
        hop_source,
        connections: topology.reaktor.connections.as_ref().map(|c| *c.get_ref()),
        tcp_out,
    }
}

/// Per-kind cost measured by a running reaktor, in µs of busy time per request: busy time
/// summed over a kind's instances, divided by the requests http counted (or, without http,
/// the connections tcp accepted).
pub fn measured_costs(snapshot: &crate::stats::Snapshot) -> Result<Vec<(String, f64)>, String> {
    let total = |gauge: &str, kind: &str| -> u64 {
        snapshot
            .instances
            .iter()
            .filter(|i| i.kind == kind)
            .filter_map(|i| i.gauge(gauge))
            .sum()
    };
    let requests = match total("requests_total", "http") {
        0 => total("connections_accepted_total", "tcp"),
        n => n,
    };
    if requests == 0 {
        return Err(
            "the reaktor has served no request yet: nothing to divide its busy time by".into(),
        );
    }
    let mut costs: Vec<(String, f64)> = Vec::new();
    for i in &snapshot.instances {
        let cost = i.busy_nanos as f64 / 1000.0 / requests as f64;
        match costs.iter_mut().find(|(k, _)| *k == i.kind) {
            Some((_, c)) => *c += cost,
            None => costs.push((i.kind.clone(), cost)),
        }
    }
    Ok(costs)
}
