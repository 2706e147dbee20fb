//! The placement as structured data: what `reaktor plan --json` prints and what the operator
//! console draws. Cores with their instances, the links between instances with their two
//! rings (in the order the runtime measures them), and the words of `reaktor plan` for each:
//! the core's line, the kind's split, a direction pair, the planner's stage decision.

use serde::Serialize;

use crate::plan::Placement;
use crate::planner::{self, Decision, Plan, PlanInput};
use crate::topology::{LoadedTopology, PlacementMode, TCP_OUT};

/// A placed topology, ready for JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanView {
    /// `explicit` (the `[[core]]` lists of the file) or `auto` (the planner filled them).
    pub placement: &'static str,
    pub cores: Vec<CoreView>,
    pub instances: Vec<InstanceView>,
    pub links: Vec<LinkView>,
    /// Stream buffers: two per link, `2k` from `links[k].a` to `.b`, `2k + 1` back.
    pub rings: Vec<RingView>,
    /// One line per kind split into several instances.
    pub splits: Vec<SplitView>,
    /// The planner's account (auto placement only): summary lines and stage decisions.
    pub planner: Option<PlannerView>,
    /// The load the planner's model predicts for this placement.
    pub prediction: PredictionView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoreView {
    pub core: usize,
    pub cpu: Option<usize>,
    /// Instance indices on this core, in polling order.
    pub instances: Vec<usize>,
    /// `reaktor plan`'s line for the core.
    pub note: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceView {
    pub name: String,
    pub kind: String,
    pub core: usize,
    pub index: u16,
    /// The tcp.out that writes this tcp instance's sockets, or the tcp this tcp.out writes for.
    pub pair: Option<usize>,
    /// Why it is here, in `reaktor plan`'s words.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkView {
    pub a: usize,
    pub b: usize,
    /// The instances of one keyed kind (the switch's mesh).
    pub mesh: bool,
    /// "same core" or "cross core", from a to b and back (a split tcp reads on its tcp.out's core).
    pub forth: &'static str,
    pub back: &'static str,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RingView {
    pub from: usize,
    /// The instance that reads it (a split tcp's rings are read by its tcp.out).
    pub to: usize,
    pub capacity: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitView {
    pub kind: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlannerView {
    pub summary: Vec<String>,
    pub stages: Vec<StageView>,
    pub predicted_load: f64,
    pub fused_load: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageView {
    pub kind: String,
    pub decision: String,
    pub cores: Vec<usize>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PredictionView {
    /// Busiest core's load per request, in the unit of the costs.
    pub load: f64,
    pub per_core: Vec<f64>,
    /// Requests per second at which the busiest core saturates, if the costs are
    /// microseconds of busy time per request (true of measured costs; the defaults and
    /// `[cost]` entries are meant so, but only a measurement makes it a forecast).
    pub throughput_rps: f64,
    pub costs: Vec<CostView>,
    pub hop: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CostView {
    pub kind: String,
    pub cost: f64,
    pub source: &'static str,
}

fn decision_name(d: &Decision) -> String {
    match d {
        Decision::Fused => "fused".into(),
        Decision::Split { instances } => format!("split x{instances}"),
        Decision::Single => "single".into(),
        Decision::Dedicated => "dedicated".into(),
        Decision::SplitByDirection { output_core } => {
            format!("directions (writes on core {output_core})")
        }
    }
}

/// The planner's input for a placed topology, with `measured` costs where given.
pub fn plan_input(loaded: &LoadedTopology, measured: &[(String, f64)]) -> PlanInput {
    planner::plan_input(loaded, loaded.topology.cores.len().max(1), measured)
}

/// The view of a placed topology (see `place::place`). `plan`: the planner's decisions when
/// it made them; `input`: the costs the prediction uses.
pub fn view(loaded: &LoadedTopology, plan: Option<&Plan>, input: &PlanInput) -> PlanView {
    let placement = Placement::from_topology(loaded);
    let notes = placement.notes(&loaded.topology);
    let capacity = *loaded.topology.reaktor.stream_capacity.get_ref();
    let auto = loaded
        .topology
        .reaktor
        .placement
        .as_ref()
        .is_some_and(|p| *p.get_ref() == PlacementMode::Auto);
    let cores = loaded
        .topology
        .cores
        .iter()
        .enumerate()
        .map(|(core, section)| CoreView {
            core,
            cpu: section.cpu.as_ref().map(|c| *c.get_ref()),
            instances: (0..placement.instances.len())
                .filter(|&i| placement.instances[i].core == core)
                .collect(),
            note: notes.cores.get(core).cloned().unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    let instances = placement
        .instances
        .iter()
        .enumerate()
        .map(|(i, instance)| {
            let mut reasons = vec![cores[instance.core].note.clone()];
            let kind = if instance.kind == TCP_OUT {
                "tcp"
            } else {
                instance.kind.as_str()
            };
            reasons.extend(
                notes
                    .kinds
                    .iter()
                    .filter(|(k, _)| k == kind)
                    .map(|(_, line)| line.clone()),
            );
            let mut pair = None;
            for (tcp, out, line) in &notes.directions {
                if *tcp == i || *out == i {
                    reasons.push(line.clone());
                    pair = Some(if *tcp == i { *out } else { *tcp });
                }
            }
            match plan.and_then(|p| p.stages.iter().find(|s| s.kind == kind)) {
                Some(stage) => reasons.push(format!(
                    "planner: {} on cores {:?}: {}",
                    decision_name(&stage.decision),
                    stage.cores,
                    stage.reason
                )),
                None if !auto => {
                    reasons.push("placed by the topology file's [[core]] lists (placement = \"explicit\"); the what-if shows where the planner would put it".into())
                }
                None => {}
            }
            InstanceView {
                name: instance.name(),
                kind: instance.kind.clone(),
                core: instance.core,
                index: instance.index,
                pair,
                reasons,
            }
        })
        .collect();
    let mut rings = Vec::new();
    let links = placement
        .links
        .iter()
        .zip(&notes.streams)
        .map(|(&(a, b), note)| {
            rings.push(RingView {
                from: a,
                to: placement.reader(b),
                capacity,
            });
            rings.push(RingView {
                from: b,
                to: placement.reader(a),
                capacity,
            });
            let (forth, back) = placement.hops(a, b);
            LinkView {
                a,
                b,
                mesh: placement.instances[a].kind == placement.instances[b].kind,
                forth,
                back,
                note: note.clone(),
            }
        })
        .collect();
    let kinds: Vec<Vec<String>> = loaded
        .topology
        .cores
        .iter()
        .map(|c| c.nuklei.get_ref().clone())
        .collect();
    let predicted = planner::predict(input, &kinds);
    PlanView {
        placement: if auto { "auto" } else { "explicit" },
        cores,
        instances,
        links,
        rings,
        splits: notes
            .kinds
            .into_iter()
            .map(|(kind, note)| SplitView { kind, note })
            .collect(),
        planner: plan.map(|p| PlannerView {
            summary: p.summary.clone(),
            stages: p
                .stages
                .iter()
                .map(|s| StageView {
                    kind: s.kind.clone(),
                    decision: decision_name(&s.decision),
                    cores: s.cores.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            predicted_load: p.predicted_load,
            fused_load: p.fused_load,
        }),
        prediction: PredictionView {
            load: predicted.load,
            throughput_rps: predicted.throughput() * 1e6,
            per_core: predicted.per_core,
            costs: input
                .stages
                .iter()
                .map(|s| CostView {
                    kind: s.kind.clone(),
                    cost: s.cost,
                    source: s.source.name(),
                })
                .collect(),
            hop: input.hop,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(text: &str) -> (LoadedTopology, Option<Plan>) {
        let mut loaded = crate::kinds::parse(std::path::Path::new("t.toml"), text).unwrap();
        let plan = crate::place::place(&mut loaded).unwrap();
        (loaded, plan)
    }

    const SPLIT: &str = r#"
[[listener]]
name = "http"
address = "127.0.0.1:0"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "switch"]

[[core]]
nuklei = ["tcp", "http", "switch"]

[[core]]
nuklei = ["tcp.out", "tcp.out"]

[[http.route]]
path = "/v1/"
to = "switch"
"#;

    #[test]
    fn the_view_carries_plans_words_and_rings_in_measurement_order() {
        let (loaded, plan) = placed(SPLIT);
        let input = plan_input(&loaded, &[]);
        let v = view(&loaded, plan.as_ref(), &input);
        assert_eq!(v.placement, "explicit");
        assert_eq!(v.cores.len(), 3);
        assert_eq!(v.instances.len(), 8);
        assert_eq!(v.cores[2].instances, [6, 7]);
        let text = Placement::from_topology(&loaded).describe(&loaded.topology);
        for core in &v.cores {
            assert!(text.contains(&core.note), "{}", core.note);
        }
        for link in &v.links {
            assert!(text.contains(&link.note), "{}", link.note);
        }
        let mesh: Vec<&LinkView> = v.links.iter().filter(|l| l.mesh).collect();
        assert_eq!(mesh.len(), 1);
        assert_eq!(mesh[0].forth, "cross core");
        // The split tcp's rings are read by its tcp.out.
        let tcp0 = v
            .instances
            .iter()
            .position(|i| i.name == "core0.tcp0")
            .unwrap();
        assert_eq!(v.instances[tcp0].pair, Some(6));
        let into_tcp0 = v.rings.iter().find(|r| r.to == 6).expect("read by tcp.out");
        assert_ne!(into_tcp0.from, tcp0);
        assert!(v.instances[6]
            .reasons
            .iter()
            .any(|r| r.contains("split by direction")));
        let switch = v.instances.iter().find(|i| i.kind == "switch").unwrap();
        assert!(switch.reasons.iter().any(|r| r.contains("split into 2")));
        assert_eq!(v.rings.len(), 2 * v.links.len());
        assert!(v.prediction.load > 0.0 && v.prediction.throughput_rps > 0.0);
    }

    #[test]
    fn an_auto_placement_gives_each_instance_the_planners_reason() {
        let (loaded, plan) = placed(
            "[reaktor]\nplacement = \"auto\"\ncores = 2\n[[listener]]\nname = \"h\"\naddress = \"127.0.0.1:0\"\nchain = [\"tcp\", \"http\"]\n[[http.route]]\npath = \"/\"\nto = \"echo\"\n",
        );
        let input = plan_input(&loaded, &[]);
        let v = view(&loaded, plan.as_ref(), &input);
        assert_eq!(v.placement, "auto");
        let planner = v.planner.as_ref().unwrap();
        assert!((planner.predicted_load - v.prediction.load).abs() < 1e-9);
        for i in &v.instances {
            assert!(
                i.reasons.iter().any(|r| r.starts_with("planner: ")),
                "{:?}",
                i.reasons
            );
        }
    }
}
