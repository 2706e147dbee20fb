//! The placement planner: from per-stage cost (measured by a running reaktor, declared in the
//! topology's `[cost]` table, or a built-in default) and a number of cores, decide which
//! nukleus kinds run on which cores.
//!
//! # Model
//!
//! A stage's cost is the busy time it spends per request (microseconds, or any unit as long
//! as every stage and `hop` use the same one). A placement splits the stages into groups;
//! each group gets a set of cores. A splittable stage (tcp, tls, http, ws, echo, metrics: keyed
//! by connection) runs one instance on every core of its group and its load spreads evenly;
//! a stage that is not splittable would run once, on the least-loaded core of its group (every
//! kind here is splittable). The switch is split by key (ports by name hash, nodes by id hash):
//! its requests reach the instance owning their key, on another core `(n - 1) / n` of the time,
//! and its instances talk over a mesh, so splitting it costs hops the others do not pay. A
//! stream between stages of different groups crosses cores and costs `hop` on both sides; so
//! does the share of traffic that reaches a single-instance stage from the other cores of its
//! own group. The predicted throughput is the inverse of the
//! most loaded core's load per request.
//!
//! "All nuklei fused on every core" is the placement to beat (DESIGN §4): with splittable
//! stages only it spreads the total cost evenly and needs no cross-core hop, so no split can
//! beat it in this model. Every set partition of the stages is still evaluated (cores given
//! greedily to the group whose cores are the most loaded), and a split is chosen only when it
//! predicts at least [`MARGIN`] more throughput than fusion — which happens when a stage that
//! is not splittable is heavy enough to deserve a core of its own.
//!
//! Connections: a stage split by connection spreads only as far as there are connections.
//! With `[reaktor] connections = k` declared and `k` below the cores of a group, `k` cores carry
//! the load and the others idle, so fusion on every core gains nothing over one core.
//!
//! Direction split: the one exchange whose directions share nothing but a socket is tcp's
//! (reads, and writes of the reply), so the planner also weighs every stage fused on all cores
//! but the last, and tcp's writes (`tcp.out`, by default half of tcp's cost) alone on the last.
//! Its reply ring then crosses cores (a hop on both sides). With many connections this never
//! beats fusion; with fewer connections than cores it can, and it is chosen when it predicts
//! [`MARGIN`] more throughput than the best placement above.
//!
//! Re-planning while running is `replan.rs` (opt-in): under this model the placement never
//! changes with stage costs, so it steers new connections by what each core is worth instead.

mod direction;
mod input;
mod model;
mod predict;

pub use input::{measured_costs, plan_input, stage_kinds};
pub use model::{
    default_cost, keyed_by_state, splittable, CostSource, Decision, Plan, PlanInput, StageCost,
    StagePlan, DEFAULT_HOP, DEFAULT_TCP_OUT_SHARE, MARGIN,
};
pub use predict::{predict, Prediction};

use direction::{core_range, direction_plan, direction_split, gain};
use model::{connection_share, fmt};

/// One candidate: a group index per stage and a core count per group.
#[derive(Debug, Clone)]
struct Candidate {
    group_of: Vec<usize>,
    cores_of: Vec<usize>,
    load: f64,
    /// Per stage: the core(s) it runs on, relative to the group's first core.
    placement: Vec<Vec<usize>>,
}

struct Model<'a> {
    input: &'a PlanInput,
    /// Edges as stage index pairs.
    edges: Vec<(usize, usize)>,
}

