//! The coordination calls of [`Client`] (issue 15): watches, listings, handover,
//! compare-and-register and the session id, as requests outside the batches.

use tokio::sync::oneshot;

use super::command::{Command, CoordCommand};
use super::Client;
use crate::error::Error;
use crate::session::Outcome;
use crate::types::{FailedPort, FencingToken, Handover, NodeInfo, Page, PortOwner, Registration};

impl Client {
    async fn coord(&self, cmd: CoordCommand) -> Result<serde_json::Value, Error> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Coord(cmd, reply)).is_err() {
            return Err(self.closed_error());
        }
        match tokio::time::timeout(self.call_timeout, rx).await {
            Ok(Ok(Ok(Outcome::Raw(v)))) => Ok(v),
            Ok(Ok(Ok(other))) => Err(Error::Other {
                code: "unexpected_reply".into(),
                message: format!("{other:?}"),
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::Timeout(self.call_timeout)),
        }
    }

    async fn raw(&self, fields: serde_json::Value) -> Result<serde_json::Value, Error> {
        match fields {
            serde_json::Value::Object(m) => self.coord(CoordCommand::Raw(m)).await,
            _ => Err(Error::Closed),
        }
    }

    /// Watch the ports named `key`, or starting with it if `prefix`: their events arrive as
    /// [`crate::Event::Watch`] from now on and across reconnects (the client resumes the watch from
    /// the last event it delivered; what the switch no longer had comes as
    /// [`crate::Event::Missed`]). Returns the watch's id.
    pub async fn watch_ports(&self, key: impl Into<String>, prefix: bool) -> Result<u64, Error> {
        self.watch("ports", key.into(), prefix).await
    }

    /// Watch the nodes with id `key` (or starting with it): online, offline, replaced.
    pub async fn watch_nodes(&self, key: impl Into<String>, prefix: bool) -> Result<u64, Error> {
        self.watch("nodes", key.into(), prefix).await
    }

    async fn watch(&self, kind: &'static str, key: String, prefix: bool) -> Result<u64, Error> {
        let reply = self
            .coord(CoordCommand::Watch { kind, key, prefix })
            .await?;
        reply["watch"].as_u64().ok_or_else(|| Error::Other {
            code: "unexpected_reply".into(),
            message: format!("a watch reply without its id: {reply}"),
        })
    }

    /// End watch `id`.
    pub async fn unwatch(&self, id: u64) -> Result<(), Error> {
        self.coord(CoordCommand::Unwatch(id)).await.map(drop)
    }

    /// The session of the current receiving connection (a REST call for this node may name
    /// it, so that it fails instead of landing in a later connection); `None` while
    /// disconnected.
    pub async fn session(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Session(tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// A page of the ports whose names start with `prefix`, in name order, after `after`
    /// (the previous page's `next`); at most `limit` (default: the switch's page size).
    pub async fn list_ports(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<PortOwner>, Error> {
        let reply = self
            .raw(serde_json::json!({"op": "listports", "prefix": prefix, "after": after, "limit": limit}))
            .await?;
        let entries = reply["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PortOwner {
                port: p["port"].as_str().unwrap_or_default().to_string(),
                owner: p["owner"].as_str().map(str::to_string),
                address: p["address"].as_str().map(str::to_string),
            })
            .collect();
        Ok(page(entries, &reply))
    }

    /// A page of the online nodes whose ids start with `prefix`, in id order.
    pub async fn list_nodes(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<NodeInfo>, Error> {
        let reply = self
            .raw(serde_json::json!({"op": "listnodes", "prefix": prefix, "after": after, "limit": limit}))
            .await?;
        let entries = reply["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| NodeInfo {
                node: n["node"].as_str().unwrap_or_default().to_string(),
                online: true,
                address: n["address"].as_str().map(str::to_string),
                ports: n["ports"].as_u64().unwrap_or(0),
            })
            .collect();
        Ok(page(entries, &reply))
    }

    /// A page of the ports of `node` (a port may repeat if `restarted`: a port the listing
    /// stood at left the node meanwhile).
    pub async fn node_ports(
        &self,
        node: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<String>, Error> {
        let reply = self
            .raw(serde_json::json!({"op": "nodeports", "node": node, "after": after, "limit": limit}))
            .await?;
        let entries = strings(&reply["ports"]);
        Ok(page(entries, &reply))
    }

    /// Move `ports` of this node to node `to` (online) at once: nobody sees them free,
    /// watchers see one `moved` each, `to` gets [`crate::Event::HandedOver`]. Moved ports are no
    /// longer held.
    pub async fn handover<I, S>(&self, to: &str, ports: I) -> Result<Handover, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ports: Vec<String> = ports.into_iter().map(Into::into).collect();
        let fields = serde_json::json!({"op": "handover", "to": to, "ports": ports});
        let serde_json::Value::Object(m) = fields else {
            return Err(Error::Closed);
        };
        let reply = self.coord(CoordCommand::Handover(m)).await?;
        Ok(Handover {
            moved: strings(&reply["moved"]),
            not_owned: strings(&reply["not_owned"]),
            unknown: strings(&reply["unknown"]),
        })
    }

    /// Compare-and-register: each of `ports` becomes this node's only if its owner is
    /// `owner` (`None`: nobody); a port of another node moves (this client's token must be
    /// granted that node too). The others fail with their owner (`""`: free).
    pub async fn register_if<I, S>(
        &self,
        ports: I,
        owner: Option<&str>,
    ) -> Result<Registration, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ports: Vec<String> = ports.into_iter().map(Into::into).collect();
        let fields = serde_json::json!({"op": "regport", "ports": ports, "if_owner": owner});
        let serde_json::Value::Object(m) = fields else {
            return Err(Error::Closed);
        };
        let reply = self
            .coord(CoordCommand::RegisterIf(m, ports.clone()))
            .await?;
        let failed: Vec<FailedPort> = reply["failed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| FailedPort {
                port: f["port"].as_str().unwrap_or_default().to_string(),
                owner: f["owner"].as_str().unwrap_or_default().to_string(),
                address: f["address"].as_str().map(str::to_string),
            })
            .collect();
        let owned: Vec<String> = ports
            .into_iter()
            .filter(|p| !failed.iter().any(|f| &f.port == p))
            .collect();
        let token = match (reply["epoch"].as_u64(), reply["sequence"].as_u64()) {
            (Some(epoch), Some(sequence)) => Some(FencingToken { epoch, sequence }),
            _ => None,
        };
        let tokens = token
            .map(|t| owned.iter().map(|p: &String| (p.clone(), t)).collect())
            .unwrap_or_default();
        Ok(Registration {
            owned,
            failed,
            tokens,
            epoch: token.map(|t| t.epoch),
        })
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn page<T>(entries: Vec<T>, reply: &serde_json::Value) -> Page<T> {
    Page {
        entries,
        next: reply["next"].as_str().map(str::to_string),
        restarted: reply["restarted"].as_bool().unwrap_or(false),
    }
}
