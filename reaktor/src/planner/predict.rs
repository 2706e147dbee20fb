//! The load of a given placement under the planner's cost model: any `[[core]]` lists, not
//! only the candidates [`plan`](super::plan) weighs, so an explicit placement can be compared
//! with the planner's (the operator console's what-if, `reaktor plan --json`).
//!
//! Requests are followed as shares per core: they enter at the network kind's instances
//! (spread by connection), a stage split by connection keeps a request on the core it arrived
//! on when it has an instance there and otherwise spreads it over its instances, and a stage
//! split by key (the switch) spreads it over its instances whatever core it came from. Every
//! stream that crosses cores costs `hop` on both sides, as in the planner; so does the mesh of
//! a keyed stage, and a tcp split by direction pays it for the reply it hands to its
//! `tcp.out`. For every placement [`plan`](super::plan) chooses, this predicts the load the
//! planner predicted (a test holds them together).

use super::model::{connection_share, keyed_by_state, PlanInput};
use crate::topology::TCP_OUT;

/// Predicted load of a placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Load of the busiest core per request (the planner's `predicted_load`).
    pub load: f64,
    /// Load per core per request.
    pub per_core: Vec<f64>,
}

impl Prediction {
    /// Requests per unit of cost time at which the busiest core saturates (per second when
    /// costs are microseconds: multiply by 1e6).
    pub fn throughput(&self) -> f64 {
        1.0 / self.load.max(f64::MIN_POSITIVE)
    }
}

/// The instances of `kind` in `cores` (the placement's order: core by core), by their core.
fn instance_cores(cores: &[Vec<String>], kind: &str) -> Vec<usize> {
    cores
        .iter()
        .enumerate()
        .flat_map(|(c, kinds)| kinds.iter().filter(|k| *k == kind).map(move |_| c))
        .collect()
}

/// Weight of each instance when requests spread over them by connection.
fn connection_weights(connections: Option<usize>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|r| connection_share(connections, r, n))
        .collect()
}

