//! The serving gate: whether this switch may answer switch calls, and what it says when it
//! may not. Alone (no `[cluster]`) it always may and stamps nothing. As a cluster member it
//! may only while this member holds the master's lease, read from the [`Mastership`] the
//! election publishes and checked against the clock:
//!
//! * [`ServingGate::look`] at the start of every poll: the epoch it serves in began or ended
//!   (the nukleus then closes every receiving connection and drops the port table);
//! * [`ServingGate::holds`] right before a reply or a push batch leaves: the lease still runs
//!   at that instant (so nothing is answered after the lease ended, however long the poll);
//! * [`ServingGate::refusal`] for calls while it may not: `307` to the master with its API URL
//!   (`Location` keeps the request's own path and query), or `503` + `Retry-After` while no
//!   master is known or this member waits for its first lease;
//! * [`ServingGate::stamp`] and [`ServingGate::push_lead`]: the epoch (the fencing token's
//!   first half) and the reply's sequence in the epoch go into every reply; every push batch
//!   starts with an epoch element.

use std::sync::Arc;
use std::time::Instant;

use streams::{Mastership, Standing};

/// What a cluster member's switch needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct ClusterGateConfig {
    /// This member's standing, published by its election.
    pub mastership: Arc<Mastership>,
    /// This member's id.
    pub me: u64,
    /// Every member's id and API URL (`scheme://host:port`), for redirects.
    pub members: Vec<(u64, String)>,
    /// The wait a client is told while no master is known (an election runs), ms.
    pub retry_no_master_ms: u64,
    /// The wait a client is told while this member, elected, waits for its first lease, ms.
    pub retry_elected_ms: u64,
}

/// A change of what this member serves, seen by [`ServingGate::look`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateChange {
    /// This member became the master: serve in this epoch, from an empty table.
    Started(u64),
    /// The lease of this epoch ended (or was given up): stop at once.
    Stopped(u64),
}

/// The answer to a switch call while this member may not serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 307 (to the master) or 503 (no master known yet).
    pub status: u16,
    /// `Location` or `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    /// JSON: `{"error":{...},"leader":{...}|null,"retry_after_ms":N}`.
    pub body: Vec<u8>,
}

struct Member {
    config: ClusterGateConfig,
    /// The epoch served and the lease end seen at the last look.
    serving: Option<(u64, Instant)>,
    /// The standing at the last look (for refusals and close reasons).
    seen: Standing,
    /// Replies stamped in the current epoch.
    sequence: u64,
    /// `{"type":"epoch","epoch":E}`: the first element of every push batch.
    lead: Vec<u8>,
}

/// See the module documentation.
pub struct ServingGate {
    member: Option<Member>,
}

impl std::fmt::Debug for ServingGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.member {
            None => write!(f, "ServingGate(alone)"),
            Some(m) => write!(
                f,
                "ServingGate(member {}, serving {:?})",
                m.config.me, m.serving
            ),
        }
    }
}

impl ServingGate {
    /// A switch that runs alone: always serves, stamps nothing.
    pub fn alone() -> ServingGate {
        ServingGate { member: None }
    }

    /// A cluster member's switch: serves only while the member holds the master's lease.
    pub fn member(config: ClusterGateConfig) -> ServingGate {
        let seen = config.mastership.read();
        ServingGate {
            member: Some(Member {
                config,
                serving: None,
                seen,
                sequence: 0,
                lead: Vec::new(),
            }),
        }
    }

    /// Whether this switch belongs to a cluster.
    pub fn is_member(&self) -> bool {
        self.member.is_some()
    }

    /// Reads the published standing at `now`: did the epoch served begin or end?
    pub fn look(&mut self, now: Instant) -> Option<GateChange> {
        let member = self.member.as_mut()?;
        let standing = member.config.mastership.read();
        member.seen = standing;
        let lease = standing.lease.filter(|lease| now < lease.until);
        match (member.serving, lease) {
            (Some((epoch, _)), Some(lease)) if lease.epoch == epoch => {
                member.serving = Some((epoch, lease.until));
                None
            }
            (Some((epoch, _)), _) => {
                member.serving = None;
                member.lead.clear();
                Some(GateChange::Stopped(epoch))
            }
            (None, Some(lease)) => {
                member.serving = Some((lease.epoch, lease.until));
                member.sequence = 0;
                member.lead =
                    format!("{{\"type\":\"epoch\",\"epoch\":{}}}", lease.epoch).into_bytes();
                Some(GateChange::Started(lease.epoch))
            }
            (None, None) => None,
        }
    }

    /// Whether switch calls are served (as of the last look).
    pub fn serving(&self) -> bool {
        self.member.as_ref().is_none_or(|m| m.serving.is_some())
    }

