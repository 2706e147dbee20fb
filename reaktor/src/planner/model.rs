//! The planner's vocabulary, below everything else in the planner: what it is given (stage
//! costs, the input), what it decides (a plan of stages on cores and why), the constants of
//! its model, and the small arithmetic the whole-stage placement, the direction split and the
//! prediction share. Kept apart so those parts use it without using each other.

use std::fmt::Write as _;

use crate::kinds;

/// A split must predict at least this much more throughput than fusing everything on every
/// core (cross-core hops also cost latency, which the throughput model does not see).
pub const MARGIN: f64 = 0.05;

/// Default cost of a cross-core stream hop, in the unit of the stage costs.
pub const DEFAULT_HOP: f64 = 0.5;

/// The share of tcp's cost spent writing replies when neither a measurement nor a `[cost]`
/// entry for `tcp.out` says otherwise: one send per exchange against one receive (and the
/// readiness events), so about half.
pub const DEFAULT_TCP_OUT_SHARE: f64 = 0.5;

/// A kind's built-in per-request cost (µs of busy time per keep-alive request, declared by
/// the kind: `Kind::default_cost`), used when neither a measurement nor a `[cost]` entry
/// exists; 1 for a name the registry does not know.
pub fn default_cost(kind: &str) -> f64 {
    kinds::kind(kind).map_or(1.0, |k| k.default_cost())
}

/// Whether a kind can run as several instances, streams routed to one by key. Every kind
/// can now; see [`keyed_by_state`] for what splitting costs the switch.
pub fn splittable(kind: &str) -> bool {
    !kind.is_empty()
}

/// Whether a kind's instances partition state by a key that is not the connection (the
/// switch: ports by name hash, nodes by id hash). Split over `n` cores, a request reaches the
/// instance that owns its key, which is on another core `(n - 1) / n` of the time, and its
/// instances talk to each other over their mesh (the self edge): both cost hops.
pub fn keyed_by_state(kind: &str) -> bool {
    kinds::kind(kind).is_some_and(|k| k.partitioning().is_keyed())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    Measured,
    Declared,
    Default,
}

impl CostSource {
    pub fn name(self) -> &'static str {
        match self {
            CostSource::Measured => "measured",
            CostSource::Declared => "declared",
            CostSource::Default => "default",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageCost {
    pub kind: String,
    pub cost: f64,
    pub source: CostSource,
}

#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Stages in pipeline order (network first).
    pub stages: Vec<StageCost>,
    /// Kind pairs that exchange streams.
    pub edges: Vec<(String, String)>,
    pub cores: usize,
    pub hop: f64,
    pub hop_source: CostSource,
    /// Client connections that carry the load at once (`[reaktor] connections`); None: many.
    pub connections: Option<usize>,
    /// The part of tcp's cost spent writing replies (kind `tcp.out`), when tcp is a stage.
    pub tcp_out: Option<StageCost>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Light: fused with its neighbours on the cores listed (every core when it is all of them).
    Fused,
    /// Heavy enough to need a core or more: one instance per core, streams keyed by connection.
    Split { instances: usize },
    /// Not splittable: one instance.
    Single,
    /// Alone on cores of its own; the other stages avoid them.
    Dedicated,
    /// tcp only: reads fused with the other stages, socket writes (`tcp.out`) on `output_core`.
    SplitByDirection { output_core: usize },
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub kind: String,
    pub cores: Vec<usize>,
    pub decision: Decision,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Kinds per core, in pipeline order.
    pub cores: Vec<Vec<String>>,
    pub stages: Vec<StagePlan>,
    /// Predicted load of the busiest core per request (lower is better).
    pub predicted_load: f64,
    /// The same for all nuklei fused on every core.
    pub fused_load: f64,
    /// Overall account: the alternatives weighed and why this one won.
    pub summary: Vec<String>,
}

impl Plan {
    /// Human-readable decisions with the cost each used, for `reaktor plan`.
    pub fn describe(&self) -> String {
        let mut out = String::from("auto placement:\n");
        for line in &self.summary {
            let _ = writeln!(out, "  {line}");
        }
        for stage in &self.stages {
            let what = match &stage.decision {
                Decision::Fused => "fused".to_owned(),
                Decision::Split { instances } => format!("split x{instances}"),
                Decision::Single => "single".to_owned(),
                Decision::Dedicated => "dedicated".to_owned(),
                Decision::SplitByDirection { .. } => "directions".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<8} {:<11} cores {:?}: {}",
                stage.kind, what, stage.cores, stage.reason
            );
        }
        out
    }
}

/// The share of the requests that core `core` of `n` carries for stages split by connection:
/// `connections` spread round-robin, so with fewer connections than cores some cores idle.
pub(super) fn connection_share(connections: Option<usize>, core: usize, n: usize) -> f64 {
    match connections {
        None => 1.0 / n as f64,
        Some(k) => {
            let k = k.max(1);
            let here = k / n + usize::from(core < k % n);
            here as f64 / k as f64
        }
    }
}

pub(super) fn fmt(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}
