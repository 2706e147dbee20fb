//! The `cluster` kind: a member's view of the cluster behind http. `GET /v1/cluster` (JSON:
//! this member's id and role, whether it serves, the term and epoch, the leader with its API
//! URL, the lease remaining, the members) and `GET /readyz` (200 while this member is the
//! serving master, else 503 naming the master it knows). Routed like `metrics`:
//! `[[http.route]] path = "/v1/cluster" to = "cluster"` and `path = "/readyz"`. It reads only
//! the standing the election publishes, so it answers whatever the switch is doing. Without
//! `[cluster]` the reaktor serves alone: `/readyz` is 200 and `/v1/cluster` 404.

use std::sync::Arc;
use std::time::Instant;

use nukleus_http::ext::RequestHead;
use serde::Serialize;
use serde_json::json;
use streams::{Carries, Mastership};

use super::responder::{Answer, Respond, ResponderNukleus};
use crate::cluster::Cluster;
use crate::error::StartError;
use crate::kind::{BoxedNukleus, Build, Kind, StreamNeed};

/// The `cluster` kind's declaration.
pub struct ClusterStatus;

impl Kind for ClusterStatus {
    fn name(&self) -> &'static str {
        "cluster"
    }
    fn about(&self) -> &'static str {
        "a [cluster] member's view behind http: GET /v1/cluster (JSON) and GET /readyz (200 on the serving master)"
    }
    fn default_cost(&self) -> f64 {
        0.1
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges]
    }
    fn stream_needs(&self, _loaded: &crate::topology::LoadedTopology) -> Vec<StreamNeed> {
        super::responder::stream_needs(self.name())
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        let view = match (&build.loaded.cluster, build.mastership) {
            (Some(cluster), Some(mastership)) => Some(View {
                cluster: cluster.clone(),
                mastership: mastership.clone(),
            }),
            _ => None,
        };
        Ok(Box::new(ResponderNukleus::new(
            build.instance.core,
            build.links,
            StatusAnswers { view, asked: 0 },
        )))
    }
}

/// `GET /v1/cluster` (docs/openapi.yaml, `ClusterStatus`).
#[derive(Serialize)]
struct StatusBody<'a> {
    id: u64,
    role: &'static str,
    serving: bool,
    term: u64,
    epoch: Option<u64>,
    leader: Option<LeaderBody<'a>>,
    lease_remaining_ms: Option<u64>,
    members: Vec<MemberBody<'a>>,
}

#[derive(Serialize)]
struct LeaderBody<'a> {
    id: u64,
    api: Option<&'a str>,
}

#[derive(Serialize)]
struct MemberBody<'a> {
    id: u64,
    peer: String,
    api: &'a str,
}

struct View {
    cluster: Cluster,
    mastership: Arc<Mastership>,
}

/// The answers of the `cluster` kind.
pub struct StatusAnswers {
    view: Option<View>,
    asked: u64,
}

fn json_answer(status: u16, value: impl Serialize) -> Answer {
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    body.push(b'\n');
    Answer {
        content_type: b"application/json",
        ..Answer::text(status, body)
    }
}

impl View {
    fn leader_api(&self, leader: u64) -> Option<&str> {
        self.cluster
            .members
            .iter()
            .find(|m| m.id == leader)
            .map(|m| m.api.as_str())
    }

    /// `GET /v1/cluster`.
    fn status(&self, now: Instant) -> StatusBody<'_> {
        let standing = self.mastership.read();
        let serving = standing.serving(now);
        StatusBody {
            id: self.cluster.id,
            role: standing.role.name(),
            serving: serving.is_some(),
            term: standing.term,
            // The epoch of the master this member knows: the term its leader was elected in.
            epoch: serving.or(standing.leader.map(|_| standing.term)),
            leader: standing.leader.map(|id| LeaderBody {
                id,
                api: self.leader_api(id),
            }),
            lease_remaining_ms: standing.lease_remaining(now).map(|d| d.as_millis() as u64),
            members: self
                .cluster
                .members
                .iter()
                .map(|m| MemberBody {
                    id: m.id,
                    peer: m.peer.to_string(),
                    api: &m.api,
                })
                .collect(),
        }
    }

    /// `GET /readyz`.
    fn ready(&self, now: Instant) -> Answer {
        let standing = self.mastership.read();
        if let Some(epoch) = standing.serving(now) {
            return Answer::text(200, format!("ready: the serving master, epoch {epoch}\n"));
        }
        let why = match standing.leader {
            Some(leader) if leader != self.cluster.id => format!(
                "not ready: {} of member {leader} ({}), which is the master",
                standing.role.name(),
                self.leader_api(leader).unwrap_or("no API known"),
            ),
            Some(_) => "not ready: elected, waiting for a quorum to grant the lease".into(),
            None => format!(
                "not ready: {}, no master known (an election is running)",
                standing.role.name()
            ),
        };
        Answer::text(503, format!("{why}\n"))
    }
}

impl Respond for StatusAnswers {
    fn kind(&self) -> &'static str {
        "cluster"
    }

    fn respond(&mut self, request: &RequestHead<'_>) -> Answer {
        let path = request.path().trim_end_matches('/');
        if path != "/v1/cluster" && path != "/readyz" {
            return Answer::text(404, "not found: this kind serves /v1/cluster and /readyz\n");
        }
        if request.method != "GET" && request.method != "HEAD" {
            return Answer {
                headers: vec![("Allow", "GET, HEAD".into())],
                ..Answer::text(405, "method not allowed: use GET\n")
            };
        }
        self.asked += 1;
        let now = Instant::now();
        match (&self.view, path) {
            (Some(view), "/readyz") => view.ready(now),
            (Some(view), _) => json_answer(200, view.status(now)),
            (None, "/readyz") => {
                Answer::text(200, "ready: no [cluster], this reaktor serves alone\n")
            }
            (None, _) => json_answer(
                404,
                json!({"error": {"code": "no_cluster", "message": "this reaktor runs alone: its topology has no [cluster] section"}}),
            ),
        }
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("requests_total", self.asked));
    }
}
