//! The console's what-if: a topology pasted by the operator is parsed, placed and predicted
//! by the same steps `reaktor plan` runs, next to the running placement under the same costs.
//! Nothing is applied. It runs on a thread of its own (the planner weighs every partition of
//! the stages, which takes long for many cores), one at a time per reaktor, so no core waits
//! for it; the console nukleus picks the answer up when it is ready.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::view::{plan_input, view, PlanView};
use crate::planner::Plan;
use crate::stats::SharedStats;
use crate::topology::LoadedTopology;

/// Most cores a what-if may plan for (the planner's work grows with them).
pub const MAX_CORES: usize = 256;

/// Which per-stage costs to predict with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Costs {
    /// Measured by this reaktor when it has served requests, else as `Declared`.
    Measured,
    /// The `[cost]` table of each topology, else the kinds' defaults.
    Declared,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Where the answer of a running what-if appears.
pub type Slot = Arc<Mutex<Option<Answer>>>;

/// The running topology, as placed at start, and the planner's decisions if it made them.
pub struct Current {
    pub loaded: LoadedTopology,
    pub plan: Option<Plan>,
}

/// One what-if at a time, on its own thread.
pub struct WhatIf {
    current: Arc<Current>,
    stats: Arc<SharedStats>,
    running: Arc<AtomicBool>,
}

#[derive(Serialize)]
struct Comparison<'a> {
    /// `measured` (this reaktor's busy time per request) or `declared` (`[cost]` or defaults).
    costs: &'static str,
    current: &'a PlanView,
    proposed: &'a PlanView,
    /// proposed / current predicted throughput.
    ratio: f64,
}

fn error(status: u16, code: &str, message: String) -> Answer {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut bytes = serde_json::to_vec(&body).expect("plain data serializes");
    bytes.push(b'\n');
    Answer {
        status,
        body: bytes,
    }
}

/// The costs to use: this reaktor's measurement when asked for and available.
fn measured(stats: &SharedStats, costs: Costs) -> Vec<(String, f64)> {
    match costs {
        Costs::Measured => crate::planner::measured_costs(&stats.snapshot()).unwrap_or_default(),
        Costs::Declared => Vec::new(),
    }
}

