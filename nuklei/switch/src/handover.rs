//! Moving ports between nodes without freeing them: **handover** (node A gives ports to node
//! B: the paper's active balancing) and **compare-and-register** (register a port only if its
//! owner is who the caller says: nobody, itself, or a node whose authority it has).
//!
//! A moved port goes from one owner to the other in one step at its shard
//! ([`crate::PortShard::transfer`]): nobody sees it free, its release subscriptions stay with
//! it, and watchers see one `moved` event (its sequence number is in the pushes below). The
//! node that did not make the call is told by a push: the receiver of a handover gets
//! `{"type":"handover","port":…,"from":…,"seq":…}` per port, the previous owner of a port
//! taken by compare-and-register `{"type":"moved","port":…,"to":…,"seq":…}`.
//!
//! Fencing tokens (a cluster's master stamps every reply `(epoch, sequence)`): a
//! compare-and-register's stamp is the token of the ports it won, as a RegPort's is; a port
//! handed over gets its token at its new owner by a RegPort of it (it is the node's already,
//! so that cannot fail for ownership), whose stamp comes after every stamp the previous
//! owner had. The clients send that RegPort when the `handover` push arrives.
//!
//! The per-node limit is checked before anything moves, counting every port of the request
//! as one the receiver may gain (with several instances the counts are at the nodes' homes
//! and the ports at their shards, and nothing is rolled back), so a request that could take
//! the receiver over its limit is refused as a whole.

use crate::json::write_string;
use crate::limits::LimitError;
use crate::ports::{shard_of, NodeIdx, Outcome};
use crate::switch::{FailedPort, HandoverReply, Output, RegPortReply, Switch, SwitchError};
use crate::watch::Event;