/// Predicts the load of `cores` (kinds per core, as in `[[core]]` lists) for `input`'s stages.
pub fn predict(input: &PlanInput, cores: &[Vec<String>]) -> Prediction {
    let n = cores.len();
    let mut load = vec![0.0; n];
    let stages = &input.stages;
    // Per stage: its instances' cores and the share of the requests each core handles.
    let placed: Vec<Vec<usize>> = stages
        .iter()
        .map(|s| instance_cores(cores, &s.kind))
        .collect();
    let mut share: Vec<Option<Vec<f64>>> = vec![None; stages.len()];
    // Requests from shares `from` to the instances of stage `to`: (from core, to core) -> share.
    let transfer = |from: &[f64], to: usize| -> Vec<Vec<f64>> {
        let on = &placed[to];
        let mut t = vec![vec![0.0; n]; n];
        if on.is_empty() {
            return t;
        }
        let keyed = keyed_by_state(&stages[to].kind);
        let weights = if keyed {
            vec![1.0 / on.len() as f64; on.len()]
        } else {
            connection_weights(input.connections, on.len())
        };
        for (c, &s) in from.iter().enumerate() {
            if s == 0.0 {
                continue;
            }
            if !keyed && on.contains(&c) {
                t[c][c] += s;
            } else {
                for (&d, &w) in on.iter().zip(&weights) {
                    t[c][d] += s * w;
                }
            }
        }
        t
    };
    let index = |kind: &str| stages.iter().position(|s| s.kind == kind);
    // Shares, in pipeline order: entry stages by connection, the others from their first
    // network-side stage (the listener chain before the routes).
    let mut tcp_instance_shares: Vec<f64> = Vec::new();
    for (k, stage) in stages.iter().enumerate() {
        if placed[k].is_empty() {
            continue;
        }
        let parent = input
            .edges
            .iter()
            .filter(|(a, b)| *b == stage.kind && a != b)
            .filter_map(|(a, _)| index(a))
            .find(|&p| share[p].is_some());
        let mut s = vec![0.0; n];
        match parent {
            Some(p) => {
                let t = transfer(share[p].as_ref().expect("found with a share"), k);
                for row in &t {
                    for (d, v) in row.iter().enumerate() {
                        s[d] += v;
                    }
                }
            }
            None => {
                let weights = connection_weights(input.connections, placed[k].len());
                for (&c, &w) in placed[k].iter().zip(&weights) {
                    s[c] += w;
                }
                if stage.kind == "tcp" {
                    tcp_instance_shares = weights;
                }
            }
        }
        share[k] = Some(s);
    }
    // Stage costs where the requests are handled; a tcp instance paired with a tcp.out (the
    // k-th with the k-th) leaves its writes' cost to the tcp.out's core and pays a hop there.
    let outs = instance_cores(cores, TCP_OUT);
    for (k, stage) in stages.iter().enumerate() {
        let Some(s) = &share[k] else { continue };
        let paired = stage.kind == "tcp" && !outs.is_empty();
        let out_cost = match (&input.tcp_out, paired) {
            (Some(out), true) => out.cost,
            _ => 0.0,
        };
        for (c, v) in s.iter().enumerate() {
            load[c] += v * stage.cost;
        }
        if paired {
            for (r, &c) in placed[k].iter().enumerate() {
                let Some(&o) = outs.get(r) else { continue };
                let w = tcp_instance_shares.get(r).copied().unwrap_or(0.0);
                load[c] -= w * out_cost;
                load[o] += w * out_cost;
                if o != c {
                    load[c] += w * input.hop;
                    load[o] += w * input.hop;
                }
            }
        }
    }
    // Hops: every edge's streams that cross cores, at both ends; a keyed stage's mesh too.
    for (a, b) in &input.edges {
        let (Some(x), Some(y)) = (index(a), index(b)) else {
            continue;
        };
        let Some(from) = &share[x] else { continue };
        // A keyed stage's mesh is this edge with itself: its requests reach every instance.
        let t = transfer(from, y);
        for (c, row) in t.iter().enumerate() {
            for (d, v) in row.iter().enumerate() {
                if c != d {
                    load[c] += input.hop * v;
                    load[d] += input.hop * v;
                }
            }
        }
    }
    Prediction {
        load: load.iter().copied().fold(0.0, f64::max),
        per_core: load,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{plan, CostSource, StageCost, DEFAULT_HOP, DEFAULT_TCP_OUT_SHARE};
    use super::*;

    fn input(costs: &[(&str, f64)], cores: usize, connections: Option<usize>) -> PlanInput {
        let stages: Vec<StageCost> = costs
            .iter()
            .map(|&(kind, cost)| StageCost {
                kind: kind.to_owned(),
                cost,
                source: CostSource::Declared,
            })
            .collect();
        let mut edges: Vec<(String, String)> = stages
            .windows(2)
            .map(|w| (w[0].kind.clone(), w[1].kind.clone()))
            .collect();
        if stages.iter().any(|s| s.kind == "switch") {
            edges.push(("switch".into(), "switch".into()));
        }
        PlanInput {
            edges,
            cores,
            hop: DEFAULT_HOP,
            hop_source: CostSource::Default,
            connections,
            tcp_out: stages
                .iter()
                .find(|s| s.kind == "tcp")
                .map(|tcp| StageCost {
                    kind: TCP_OUT.into(),
                    cost: tcp.cost * DEFAULT_TCP_OUT_SHARE,
                    source: CostSource::Default,
                }),
            stages,
        }
    }

    #[test]
    fn every_placement_the_planner_chooses_is_predicted_at_the_planners_load() {
        type Case<'a> = (&'a [(&'a str, f64)], usize, Option<usize>);
        let cases: [Case; 9] = [
            (
                &[("tcp", 1.0), ("tls", 3.0), ("http", 1.0), ("echo", 1.0)],
                2,
                None,
            ),
            (
                &[("tcp", 1.0), ("tls", 3.0), ("http", 1.0), ("echo", 1.0)],
                4,
                None,
            ),
            (&[("tcp", 0.1), ("http", 0.1), ("echo", 0.1)], 2, None),
            (
                &[("tcp", 1.0), ("http", 1.0), ("echo", 0.5), ("switch", 4.0)],
                2,
                None,
            ),
            (&[("tcp", 1.0), ("http", 1.0), ("switch", 4.0)], 3, None),
            (&[("tcp", 6.5), ("http", 0.7), ("echo", 0.25)], 2, Some(1)),
            (&[("tcp", 6.5), ("http", 0.7), ("echo", 0.25)], 3, Some(2)),
            (&[("tcp", 6.5), ("http", 0.7), ("echo", 0.25)], 2, Some(3)),
            (&[("tcp", 1.0), ("http", 0.7), ("switch", 1.0)], 1, None),
        ];
        for (costs, cores, connections) in cases {
            let i = input(costs, cores, connections);
            let p = plan(&i);
            let predicted = predict(&i, &p.cores);
            assert!(
                (predicted.load - p.predicted_load).abs() < 1e-9,
                "{costs:?} on {cores} core(s), {connections:?} connections: planner {} vs predicted {} ({:?})\n{}",
                p.predicted_load,
                predicted.load,
                predicted.per_core,
                p.describe()
            );
        }
    }

    #[test]
    fn a_pipeline_split_pays_a_hop_on_both_sides_of_every_request() {
        let i = input(&[("tcp", 1.0), ("http", 1.0), ("echo", 1.0)], 2, None);
        let cores = [
            vec!["tcp".to_owned(), "http".to_owned()],
            vec!["echo".to_owned()],
        ];
        let p = predict(&i, &cores);
        // Core 0: tcp + http + a hop out; core 1: echo + a hop in.
        assert_eq!(p.per_core, [2.0 + DEFAULT_HOP, 1.0 + DEFAULT_HOP]);
        let fused = predict(
            &i,
            &vec![vec!["tcp".to_owned(), "http".into(), "echo".into()]; 2],
        );
        assert_eq!(fused.per_core, [1.5, 1.5]);
        assert!(fused.throughput() > p.throughput());
    }

    #[test]
    fn a_stage_missing_on_a_core_takes_that_cores_requests_across() {
        // http on both cores, echo only on core 1: core 0's requests cross to core 1.
        let i = input(&[("tcp", 1.0), ("http", 1.0), ("echo", 2.0)], 2, None);
        let cores = [
            vec!["tcp".to_owned(), "http".to_owned()],
            vec!["tcp".to_owned(), "http".to_owned(), "echo".to_owned()],
        ];
        let p = predict(&i, &cores);
        assert_eq!(
            p.per_core,
            [1.0 + 0.5 * DEFAULT_HOP, 1.0 + 2.0 + 0.5 * DEFAULT_HOP]
        );
    }
}