/// Plans `text` (a topology file) next to `current`. 400 with the parse or placement error
/// for a topology the reaktor would refuse at start.
pub fn evaluate(current: &Current, stats: &SharedStats, text: &str, costs: Costs) -> Answer {
    let path = Path::new("what-if.toml");
    let mut loaded = match crate::kinds::parse(path, text) {
        Ok(loaded) => loaded,
        Err(e) => return error(400, "invalid_topology", e.to_string()),
    };
    let reaktor = &loaded.topology.reaktor;
    let cores = [
        loaded.topology.cores.len(),
        reaktor.cores.as_ref().map_or(0, |c| *c.get_ref()),
        reaktor.cpus.as_ref().map_or(0, |c| c.get_ref().len()),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    if cores > MAX_CORES {
        return error(
            400,
            "too_many_cores",
            format!("the what-if plans at most {MAX_CORES} cores; this topology has {cores}"),
        );
    }
    let plan = match crate::place::place(&mut loaded) {
        Ok(plan) => plan,
        Err(e) => return error(400, "invalid_topology", e.to_string()),
    };
    let costs_used = measured(stats, costs);
    let source = if costs_used.is_empty() {
        "declared"
    } else {
        "measured"
    };
    let proposed = view(&loaded, plan.as_ref(), &plan_input(&loaded, &costs_used));
    let now = view(
        &current.loaded,
        current.plan.as_ref(),
        &plan_input(&current.loaded, &costs_used),
    );
    let body = Comparison {
        costs: source,
        ratio: proposed.prediction.throughput_rps / now.prediction.throughput_rps.max(1e-12),
        current: &now,
        proposed: &proposed,
    };
    Answer {
        status: 200,
        body: serde_json::to_vec(&body).expect("plain data serializes"),
    }
}

/// The running placement as JSON (`GET /console/plan`).
pub fn current_view(current: &Current, stats: &SharedStats, costs: Costs) -> PlanView {
    let costs = measured(stats, costs);
    view(
        &current.loaded,
        current.plan.as_ref(),
        &plan_input(&current.loaded, &costs),
    )
}

/// A what-if is already running.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

impl WhatIf {
    pub fn new(current: Arc<Current>, stats: Arc<SharedStats>) -> WhatIf {
        WhatIf {
            current,
            stats,
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn current(&self) -> &Current {
        &self.current
    }

    /// Starts planning `text` on a thread of its own; the answer appears in the slot.
    pub fn submit(&self, text: String, costs: Costs) -> Result<Slot, Busy> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(Busy);
        }
        let slot: Slot = Arc::new(Mutex::new(None));
        let (current, stats, running, out) = (
            self.current.clone(),
            self.stats.clone(),
            self.running.clone(),
            slot.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("reaktor-what-if".into())
            // A deeply nested TOML value recurses in the parser: room for the deepest the
            // body limit allows.
            .stack_size(64 << 20)
            .spawn(move || {
                let answer = evaluate(&current, &stats, &text, costs);
                if let Ok(mut slot) = out.lock() {
                    *slot = Some(answer);
                }
                running.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.running.store(false, Ordering::Release);
            let answer = error(
                503,
                "no_thread",
                format!("cannot start the what-if's thread: {e}"),
            );
            if let Ok(mut s) = slot.lock() {
                *s = Some(answer);
            }
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const RUNNING: &str = r#"
[[listener]]
name = "http"
address = "127.0.0.1:0"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[http.route]]
path = "/"
to = "echo"
"#;

    fn current() -> (Current, SharedStats) {
        let mut loaded = crate::kinds::parse(Path::new("t.toml"), RUNNING).unwrap();
        let plan = crate::place::place(&mut loaded).unwrap();
        let stats = SharedStats {
            started: Instant::now(),
            pid: 1,
            instances: Vec::new(),
            rings: Vec::new(),
            events: Default::default(),
        };
        (Current { loaded, plan }, stats)
    }

    fn json(answer: &Answer) -> serde_json::Value {
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn a_pipeline_split_is_predicted_slower_than_the_running_fusion() {
        let (current, stats) = current();
        let split = RUNNING.replace(
            "[[core]]\nnuklei = [\"tcp\", \"http\", \"echo\"]\n\n[[core]]\nnuklei = [\"tcp\", \"http\", \"echo\"]",
            "[[core]]\nnuklei = [\"tcp\", \"http\"]\n\n[[core]]\nnuklei = [\"echo\"]",
        );
        let answer = evaluate(&current, &stats, &split, Costs::Measured);
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let v = json(&answer);
        assert_eq!(v["costs"], "declared", "nothing measured yet");
        assert!(v["ratio"].as_f64().unwrap() < 1.0, "{v}");
        assert_eq!(
            v["proposed"]["cores"][1]["instances"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(v["current"]["instances"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn an_auto_topology_brings_the_planners_words() {
        let (current, stats) = current();
        let auto = "[reaktor]\nplacement = \"auto\"\ncores = 4\n[[listener]]\nname = \"h\"\naddress = \"127.0.0.1:0\"\nchain = [\"tcp\", \"http\"]\n[[http.route]]\npath = \"/\"\nto = \"echo\"\n";
        let v = json(&evaluate(&current, &stats, auto, Costs::Declared));
        assert_eq!(v["proposed"]["placement"], "auto");
        assert_eq!(v["proposed"]["cores"].as_array().unwrap().len(), 4);
        assert!(v["proposed"]["planner"]["summary"][0]
            .as_str()
            .unwrap()
            .starts_with("4 core(s)"));
    }

    #[test]
    fn hostile_topologies_get_400_with_the_reason() {
        let (current, stats) = current();
        for (text, says) in [
            ("[[core]\nnuklei = 1", "what-if.toml:1:"),
            (
                "[[core]]\nnuklei = [\"quic\"]\n",
                "unknown nukleus kind `quic`",
            ),
            (
                "[reaktor]\nplacement = \"auto\"\ncores = 100000\n",
                "at most",
            ),
            ("[unknown]\nx = 1\n", "unknown section `unknown`"),
            ("a = ", "what-if.toml:1:"),
        ] {
            let answer = evaluate(&current, &stats, text, Costs::Declared);
            assert_eq!(answer.status, 400, "{text}");
            let v = json(&answer);
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{text}: {message}");
        }
        // Deep nesting: an error, not a crash (on the what-if thread's stack).
        let deep = format!("a = {}", "[".repeat(60_000));
        let slot = WhatIf::new(Arc::new(current), Arc::new(stats))
            .submit(deep, Costs::Declared)
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(answer) = slot.lock().unwrap().take() {
                assert_eq!(answer.status, 400);
                break;
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "the what-if never answered"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn one_what_if_at_a_time() {
        let (current, stats) = current();
        let w = WhatIf::new(Arc::new(current), Arc::new(stats));
        let slot = w.submit(RUNNING.into(), Costs::Declared).unwrap();
        // Either the first is still running (busy) or it finished (then a second may start).
        match w.submit(RUNNING.into(), Costs::Declared) {
            Err(Busy) => {}
            Ok(_) => assert!(slot.lock().unwrap().is_some()),
        }
    }
}
