//! `[cluster]`: this reaktor is one member of a port switch cluster (DESIGN §6.1). Its id, the
//! members (id, peer address for the election traffic, public API URL for redirects), the
//! state directory and the election clocks. Without the section the reaktor runs alone.
//!
//! Checked here as far as the file alone allows: ids, addresses and URLs, and the clocks with
//! the election core's own rules (a lease that could outlive the followers' vote guard is
//! refused with the numbers). Errors name the line of the offending key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nukleus_raft::ElectionConfig;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Invalid, TopologyError};

/// Most members a cluster may list (raft works with any; 3 or 5 is what HA needs).
const MAX_MEMBERS: usize = 15;

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This member's id: one of the members' ids.
    pub id: Spanned<u64>,
    /// Where this member keeps its vote (`raft-state`) and its lock; relative paths are
    /// relative to the topology file. One directory per member.
    pub state_dir: Spanned<PathBuf>,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: Spanned<u64>,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: Spanned<u64>,
    /// The followers' minimum election timeout (randomized up to twice this).
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: Spanned<u64>,
    /// Default: the longest lease the clock assumption allows.
    pub lease_ms: Option<Spanned<u64>>,
    #[serde(default = "default_drift")]
    pub max_clock_drift_ppm: Spanned<u32>,
    /// The election thread's real-time (SCHED_FIFO) priority, 1..=99; 0: ordinary scheduling.
    #[serde(default = "default_election_priority")]
    pub election_priority: Spanned<u8>,
    #[serde(rename = "member")]
    pub members: Spanned<Vec<Spanned<MemberSection>>>,
}

/// `[[cluster.member]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub id: Spanned<u64>,
    /// `host:port` of the member's election traffic (its listener).
    pub peer: Spanned<String>,
    /// Where clients reach the member's switch API, e.g. `http://10.0.0.1:8080`: followers
    /// redirect there.
    pub api: Spanned<String>,
}

fn default_tick_ms() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_heartbeat_ms() -> Spanned<u64> {
    Spanned::new(0..0, 50)
}
fn default_election_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}
fn default_drift() -> Spanned<u32> {
    Spanned::new(0..0, 10_000)
}
fn default_election_priority() -> Spanned<u8> {
    Spanned::new(0..0, 10)
}

/// One member, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub peer: SocketAddr,
    /// Scheme, host and port, without a trailing slash.
    pub api: String,
}

/// `[cluster]`, checked: what the `raft` kind runs and the switch redirects by.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub id: u64,
    pub state_dir: PathBuf,
    pub election: ElectionConfig,
    /// Every member, this one included, in the file's order.
    pub members: Vec<Member>,
    /// The election thread's SCHED_FIFO priority (`None`: ordinary scheduling).
    pub election_priority: Option<i32>,
}

impl Cluster {
    /// This member.
    pub fn me(&self) -> &Member {
        self.members
            .iter()
            .find(|m| m.id == self.id)
            .expect("checked: the id is a member's")
    }

    /// The other members and their peer addresses.
    pub fn peers(&self) -> Vec<(u64, SocketAddr)> {
        self.members
            .iter()
            .filter(|m| m.id != self.id)
            .map(|m| (m.id, m.peer))
            .collect()
    }
}

/// An API URL reduced to `scheme://authority`, or why it is not one.
fn api_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| "must start with http:// or https://".to_string())?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("names no host".into());
    }
    if authority
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        return Err(
            "must be scheme://host[:port] only: the switch appends each request's own path".into(),
        );
    }
    let scheme_len = text.len() - rest.len();
    Ok(format!("{}{authority}", &text[..scheme_len]))
}