impl Model<'_> {
    /// Effective cost of every stage under `group_of` with `cores_of`, hops included.
    fn effective_costs(&self, group_of: &[usize], cores_of: &[usize]) -> Vec<f64> {
        let stages = &self.input.stages;
        let mut cost: Vec<f64> = stages.iter().map(|s| s.cost).collect();
        for &(a, b) in &self.edges {
            let crossing = if group_of[a] != group_of[b] {
                1.0
            } else {
                let n = cores_of[group_of[a]] as f64;
                let single = !splittable(&stages[a].kind) || !splittable(&stages[b].kind);
                let keyed = keyed_by_state(&stages[a].kind) || keyed_by_state(&stages[b].kind);
                if single || keyed {
                    (n - 1.0) / n
                } else {
                    0.0
                }
            };
            cost[a] += self.input.hop * crossing;
            cost[b] += self.input.hop * crossing;
        }
        cost
    }

    /// Loads of the cores of `group` with `n` cores, and where each of its stages runs.
    fn group_loads(
        &self,
        group: usize,
        n: usize,
        group_of: &[usize],
        cost: &[f64],
    ) -> (Vec<f64>, Vec<(usize, Vec<usize>)>) {
        let stages = &self.input.stages;
        let members: Vec<usize> = (0..stages.len())
            .filter(|&i| group_of[i] == group)
            .collect();
        let spread = |keyed: bool| -> f64 {
            members
                .iter()
                .filter(|&&i| {
                    splittable(&stages[i].kind) && keyed_by_state(&stages[i].kind) == keyed
                })
                .map(|&i| cost[i])
                .sum()
        };
        let (by_key, by_connection) = (spread(true), spread(false));
        let mut loads: Vec<f64> = (0..n)
            .map(|core| {
                by_key / n as f64
                    + by_connection * connection_share(self.input.connections, core, n)
            })
            .collect();
        let mut placement = Vec::new();
        for &i in &members {
            if splittable(&stages[i].kind) {
                placement.push((i, (0..n).collect()));
            }
        }
        let mut singles: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| !splittable(&stages[i].kind))
            .collect();
        singles.sort_by(|&a, &b| cost[b].total_cmp(&cost[a]));
        for i in singles {
            // The least-loaded core; ties go to the last core, away from core 0's extra duties.
            let core = (0..n)
                .rev()
                .min_by(|&x, &y| loads[x].total_cmp(&loads[y]))
                .expect("a group has a core");
            loads[core] += cost[i];
            placement.push((i, vec![core]));
        }
        (loads, placement)
    }

    fn max_group_load(
        &self,
        group: usize,
        n: usize,
        group_of: &[usize],
        cores_of: &[usize],
    ) -> f64 {
        let mut cores = cores_of.to_vec();
        cores[group] = n;
        let cost = self.effective_costs(group_of, &cores);
        let (loads, _) = self.group_loads(group, n, group_of, &cost);
        loads.into_iter().fold(0.0, f64::max)
    }

    /// Gives the cores to the groups of a partition, then scores it.
    fn evaluate(&self, group_of: Vec<usize>) -> Option<Candidate> {
        let groups = group_of.iter().max().map_or(0, |m| m + 1);
        let total = self.input.cores;
        if groups == 0 || groups > total {
            return None;
        }
        let mut cores_of = vec![1; groups];
        let has_split = |g: usize| {
            group_of
                .iter()
                .enumerate()
                .any(|(i, &x)| x == g && splittable(&self.input.stages[i].kind))
        };
        for _ in groups..total {
            // The busiest group that an extra core relieves.
            let best = (0..groups)
                .filter(|&g| has_split(g))
                .map(|g| (g, self.max_group_load(g, cores_of[g], &group_of, &cores_of)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((g, _)) => cores_of[g] += 1,
                // Only single-instance stages: a further core would idle.
                None => return None,
            }
        }
        let cost = self.effective_costs(&group_of, &cores_of);
        let mut load: f64 = 0.0;
        let mut placement = vec![Vec::new(); self.input.stages.len()];
        let mut first = 0;
        for (g, &n) in cores_of.iter().enumerate() {
            let (loads, stages) = self.group_loads(g, n, &group_of, &cost);
            load = loads.into_iter().fold(load, f64::max);
            for (i, cores) in stages {
                placement[i] = cores.into_iter().map(|c| first + c).collect();
            }
            first += n;
        }
        Some(Candidate {
            group_of,
            cores_of,
            load,
            placement,
        })
    }
}