    /// Whether something decided at `now` may still go out: the lease of the epoch served
    /// runs at `now` (re-read if the one seen has run out: renewals move its end on).
    pub fn holds(&mut self, now: Instant) -> bool {
        let Some(member) = self.member.as_mut() else {
            return true;
        };
        let Some((epoch, until)) = member.serving else {
            return false;
        };
        if now < until {
            return true;
        }
        match member.config.mastership.read().lease {
            Some(lease) if lease.epoch == epoch && now < lease.until => {
                member.serving = Some((epoch, lease.until));
                true
            }
            _ => false,
        }
    }

    /// The epoch served, if this member serves one.
    pub fn epoch(&self) -> Option<u64> {
        self.member.as_ref()?.serving.map(|(epoch, _)| epoch)
    }

    /// When the lease seen at the last look ends: poll then, to stop on time.
    pub fn deadline(&self) -> Option<Instant> {
        self.member.as_ref()?.serving.map(|(_, until)| until)
    }

    /// Appends `"epoch":E,"sequence":S` to a JSON object reply (before its closing brace)
    /// and returns `(epoch, sequence)` if the lease holds at `now`; does nothing alone, while
    /// not serving, or once the lease ended.
    pub fn stamp(&mut self, reply: &mut Vec<u8>, now: Instant) -> Option<(u64, u64)> {
        if self.member.is_none() || reply.last() != Some(&b'}') || !self.holds(now) {
            return None;
        }
        let member = self.member.as_mut()?;
        let (epoch, _) = member.serving?;
        reply.pop();
        member.sequence += 1;
        let empty = reply.last() == Some(&b'{');
        if !empty {
            reply.push(b',');
        }
        let mut number = itoa::Buffer::new();
        reply.extend_from_slice(b"\"epoch\":");
        reply.extend_from_slice(number.format(epoch).as_bytes());
        reply.extend_from_slice(b",\"sequence\":");
        reply.extend_from_slice(number.format(member.sequence).as_bytes());
        reply.push(b'}');
        Some((epoch, member.sequence))
    }

    /// The first element of every push batch (`{"type":"epoch","epoch":E}`); empty alone.
    pub fn push_lead(&self) -> &[u8] {
        self.member.as_ref().map_or(&[], |m| m.lead.as_slice())
    }

