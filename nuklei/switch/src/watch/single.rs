//! Watches on the switch of one instance: every event is journaled and fanned out here, and a
//! watch's replay comes from the one journal.

use super::{replay, WatchKind, Watched};
use crate::nodes::{ConnId, NodeRegistry};
use crate::ports::NodeIdx;
use crate::switch::{slow_consumers, Output, Session, Switch, SwitchError, WatchError, WatchReply};

/// `watcher`, if it is a node-less watcher still connected.
pub(crate) fn watcher_index(
    nodes: &NodeRegistry,
    watcher: NodeIdx,
) -> Result<NodeIdx, SwitchError> {
    nodes
        .get(watcher)
        .filter(|n| n.is_watcher() && n.conn().is_some())
        .map(|_| watcher)
        .ok_or(SwitchError::WatcherGone)
}

/// A watch to start ([`Switch::watch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// The watch's id in the node's session (`None`: one it does not use yet).
    pub id: Option<u64>,
    /// Ports or nodes.
    pub kind: WatchKind,
    /// A name, or a prefix (`prefix`).
    pub key: String,
    /// Whether `key` is a prefix.
    pub prefix: bool,
    /// Resume after this cursor (one sequence number per instance); `None`: from now on.
    pub from: Option<Vec<u64>>,
}

impl WatchRequest {
    /// Checks the key against the limits and the cursor against the number of instances.
    pub(crate) fn check(
        &self,
        limits: &crate::limits::Limits,
        instances: usize,
    ) -> Result<(), SwitchError> {
        match self.kind {
            WatchKind::Ports => limits.check_port_name(&self.key)?,
            WatchKind::Nodes => limits.check_node_id(&self.key)?,
        }
        if self.key.is_empty() && !self.prefix {
            return Err(SwitchError::BadCursor(
                "a watch needs a name or a prefix (the empty prefix watches everything)".into(),
            ));
        }
        if let Some(from) = &self.from {
            if from.len() != instances {
                return Err(SwitchError::BadCursor(format!(
                    "the cursor has {} positions, this switch has {instances} instances: it is not a cursor of this switch",
                    from.len()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn watched(&self) -> Watched {
        Watched {
            kind: self.kind,
            key: self.key.as_str().into(),
            prefix: self.prefix,
        }
    }
}

/// The error of a cursor ahead of `instance`'s last sequence.
pub(crate) fn ahead(instance: usize, last: u64) -> SwitchError {
    SwitchError::BadCursor(format!(
        "the cursor's position for instance {instance} is ahead of its last event {last}: it is not a cursor of this switch"
    ))
}

impl Switch {
    /// Starts a watch of `node` (online): its events go to the node's receiving connection.
    /// With `from`, first what happened after that cursor (or a `missed` push for what the
    /// history no longer holds).
    pub fn watch(
        &mut self,
        node: &str,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) -> Result<WatchReply, SwitchError> {
        request.check(&self.limits, 1)?;
        let idx: NodeIdx = self.online_index(node)?;
        self.watch_at(idx, request, out)
    }

    /// Opens a node-less watcher on `conn` (a dashboard, an operator's tool): a receiving
    /// connection for watches only, with no ports, no lease, not listed among the nodes. It
    /// ends when the connection closes ([`Switch::connection_closed`]).
    pub fn open_watcher(&mut self, conn: ConnId) -> Session {
        let (node, session) = self.nodes.open_watcher(conn);
        Session {
            node,
            session,
            lease_deadline: u64::MAX,
            replaced: false,
        }
    }

    /// Starts a watch of the node-less watcher `watcher` (its index, from
    /// [`Switch::open_watcher`]), as [`Switch::watch`] does for a node.
    pub fn watcher_watch(
        &mut self,
        watcher: NodeIdx,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) -> Result<WatchReply, SwitchError> {
        request.check(&self.limits, 1)?;
        let idx = watcher_index(&self.nodes, watcher)?;
        self.watch_at(idx, request, out)
    }

    /// Ends watch `id` of the node-less watcher `watcher`.
    pub fn watcher_unwatch(&mut self, watcher: NodeIdx, id: u64) -> Result<(), SwitchError> {
        let idx = watcher_index(&self.nodes, watcher)?;
        self.watchers
            .remove(idx, id)
            .map(|_| ())
            .ok_or(SwitchError::Watch(WatchError::Unknown(id)))
    }

    fn watch_at(
        &mut self,
        idx: NodeIdx,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) -> Result<WatchReply, SwitchError> {
        let id = request.id.unwrap_or_else(|| self.watchers.next_id(idx));
        let watched = request.watched();
        let slot = self
            .watchers
            .add(idx, id, watched.clone(), self.limits.max_watches_per_node)?;
        let position = match request.from.as_deref() {
            None => self.journal.last(),
            Some(&[from]) => {
                let mut slow = Vec::new();
                let position = replay(
                    &self.journal,
                    &watched,
                    &mut self.nodes,
                    idx,
                    id,
                    0,
                    from,
                    out,
                    &mut slow,
                );
                if !slow.is_empty() {
                    self.run_offline(slow_consumers(slow).collect(), out);
                }
                match position {
                    Ok(p) => p,
                    Err(last) => {
                        self.watchers.remove(idx, id);
                        return Err(ahead(0, last));
                    }
                }
            }
            Some(_) => unreachable!("checked: one position per instance"),
        };
        self.watchers.set_position(slot, 0, position);
        Ok(WatchReply {
            id,
            cursor: vec![position],
        })
    }

    /// Ends watch `id` of `node`.
    pub fn unwatch(&mut self, node: &str, id: u64) -> Result<(), SwitchError> {
        let idx = self.online_index(node)?;
        self.watchers
            .remove(idx, id)
            .map(|_| ())
            .ok_or(SwitchError::Watch(WatchError::Unknown(id)))
    }
}