/// The push to the receiver of a handover.
pub fn encode_handover(port: &str, from: &str, seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"handover","port":"#);
    write_string(out, port);
    out.extend_from_slice(br#","from":"#);
    write_string(out, from);
    out.extend_from_slice(br#","seq":"#);
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b'}');
}

/// The push to the previous owner of a port taken by compare-and-register.
pub fn encode_moved(port: &str, to: &str, seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"moved","port":"#);
    write_string(out, port);
    out.extend_from_slice(br#","to":"#);
    write_string(out, to);
    out.extend_from_slice(br#","seq":"#);
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b'}');
}

/// Refuses a request that could take a node holding `held` ports over `limit` by `asked`.
pub(crate) fn check_room(held: usize, asked: usize, limit: usize) -> Result<(), SwitchError> {
    if held + asked > limit {
        return Err(LimitError::TooManyPortsForNode {
            count: held + asked,
            limit,
        }
        .into());
    }
    Ok(())
}

impl Switch {
    /// Moves those of `ports` that `from` owns to `to` (both online).
    pub fn handover<S: AsRef<str>>(
        &mut self,
        from: &str,
        to: &str,
        ports: &[S],
        out: &mut Vec<Output>,
    ) -> Result<HandoverReply, SwitchError> {
        self.check_ports(ports)?;
        let a = self.online_index(from)?;
        let b = self.online_index(to)?;
        if a == b {
            return Err(SwitchError::Invalid(
                "a node cannot hand ports over to itself".into(),
            ));
        }
        let held = self.nodes.get(b).map_or(0, |n| n.ports());
        check_room(held, ports.len(), self.limits.max_ports_per_node)?;
        let (from_id, to_id, to_address) = self.ids(a, b);
        let mut reply = HandoverReply::default();
        for (i, port) in ports.iter().enumerate() {
            let port = port.as_ref();
            let shard = shard_of(port.as_bytes(), self.shards.len());
            match self.shards[shard].transfer(port, a, b) {
                Outcome::Released(_) => {
                    reply.moved.push(i);
                    self.nodes.add_ports(a, -1);
                    self.nodes.add_ports(b, 1);
                    let seq = self.emit(&Event::moved(port, &to_id, &to_address, &from_id), out);
                    self.notify_mover(b, |buf| encode_handover(port, &from_id, seq, buf), out);
                }
                Outcome::NotOwner(_) => reply.not_owned.push(i),
                Outcome::Unknown => reply.unknown.push(i),
            }
        }
        Ok(reply)
    }

    /// Compare-and-register: registers each port for `node` only if its owner is `if_owner`
    /// (`None`: free). A port owned by `if_owner` (another node) moves to `node`; one it
    /// already owns is left as it is. The others fail with their owner (`""`: free).
    pub fn reg_port_if<S: AsRef<str>>(
        &mut self,
        node: &str,
        ports: &[S],
        if_owner: Option<&str>,
        subscribe: bool,
        out: &mut Vec<Output>,
    ) -> Result<RegPortReply, SwitchError> {
        self.check_ports(ports)?;
        let idx = self.online_index(node)?;
        let expected: Option<NodeIdx> = match if_owner {
            None => None,
            Some(x) => match self.nodes.lookup(x) {
                Some(i) => Some(i),
                // An unknown node owns nothing: every port fails with its owner.
                None => Some(NodeIdx::MAX),
            },
        };
        if expected != Some(idx) {
            let held = self.nodes.get(idx).map_or(0, |n| n.ports());
            check_room(held, ports.len(), self.limits.max_ports_per_node)?;
        }
        let (id, address) = self
            .nodes
            .get(idx)
            .map(|n| (n.id().clone(), n.address().clone()))
            .unwrap_or_default();
        let mut reply = RegPortReply::default();
        let mut failed = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let port = port.as_ref();
            let shard = shard_of(port.as_bytes(), self.shards.len());
            let owner = self.shards[shard].owner(port);
            if owner != expected {
                failed.push((i, owner));
                continue;
            }
            match owner {
                None => {
                    if let Err(e) = self.shards[shard].register(port, idx) {
                        tracing::error!(error = %e, port, "register of a free port failed");
                        continue;
                    }
                    reply.registered += 1;
                    self.nodes.add_ports(idx, 1);
                    self.metrics.registrations += 1;
                    self.emit(&Event::acquired(port, &id, &address), out);
                }
                Some(o) if o == idx => {}
                Some(o) => {
                    self.shards[shard].transfer(port, o, idx);
                    reply.registered += 1;
                    self.nodes.add_ports(o, -1);
                    self.nodes.add_ports(idx, 1);
                    let from = self
                        .nodes
                        .get(o)
                        .map(|n| n.id().clone())
                        .unwrap_or_default();
                    let seq = self.emit(&Event::moved(port, &id, &address, &from), out);
                    self.notify_mover(o, |buf| encode_moved(port, &id, seq, buf), out);
                }
            }
        }
        self.metrics.registration_conflicts += failed.len() as u64;
        let session = self.nodes.get(idx).map_or(0, |n| n.session());
        for (i, owner) in failed {
            let port = ports[i].as_ref();
            let shard = shard_of(port.as_bytes(), self.shards.len());
            if subscribe && owner.is_some() {
                self.shards[shard].subscribe(port, crate::ports::Subscriber { node: idx, session });
            }
            let (owner, address) = owner
                .and_then(|o| self.nodes.get(o))
                .map(|n| (n.id().clone(), n.address().clone()))
                .unwrap_or_default();
            reply.failed.push(FailedPort {
                index: i,
                owner,
                address,
            });
        }
        Ok(reply)
    }

    fn ids(
        &self,
        a: NodeIdx,
        b: NodeIdx,
    ) -> (
        std::sync::Arc<str>,
        std::sync::Arc<str>,
        std::sync::Arc<str>,
    ) {
        let id = |i| {
            self.nodes
                .get(i)
                .map(|n| n.id().clone())
                .unwrap_or_default()
        };
        let address = self
            .nodes
            .get(b)
            .map(|n| n.address().clone())
            .unwrap_or_default();
        (id(a), id(b), address)
    }

    /// Queues a push for `node` telling it a port came or went (a slow consumer goes
    /// offline).
    fn notify_mover(
        &mut self,
        node: NodeIdx,
        encode: impl FnOnce(&mut Vec<u8>),
        out: &mut Vec<Output>,
    ) {
        let mut slow = Vec::new();
        crate::watch::push_to(&mut self.nodes, node, encode, out, &mut slow);
        if !slow.is_empty() {
            self.run_offline(crate::switch::slow_consumers(slow).collect(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_json() {
        let mut out = Vec::new();
        encode_handover("p\"", "a", 7, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"handover","port":"p\"","from":"a","seq":7})
        );
        out.clear();
        encode_moved("p", "b", 8, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"moved","port":"p","to":"b","seq":8})
        );
    }
}