    /// The leader as the last look saw it, with its API URL (if it is another member).
    pub fn leader(&self) -> Option<(u64, &str)> {
        let member = self.member.as_ref()?;
        let leader = member.seen.leader?;
        let api = member
            .config
            .members
            .iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, api)| api.as_str())?;
        Some((leader, api))
    }

    /// Why this member stopped serving, for the close of its receiving connections: the
    /// master if another member is known to be it.
    pub fn stopped_text(&self) -> String {
        match (self.leader(), self.member.as_ref()) {
            (Some((leader, api)), Some(m)) if leader != m.config.me => {
                format!("not master: the master is member {leader} at {api}")
            }
            _ => "not master: this member's lease ended; reconnect to find the master".into(),
        }
    }

    /// Why this member does not serve, for people: a close reason or an error message.
    pub fn not_master_text(&self) -> String {
        let Some(member) = self.member.as_ref() else {
            return "this switch serves alone".into();
        };
        match self.leader() {
            Some((leader, _)) if leader == member.config.me => {
                "not master yet: elected, waiting for a quorum to grant the lease".into()
            }
            Some((leader, api)) => format!("not master: the master is member {leader} at {api}"),
            None => "not master: no master known, an election is running".into(),
        }
    }

    /// The answer to a switch call for `target` (the request's path and query) while this
    /// member does not serve.
    pub fn refusal(&self, target: &str) -> Refusal {
        let Some(member) = self.member.as_ref() else {
            return Refusal {
                status: 503,
                headers: vec![("Retry-After", "1".into())],
                body: Vec::new(),
            };
        };
        let message = self.not_master_text();
        match self.leader() {
            Some((leader, api)) if leader != member.config.me => {
                let body = serde_json::json!({
                    "error": {"code": "not_master", "message": message},
                    "leader": {"id": leader, "api": api},
                });
                Refusal {
                    status: 307,
                    headers: vec![("Location", format!("{api}{target}"))],
                    body: body.to_string().into_bytes(),
                }
            }
            leader => {
                let wait = if leader.is_some() {
                    member.config.retry_elected_ms
                } else {
                    member.config.retry_no_master_ms
                };
                let leader = leader.map(|(id, api)| serde_json::json!({"id": id, "api": api}));
                let body = serde_json::json!({
                    "error": {"code": "no_master", "message": format!("{message}; retry in {wait} ms")},
                    "leader": leader,
                    "retry_after_ms": wait,
                });
                Refusal {
                    status: 503,
                    // Whole seconds only: clients of this project read `retry_after_ms`.
                    headers: vec![("Retry-After", wait.div_ceil(1000).max(1).to_string())],
                    body: body.to_string().into_bytes(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use streams::{MasterLease, MemberRole};

    fn member(mastership: &Arc<Mastership>) -> ServingGate {
        ServingGate::member(ClusterGateConfig {
            mastership: mastership.clone(),
            me: 1,
            members: vec![
                (1, "http://127.0.0.1:8081".into()),
                (2, "http://127.0.0.1:8082".into()),
            ],
            retry_no_master_ms: 150,
            retry_elected_ms: 20,
        })
    }

    fn publish(m: &Mastership, lease: Option<(u64, Instant)>, leader: Option<u64>) {
        m.publish(
            &Standing {
                lease: lease.map(|(epoch, until)| MasterLease { epoch, until }),
                role: if lease.is_some() {
                    MemberRole::Leader
                } else {
                    MemberRole::Follower
                },
                term: 5,
                leader,
            },
            false,
        );
    }

    #[test]
    fn alone_it_always_serves_and_stamps_nothing() {
        let mut gate = ServingGate::alone();
        assert_eq!(gate.look(Instant::now()), None);
        assert!(gate.serving() && gate.holds(Instant::now()));
        let mut reply = br#"{"registered":1,"failed":[]}"#.to_vec();
        assert_eq!(gate.stamp(&mut reply, Instant::now()), None);
        assert_eq!(reply, br#"{"registered":1,"failed":[]}"#);
        assert!(gate.push_lead().is_empty());
    }

    #[test]
    fn a_lease_starts_and_ends_an_epoch_and_its_end_is_checked_against_the_clock() {
        let m = Arc::new(Mastership::new());
        let mut gate = member(&m);
        let t0 = Instant::now();
        assert!(!gate.serving());
        publish(&m, Some((5, t0 + Duration::from_millis(100))), Some(1));
        assert_eq!(gate.look(t0), Some(GateChange::Started(5)));
        assert_eq!(gate.epoch(), Some(5));
        assert_eq!(gate.push_lead(), br#"{"type":"epoch","epoch":5}"#);
        let mut reply = br#"{"id":3,"registered":2,"failed":[]}"#.to_vec();
        assert_eq!(gate.stamp(&mut reply, t0), Some((5, 1)));
        assert_eq!(
            reply,
            br#"{"id":3,"registered":2,"failed":[],"epoch":5,"sequence":1}"#
        );
        let mut empty = b"{}".to_vec();
        assert_eq!(gate.stamp(&mut empty, t0), Some((5, 2)));
        assert_eq!(empty, br#"{"epoch":5,"sequence":2}"#);
        // A renewal the gate has not looked at yet still counts.
        assert!(gate.holds(t0 + Duration::from_millis(99)));
        publish(&m, Some((5, t0 + Duration::from_millis(200))), Some(1));
        assert!(gate.holds(t0 + Duration::from_millis(150)));
        assert_eq!(gate.look(t0 + Duration::from_millis(150)), None);
        // The raft thread is late: the lease ends by the clock alone, and nothing is stamped.
        assert!(!gate.holds(t0 + Duration::from_millis(200)));
        let mut late = b"{}".to_vec();
        assert_eq!(gate.stamp(&mut late, t0 + Duration::from_millis(200)), None);
        assert_eq!(
            gate.look(t0 + Duration::from_millis(200)),
            Some(GateChange::Stopped(5))
        );
        assert!(!gate.serving());
        assert!(gate.push_lead().is_empty());
    }

    #[test]
    fn refusals_redirect_to_the_master_or_say_when_to_retry() {
        let m = Arc::new(Mastership::new());
        let mut gate = member(&m);
        let now = Instant::now();
        let r = gate.refusal("/v1/nodes/n1/ports");
        assert_eq!(r.status, 503);
        assert_eq!(r.headers, vec![("Retry-After", "1".to_string())]);
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains(r#""retry_after_ms":150"#), "{body}");
        assert!(body.contains(r#""leader":null"#), "{body}");
        publish(&m, None, Some(2));
        gate.look(now);
        let r = gate.refusal("/v1/ws/n1?address=a%3A1");
        assert_eq!(r.status, 307);
        assert_eq!(
            r.headers,
            vec![(
                "Location",
                "http://127.0.0.1:8082/v1/ws/n1?address=a%3A1".to_string()
            )]
        );
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains(r#""leader":{"api":"http://127.0.0.1:8082","id":2}"#),
            "{body}"
        );
        assert!(gate
            .not_master_text()
            .contains("member 2 at http://127.0.0.1:8082"));
        // Elected, no lease yet: not a redirect to itself.
        publish(&m, None, Some(1));
        gate.look(now);
        let r = gate.refusal("/v1/messages");
        assert_eq!(r.status, 503);
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains(r#""retry_after_ms":20"#));
    }
}