/// Every set partition of `n` items, as restricted growth strings (item -> group).
fn partitions(n: usize) -> Vec<Vec<usize>> {
    fn extend(prefix: &mut Vec<usize>, n: usize, out: &mut Vec<Vec<usize>>) {
        if prefix.len() == n {
            out.push(prefix.clone());
            return;
        }
        let next = prefix.iter().max().map_or(0, |m| m + 1);
        for g in 0..=next {
            prefix.push(g);
            extend(prefix, n, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    if n > 0 {
        extend(&mut Vec::new(), n, &mut out);
    }
    out
}

fn names(stages: &[StageCost], members: impl Iterator<Item = usize>) -> String {
    members
        .map(|i| stages[i].kind.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

fn describe_candidate(stages: &[StageCost], c: &Candidate) -> String {
    let groups = c.cores_of.len();
    if groups == 1 {
        return "all fused on every core".to_owned();
    }
    (0..groups)
        .map(|g| {
            let members = (0..stages.len()).filter(|&i| c.group_of[i] == g);
            format!("{} on {} core(s)", names(stages, members), c.cores_of[g])
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Plans `input.stages` on `input.cores` cores.
pub fn plan(input: &PlanInput) -> Plan {
    let stages = &input.stages;
    assert!(input.cores > 0, "at least one core");
    assert!(!stages.is_empty(), "at least one stage");
    let index = |kind: &str| stages.iter().position(|s| s.kind == kind);
    let model = Model {
        input,
        edges: input
            .edges
            .iter()
            .filter_map(|(a, b)| Some((index(a)?, index(b)?)))
            .collect(),
    };
    // Large stage counts would make the enumeration slow; beyond 9 stages only fusion and
    // one group per stage are weighed.
    let candidates: Vec<Candidate> = if stages.len() <= 9 {
        partitions(stages.len())
            .into_iter()
            .filter_map(|p| model.evaluate(p))
            .collect()
    } else {
        [vec![0; stages.len()], (0..stages.len()).collect()]
            .into_iter()
            .filter_map(|p| model.evaluate(p))
            .collect()
    };
    let fused = model
        .evaluate(vec![0; stages.len()])
        .expect("one group always fits");
    let best = candidates
        .iter()
        .filter(|c| c.cores_of.len() > 1)
        .min_by(|a, b| {
            a.load
                .total_cmp(&b.load)
                .then(a.cores_of.len().cmp(&b.cores_of.len()))
        })
        .cloned();
    let chosen = match &best {
        Some(b) if b.load < fused.load * (1.0 - MARGIN) => b.clone(),
        _ => fused.clone(),
    };
    let directions = direction_split(input);

    let total: f64 = stages.iter().map(|s| s.cost).sum();
    let cores = input.cores;
    let mut summary = vec![format!(
        "{cores} core(s); cost per request: {}; cross-core hop {} ({})",
        stages
            .iter()
            .map(|s| format!("{} {} ({})", s.kind, fmt(s.cost), s.source.name()))
            .collect::<Vec<_>>()
            .join(", "),
        fmt(input.hop),
        input.hop_source.name()
    )];
    summary.push(format!(
        "all fused on every core: busiest core load {} per request",
        fmt(fused.load)
    ));
    match &best {
        Some(b) if b.load < fused.load * (1.0 - MARGIN) => {
            summary.push(format!(
                "chosen: {}: busiest core load {} ({:.0}% more throughput than fusion, above the {:.0}% margin)",
                describe_candidate(stages, b),
                fmt(b.load),
                (fused.load / b.load - 1.0) * 100.0,
                MARGIN * 100.0
            ));
        }
        Some(b) => summary.push(format!(
            "chosen: all fused on every core; best split weighed: {}: busiest core load {} ({})",
            describe_candidate(stages, b),
            fmt(b.load),
            gain(fused.load, b.load)
        )),
        None => summary.push("chosen: all fused on the only core".to_owned()),
    }
    if let Some(d) = &directions {
        let wins = d.load < chosen.load * (1.0 - MARGIN);
        summary.push(format!(
            "{}tcp split by direction (all fused on {}, tcp's writes alone on core {}): busiest core load {} ({})",
            if wins { "chosen instead: " } else { "weighed: " },
            core_range(d.output_core),
            d.output_core,
            fmt(d.load),
            gain(chosen.load, d.load)
        ));
        if wins {
            return direction_plan(input, d, fused.load, summary);
        }
    }

    // Throughput of the chosen placement, in requests per unit of cost time.
    let throughput = 1.0 / chosen.load.max(f64::MIN_POSITIVE);
    let effective = model.effective_costs(&chosen.group_of, &chosen.cores_of);
    let mut plans = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let g = chosen.group_of[i];
        let group_cores = chosen.cores_of[g];
        let whole = group_cores == cores;
        let alone = chosen.group_of.iter().filter(|&&x| x == g).count() == 1;
        let needs = effective[i] * throughput;
        let neighbours = names(
            stages,
            (0..stages.len()).filter(|&j| j != i && chosen.group_of[j] == g),
        );
        let used = format!(
            "cost {} ({}) = {:.0}% of {} per request, needs {:.2} core(s) at the predicted throughput",
            fmt(stage.cost),
            stage.source.name(),
            100.0 * stage.cost / total.max(f64::MIN_POSITIVE),
            fmt(total),
            needs
        );
        let (decision, reason) = if !splittable(&stage.kind) {
            let d = if alone && !whole {
                Decision::Dedicated
            } else {
                Decision::Single
            };
            let why = if alone && !whole {
                "not splittable (one instance owns its state) and heavy enough for a core of its own; the other stages avoid it"
            } else {
                "not splittable (one instance owns its state): one instance, on the least-loaded core; other cores reach it across cores"
            };
            (d, format!("{used}; {why}"))
        } else if alone && !whole {
            (
                Decision::Dedicated,
                format!("{used}; separated onto its own core(s) because that beats fusion by the margin"),
            )
        } else if needs >= 0.95 && group_cores > 1 {
            (
                Decision::Split {
                    instances: group_cores,
                },
                if keyed_by_state(&stage.kind) {
                    format!(
                        "{used}: saturates a core, so split into {group_cores} instances keyed by port-name and node-id hash (a request reaches the instance owning its key, on another core {}/{group_cores} of the time; the instances talk over a mesh){}",
                        group_cores - 1,
                        if neighbours.is_empty() {
                            String::new()
                        } else {
                            format!(", each fused with {neighbours}")
                        }
                    )
                } else {
                    format!(
                        "{used}: saturates a core, so split into {group_cores} instances (streams keyed by connection){}",
                        if neighbours.is_empty() {
                            String::new()
                        } else {
                            format!(", each fused with {neighbours} on its core (no cross-core hop)")
                        }
                    )
                },
            )
        } else {
            (
                Decision::Fused,
                format!(
                    "{used}: light, fused{} on {}",
                    if neighbours.is_empty() {
                        String::new()
                    } else {
                        format!(" with {neighbours}")
                    },
                    if whole && cores > 1 {
                        "every core (an instance per core keeps its streams on the core)".to_owned()
                    } else {
                        format!("{} core(s)", group_cores)
                    }
                ),
            )
        };
        plans.push(StagePlan {
            kind: stage.kind.clone(),
            cores: chosen.placement[i].clone(),
            decision,
            reason,
        });
    }
    let used_cores: usize = chosen.cores_of.iter().sum();
    let mut per_core: Vec<Vec<String>> = vec![Vec::new(); used_cores];
    for (i, stage) in stages.iter().enumerate() {
        for &c in &chosen.placement[i] {
            per_core[c].push(stage.kind.clone());
        }
    }
    Plan {
        cores: per_core,
        stages: plans,
        predicted_load: chosen.load,
        fused_load: fused.load,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(costs: &[(&str, f64)], cores: usize) -> PlanInput {
        let stages: Vec<StageCost> = costs
            .iter()
            .map(|&(kind, cost)| StageCost {
                kind: kind.to_owned(),
                cost,
                source: CostSource::Declared,
            })
            .collect();
        // A chain in the given order, like a listener chain and an http route.
        let edges = stages
            .windows(2)
            .map(|w| (w[0].kind.clone(), w[1].kind.clone()))
            .collect();
        PlanInput {
            edges,
            cores,
            hop: DEFAULT_HOP,
            hop_source: CostSource::Default,
            connections: None,
            tcp_out: stages
                .iter()
                .find(|s| s.kind == "tcp")
                .map(|tcp| StageCost {
                    kind: "tcp.out".into(),
                    cost: tcp.cost * DEFAULT_TCP_OUT_SHARE,
                    source: CostSource::Default,
                }),
            stages,
        }
    }

    fn stage<'a>(plan: &'a Plan, kind: &str) -> &'a StagePlan {
        plan.stages.iter().find(|s| s.kind == kind).unwrap()
    }

    #[test]
    fn tls_three_times_the_rest_is_split_and_the_rest_fused() {
        for cores in [2, 4] {
            let plan = plan(&input(
                &[("tcp", 1.0), ("tls", 3.0), ("http", 1.0), ("echo", 1.0)],
                cores,
            ));
            assert_eq!(
                stage(&plan, "tls").decision,
                Decision::Split { instances: cores },
                "{}",
                plan.describe()
            );
            for light in ["tcp", "http", "echo"] {
                assert_eq!(stage(&plan, light).decision, Decision::Fused, "{light}");
                assert!(stage(&plan, light).reason.contains("cost 1 (declared)"));
            }
            assert!(stage(&plan, "tls")
                .reason
                .contains("cost 3 (declared) = 50%"));
            // Fusion on every core: every core runs the whole chain, nothing crosses.
            assert_eq!(plan.cores.len(), cores);
            for kinds in &plan.cores {
                assert_eq!(kinds, &["tcp", "tls", "http", "echo"]);
            }
            assert_eq!(plan.predicted_load, plan.fused_load);
            // A pipeline split (tls on its own cores) was weighed and lost to the hops.
            assert!(
                plan.summary
                    .iter()
                    .any(|l| l.contains("best split weighed")),
                "{}",
                plan.describe()
            );
        }
    }

    #[test]
    fn all_light_stages_are_fused_on_every_core() {
        let plan = plan(&input(&[("tcp", 0.1), ("http", 0.1), ("echo", 0.1)], 2));
        for s in &plan.stages {
            assert_eq!(s.decision, Decision::Fused, "{}", plan.describe());
            assert_eq!(s.cores, [0, 1]);
        }
        assert!(stage(&plan, "http")
            .reason
            .contains("fused with tcp+echo on every core"));
    }

    #[test]
    fn a_single_core_fuses_everything() {
        let plan = plan(&input(
            &[("tcp", 1.0), ("tls", 30.0), ("http", 1.0), ("switch", 5.0)],
            1,
        ));
        assert_eq!(plan.cores, [["tcp", "tls", "http", "switch"]]);
        assert!(plan
            .stages
            .iter()
            .all(|s| matches!(s.decision, Decision::Fused | Decision::Single)));
        assert!(plan.describe().contains("all fused on the only core"));
    }

    #[test]
    fn a_heavy_switch_is_split_over_every_core_by_key() {
        // At 4 units the switch would overload a core of its own; split by key (ports by
        // name, nodes by id) it shares every core with the connection stages.
        let plan = plan(&input(
            &[("tcp", 1.0), ("http", 1.0), ("echo", 0.5), ("switch", 4.0)],
            2,
        ));
        assert_eq!(stage(&plan, "switch").cores, [0, 1]);
        assert!(stage(&plan, "switch")
            .reason
            .contains("keyed by port-name and node-id hash"));
        assert_eq!(plan.cores.len(), 2);
        assert!(plan.cores.iter().all(|c| c.iter().any(|k| k == "switch")));
    }

    #[test]
    fn a_keyed_stage_pays_for_the_hops_to_its_owners() {
        // The same costs, once with a stage split by connection (no hop) and once with the
        // switch (a request reaches the instance owning its key, on the other core half the
        // time, and the instances talk over their mesh): the switch's placement predicts more
        // load per request.
        let by_connection = plan(&input(&[("tcp", 1.0), ("http", 1.0), ("echo", 4.0)], 2));
        let by_key = plan(&input(&[("tcp", 1.0), ("http", 1.0), ("switch", 4.0)], 2));
        assert_eq!(by_connection.predicted_load, 3.0);
        assert!(
            by_key.predicted_load > by_connection.predicted_load + 0.1,
            "{} vs {}",
            by_key.predicted_load,
            by_connection.predicted_load
        );
    }

    #[test]
    fn a_free_hop_still_does_not_make_a_split_win_without_a_margin() {
        // With hop = 0 a balanced pipeline split ties with fusion; ties go to fusion.
        let mut i = input(
            &[("tcp", 1.0), ("tls", 3.0), ("http", 1.0), ("echo", 1.0)],
            2,
        );
        i.hop = 0.0;
        let plan = plan(&i);
        assert_eq!(
            plan.cores,
            [
                ["tcp", "tls", "http", "echo"],
                ["tcp", "tls", "http", "echo"]
            ]
        );
    }

    #[test]
    fn with_one_connection_tcp_is_split_by_direction() {
        // One client connection: a split by connection keeps one core busy, so fusion on both
        // cores is no better than one; moving tcp's writes to the other core halves tcp there.
        let mut one = input(&[("tcp", 6.5), ("http", 0.7), ("echo", 0.25)], 2);
        one.connections = Some(1);
        let plan = plan(&one);
        assert_eq!(
            plan.cores,
            [vec!["tcp", "http", "echo"], vec!["tcp.out"]],
            "{}",
            plan.describe()
        );
        assert_eq!(
            stage(&plan, "tcp").decision,
            Decision::SplitByDirection { output_core: 1 }
        );
        // Input core: 7.45 - 3.25 + 0.5 hop; output core: 3.25 + 0.5 hop.
        assert!(
            (plan.predicted_load - 4.7).abs() < 1e-9,
            "{}",
            plan.predicted_load
        );
        assert!((plan.fused_load - 7.45).abs() < 1e-9, "{}", plan.fused_load);
        let tcp = &stage(&plan, "tcp").reason;
        assert!(tcp.contains("of which writing 3.25 (default)"), "{tcp}");
        assert!(tcp.contains("with 1 connection(s)"), "{tcp}");
        assert!(plan
            .describe()
            .contains("chosen instead: tcp split by direction"));
    }

    #[test]
    fn with_many_connections_a_direction_split_is_weighed_and_loses() {
        for connections in [None, Some(2), Some(64)] {
            let mut many = input(&[("tcp", 6.5), ("http", 0.7), ("echo", 0.25)], 2);
            many.connections = connections;
            let plan = plan(&many);
            assert_eq!(
                plan.cores,
                [["tcp", "http", "echo"], ["tcp", "http", "echo"]],
                "{connections:?}: {}",
                plan.describe()
            );
            assert!(
                plan.describe().contains("weighed: tcp split by direction"),
                "{}",
                plan.describe()
            );
        }
    }

    #[test]
    fn a_direction_split_is_only_worth_it_when_tcp_writes_are_a_real_share() {
        // Writing is cheap here: moving it buys less than the hop costs.
        let mut one = input(&[("tcp", 1.0), ("http", 3.0), ("echo", 3.0)], 2);
        one.connections = Some(1);
        one.tcp_out.as_mut().unwrap().cost = 0.2;
        let plan = plan(&one);
        assert!(
            plan.cores.iter().flatten().all(|k| k != "tcp.out"),
            "{}",
            plan.describe()
        );
    }

    #[test]
    fn connections_spread_round_robin_over_the_cores() {
        let shares = |k, n| {
            (0..n)
                .map(|c| connection_share(Some(k), c, n))
                .collect::<Vec<_>>()
        };
        assert_eq!(shares(1, 2), [1.0, 0.0]);
        assert_eq!(shares(4, 2), [0.5, 0.5]);
        assert_eq!(shares(3, 2), [2.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(connection_share(None, 1, 4), 0.25);
    }

    #[test]
    fn partitions_are_the_bell_numbers() {
        assert_eq!(
            (1..=6).map(|n| partitions(n).len()).collect::<Vec<_>>(),
            [1, 2, 5, 15, 52, 203]
        );
    }
}
