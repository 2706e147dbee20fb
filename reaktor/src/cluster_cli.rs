//! `reaktor cluster status --url URL`: asks one member for its view of the cluster
//! (`GET /v1/cluster`), then every member it lists for theirs, and prints one line per member
//! and a verdict: who serves, in which epoch, whether the members agree. The exit status says
//! whether exactly one member serves.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// A member's answer to `GET /v1/cluster`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub role: String,
    pub serving: bool,
    pub term: u64,
    pub epoch: Option<u64>,
    pub leader: Option<LeaderView>,
    pub lease_remaining_ms: Option<u64>,
    pub members: Vec<MemberEntry>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct LeaderView {
    pub id: u64,
    pub api: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MemberEntry {
    pub id: u64,
    pub peer: String,
    pub api: String,
}

#[derive(Debug, Error)]
pub enum AskError {
    #[error("`{0}` is not an http:// URL (host:port); https is not supported by this command")]
    Url(String),
    #[error("cannot reach {url}: {source}")]
    Io { url: String, source: io::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} did not answer with a cluster status: {why}")]
    Body { url: String, why: String },
}

/// `GET {base}/v1/cluster`.
pub fn ask(base: &str, timeout: Duration) -> Result<MemberView, AskError> {
    let url = format!("{}/v1/cluster", base.trim_end_matches('/'));
    let authority = base
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AskError::Url(base.to_string()))?;
    let io_err = |source| AskError::Io {
        url: url.clone(),
        source,
    };
    let address = authority
        .to_socket_addrs()
        .map_err(io_err)?
        .next()
        .ok_or_else(|| AskError::Url(base.to_string()))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    write!(
        stream,
        "GET /v1/cluster HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    let mut bytes = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| AskError::Body {
        url: url.clone(),
        why: "no complete HTTP response".into(),
    })?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(AskError::Status {
            url,
            status,
            body: body.trim().chars().take(200).collect(),
        });
    }
    serde_json::from_str(body.trim()).map_err(|e| AskError::Body {
        url,
        why: e.to_string(),
    })
}

/// Prints the cluster as `base`'s member and every member it lists see it; returns whether
/// exactly one member serves and every reachable member names it as leader.
pub fn status(base: &str, timeout: Duration, out: &mut dyn Write) -> Result<bool, AskError> {
    let first = ask(base, timeout)?;
    let mut views: Vec<(MemberEntry, Result<MemberView, AskError>)> = Vec::new();
    for member in &first.members {
        let view = if member.id == first.id {
            Ok(first.clone())
        } else {
            ask(&member.api, timeout)
        };
        views.push((member.clone(), view));
    }
    writeln!(
        out,
        "cluster of {} members (asked {base}, member {})",
        first.members.len(),
        first.id
    )
    .ok();
    writeln!(
        out,
        "  {:>3}  {:<28} {:<22} {:<10} {:>6} {:>6} {:>7} {:>8} {:>11}",
        "id", "api", "peer", "role", "term", "epoch", "leader", "serving", "lease left"
    )
    .ok();
    let dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for (member, view) in &views {
        match view {
            Ok(v) => writeln!(
                out,
                "{} {:>3}  {:<28} {:<22} {:<10} {:>6} {:>6} {:>7} {:>8} {:>11}",
                if v.serving { "*" } else { " " },
                member.id,
                member.api,
                member.peer,
                v.role,
                v.term,
                dash(v.epoch),
                dash(v.leader.as_ref().map(|l| l.id)),
                if v.serving { "yes" } else { "no" },
                v.lease_remaining_ms
                    .map_or("-".to_string(), |ms| format!("{ms} ms")),
            ),
            Err(e) => writeln!(
                out,
                "  {:>3}  {:<28} {:<22} unreachable: {e}",
                member.id, member.api, member.peer
            ),
        }
        .ok();
    }
    let reachable: Vec<&MemberView> = views.iter().filter_map(|(_, v)| v.as_ref().ok()).collect();
    let serving: Vec<&&MemberView> = reachable.iter().filter(|v| v.serving).collect();
    let quorum = first.members.len() / 2 + 1;
    let healthy = match serving.as_slice() {
        [master] => {
            let agree = reachable
                .iter()
                .all(|v| v.leader.as_ref().map(|l| l.id) == Some(master.id));
            writeln!(
                out,
                "master: member {} in epoch {}; {} of {} members reachable (quorum {quorum}); {}",
                master.id,
                dash(master.epoch),
                reachable.len(),
                first.members.len(),
                if agree {
                    "every reachable member follows it"
                } else {
                    "some reachable members do not know it yet"
                }
            )
            .ok();
            agree
        }
        [] => {
            writeln!(
                out,
                "no member serves: an election is running or no quorum is reachable ({} of {} members reachable, quorum {quorum})",
                reachable.len(),
                first.members.len()
            )
            .ok();
            false
        }
        many => {
            // Members are asked one after another: a failover while asking shows two.
            let ids: Vec<String> = many.iter().map(|v| v.id.to_string()).collect();
            writeln!(
                out,
                "members {} each said they serve, asked one after another: a failover happened while asking; ask again",
                ids.join(" and ")
            )
            .ok();
            false
        }
    };
    Ok(healthy)
}