/// Checks `[cluster]`; `base` is the topology file's directory.
pub fn check(
    section: &ClusterSection,
    base: &Path,
    invalid: Invalid<'_>,
) -> Result<Cluster, TopologyError> {
    let written = section.members.get_ref();
    if written.is_empty() {
        return Err(invalid(
            Some(section.members.span()),
            "[cluster] lists no [[cluster.member]]: list every member, this one included (3 or 5 for high availability)".into(),
        ));
    }
    if written.len() > MAX_MEMBERS {
        return Err(invalid(
            Some(section.members.span()),
            format!(
                "[cluster] lists {} members; at most {MAX_MEMBERS} are supported (3 or 5 is what high availability needs)",
                written.len()
            ),
        ));
    }
    let mut members: Vec<Member> = Vec::new();
    for m in written {
        let m = m.get_ref();
        let id = *m.id.get_ref();
        if id == 0 {
            return Err(invalid(
                Some(m.id.span()),
                "[[cluster.member]] id must be at least 1 (0 means 'nobody' to raft)".into(),
            ));
        }
        if members.iter().any(|o| o.id == id) {
            return Err(invalid(
                Some(m.id.span()),
                format!(
                    "[[cluster.member]] id {id} is listed twice: every member needs its own id"
                ),
            ));
        }
        let peer: SocketAddr = m.peer.get_ref().parse().map_err(|_| {
            invalid(
                Some(m.peer.span()),
                format!(
                    "[[cluster.member]] peer `{}` is not an IP address with a port, e.g. 127.0.0.1:7101",
                    m.peer.get_ref()
                ),
            )
        })?;
        if members.iter().any(|o| o.peer == peer) {
            return Err(invalid(
                Some(m.peer.span()),
                format!("[[cluster.member]] peer {peer} is listed twice: every member needs its own peer address"),
            ));
        }
        let api = api_url(m.api.get_ref()).map_err(|why| {
            invalid(
                Some(m.api.span()),
                format!("[[cluster.member]] api `{}` {why}", m.api.get_ref()),
            )
        })?;
        if members.iter().any(|o| o.api == api) {
            return Err(invalid(
                Some(m.api.span()),
                format!(
                    "[[cluster.member]] api {api} is listed twice: every member serves its own API"
                ),
            ));
        }
        members.push(Member { id, peer, api });
    }
    let id = *section.id.get_ref();
    if !members.iter().any(|m| m.id == id) {
        return Err(invalid(
            Some(section.id.span()),
            format!(
                "[cluster] id {id} is not among the members ({}): add a [[cluster.member]] for this member or fix the id",
                members.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let ms = |v: &Spanned<u64>| Duration::from_millis(*v.get_ref());
    let election = ElectionConfig {
        tick: ms(&section.tick_ms),
        heartbeat: ms(&section.heartbeat_ms),
        election_timeout: ms(&section.election_timeout_ms),
        lease: section.lease_ms.as_ref().map(ms),
        max_clock_drift_ppm: *section.max_clock_drift_ppm.get_ref(),
        ..ElectionConfig::new(id, members.iter().map(|m| m.id).collect())
    };
    if let Err(e) = election.timing() {
        use nukleus_raft::ConfigError as E;
        // The first of these keys that is written in the file (defaults have no position).
        let written = |keys: &[Option<std::ops::Range<usize>>]| {
            keys.iter()
                .flatten()
                .find(|span| !span.is_empty())
                .cloned()
                .unwrap_or_else(|| section.id.span())
        };
        let (tick, heartbeat, election_timeout) = (
            Some(section.tick_ms.span()),
            Some(section.heartbeat_ms.span()),
            Some(section.election_timeout_ms.span()),
        );
        let lease = section.lease_ms.as_ref().map(|l| l.span());
        let span = match &e {
            E::ZeroTick => written(&[tick]),
            E::NotTickMultiple {
                name: "heartbeat", ..
            } => written(&[heartbeat, tick]),
            E::NotTickMultiple { .. } => written(&[election_timeout, tick]),
            E::ElectionNotAboveHeartbeat { .. } => written(&[election_timeout, heartbeat, tick]),
            E::Drift(_) => section.max_clock_drift_ppm.span(),
            E::LeaseTooLong { .. } | E::LeaseTooShort { .. } => {
                written(&[lease, election_timeout, heartbeat])
            }
            _ => section.id.span(),
        };
        return Err(invalid(Some(span), format!("[cluster] {e}")));
    }
    let priority = *section.election_priority.get_ref();
    if priority > 99 {
        return Err(invalid(
            Some(section.election_priority.span()),
            format!("[cluster] election_priority {priority} must be 0 (ordinary scheduling) or a SCHED_FIFO priority 1..=99"),
        ));
    }
    let state_dir = base.join(section.state_dir.get_ref());
    Ok(Cluster {
        id,
        state_dir,
        election,
        members,
        election_priority: (priority > 0).then_some(i32::from(priority)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_are_scheme_and_authority_only() {
        assert_eq!(
            api_url("http://127.0.0.1:8081/").unwrap(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            api_url("https://switch-1.example").unwrap(),
            "https://switch-1.example"
        );
        assert!(api_url("127.0.0.1:8081").unwrap_err().contains("http://"));
        assert!(api_url("http://h:1/v1")
            .unwrap_err()
            .contains("host[:port] only"));
        assert!(api_url("http://").unwrap_err().contains("no host"));
    }
}
