//! The direction split: tcp's reads and its writes of the reply (`tcp.out`) on different
//! cores, weighed against the best placement of whole stages.

use super::model::{connection_share, fmt, Decision, Plan, PlanInput, StagePlan, MARGIN};

/// The direction split weighed by [`plan`]: every stage fused on cores `0..output_core`, tcp's
/// writes on core `output_core` (the last).
pub(super) struct DirectionSplit {
    pub(super) output_core: usize,
    pub(super) load: f64,
    /// Load of the busiest input core, and of the output core.
    pub(super) input_load: f64,
    pub(super) output_load: f64,
}

/// How much more throughput `load` predicts than `base`, against the margin.
pub(super) fn gain(base: f64, load: f64) -> String {
    let percent = (base / load - 1.0) * 100.0;
    if load >= base {
        "no gain".to_owned()
    } else if load < base * (1.0 - MARGIN) {
        format!(
            "{percent:.0}% more throughput, above the {:.0}% margin",
            MARGIN * 100.0
        )
    } else {
        format!(
            "{percent:.1}% gain, below the {:.0}% margin",
            MARGIN * 100.0
        )
    }
}

/// "core 0" or "cores 0-3": the first `n` cores.
pub(super) fn core_range(n: usize) -> String {
    if n == 1 {
        "core 0".to_owned()
    } else {
        format!("cores 0-{}", n - 1)
    }
}

pub(super) fn direction_split(input: &PlanInput) -> Option<DirectionSplit> {
    let out = input.tcp_out.as_ref()?;
    if input.cores < 2 || !input.stages.iter().any(|s| s.kind == "tcp") {
        return None;
    }
    let n = input.cores - 1;
    let total: f64 = input.stages.iter().map(|s| s.cost).sum();
    // Every request's reply crosses from its core to the output core: a hop on both sides.
    let input_load = connection_share(input.connections, 0, n) * (total - out.cost + input.hop);
    let output_load = out.cost + input.hop;
    Some(DirectionSplit {
        output_core: n,
        load: input_load.max(output_load),
        input_load,
        output_load,
    })
}

pub(super) fn direction_plan(
    input: &PlanInput,
    d: &DirectionSplit,
    fused_load: f64,
    summary: Vec<String>,
) -> Plan {
    let n = d.output_core;
    let out = input.tcp_out.as_ref().expect("weighed with a tcp.out cost");
    let kinds: Vec<String> = input.stages.iter().map(|s| s.kind.clone()).collect();
    let mut cores = vec![kinds.clone(); n];
    // One tcp.out per tcp instance (the k-th pairs with the k-th), all on the last core.
    cores.push(vec![crate::topology::TCP_OUT.to_owned(); n]);
    let connections = match input.connections {
        Some(k) => format!("{k} connection(s)"),
        None => "the declared connections".to_owned(),
    };
    let stages = input
        .stages
        .iter()
        .map(|stage| {
            let on = (0..n).collect::<Vec<_>>();
            if stage.kind == "tcp" {
                StagePlan {
                    kind: stage.kind.clone(),
                    cores: on,
                    decision: Decision::SplitByDirection { output_core: n },
                    reason: format!(
                        "cost {} ({}), of which writing {} ({}): with {connections} a split by connection keeps at most that many core(s) busy, so tcp's reads stay fused with the other stages on {} (busiest load {}) and its writes (tcp.out) run on core {n} (load {})",
                        fmt(stage.cost),
                        stage.source.name(),
                        fmt(out.cost),
                        out.source.name(),
                        core_range(n),
                        fmt(d.input_load),
                        fmt(d.output_load)
                    ),
                }
            } else {
                StagePlan {
                    kind: stage.kind.clone(),
                    cores: on,
                    decision: Decision::Fused,
                    reason: format!(
                        "cost {} ({}): fused with tcp's reads on {}",
                        fmt(stage.cost),
                        stage.source.name(),
                        core_range(n)
                    ),
                }
            }
        })
        .collect();
    Plan {
        cores,
        stages,
        predicted_load: d.load,
        fused_load,
        summary,
    }
}
