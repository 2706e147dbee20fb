//! The binary encoding of the coordination records (acknowledged delivery, handover,
//! listings), in the framing of [`super::codec`], with its fields ([`super::fields`]).

use super::fields::{Dec, Enc};
use super::{MeshError, MeshOut, Msg};

const ACKED: u8 = 20;
const HANDOVER_TO: u8 = 21;
const MOVE: u8 = 22;
const MOVED: u8 = 23;
const LIST_PORTS: u8 = 24;
const PORTS_LISTED: u8 = 25;
const LIST_NODES: u8 = 26;
const NODES_LISTED: u8 = 27;
const NODE_PORTS: u8 = 28;
const NODE_PORTS_LISTED: u8 = 29;

impl<O: MeshOut + ?Sized> Enc<'_, O> {
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

impl<'a> Dec<'a> {
    fn opt_str(&mut self) -> Result<Option<&'a str>, MeshError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        })
    }
}

/// Appends the fields of a coordination record (its tag first).
pub(super) fn encode<O: MeshOut + ?Sized>(msg: &Msg<'_>, e: &mut Enc<'_, O>) {
    match msg {
        Msg::Acked {
            op,
            acknowledged,
            unacknowledged,
        } => {
            e.u8(ACKED);
            e.u64(*op);
            e.u64(*acknowledged);
            e.u64(*unacknowledged);
        }
        Msg::HandoverTo {
            op,
            from,
            to,
            ports,
        } => {
            e.u8(HANDOVER_TO);
            e.u64(*op);
            e.str(from);
            e.str(to);
            e.named(ports);
        }
        Msg::Move {
            op,
            from,
            to,
            to_id,
            to_address,
            ports,
        } => {
            e.u8(MOVE);
            e.u64(*op);
            e.str(from);
            e.node_ref(to);
            e.str(to_id);
            e.str(to_address);
            e.named(ports);
        }
        Msg::Moved {
            op,
            moved,
            not_owned,
            unknown,
            error,
        } => {
            e.u8(MOVED);
            e.u64(*op);
            e.u32(moved.len() as u32);
            for (pos, seq) in moved {
                e.u32(*pos);
                e.u64(*seq);
            }
            e.positions(not_owned);
            e.positions(unknown);
            e.opt_str(*error);
        }
        Msg::ListPorts {
            op,
            prefix,
            after,
            limit,
        }
        | Msg::ListNodes {
            op,
            prefix,
            after,
            limit,
        } => {
            e.u8(if matches!(msg, Msg::ListPorts { .. }) {
                LIST_PORTS
            } else {
                LIST_NODES
            });
            e.u64(*op);
            e.str(prefix);
            e.opt_str(*after);
            e.u32(*limit);
        }
        Msg::PortsListed { op, ports, full } => {
            e.u8(PORTS_LISTED);
            e.u64(*op);
            e.u32(ports.len() as u32);
            for (port, owner, address) in ports {
                e.str(port);
                e.str(owner);
                e.str(address);
            }
            e.u8(u8::from(*full));
        }
        Msg::NodesListed { op, nodes, full } => {
            e.u8(NODES_LISTED);
            e.u64(*op);
            e.u32(nodes.len() as u32);
            for (node, i) in nodes {
                e.str(node);
                e.home_info(i);
            }
            e.u8(u8::from(*full));
        }
        Msg::NodePorts {
            op,
            node,
            start,
            limit,
        } => {
            e.u8(NODE_PORTS);
            e.u64(*op);
            e.str(node);
            e.opt_str(*start);
            e.u32(*limit);
        }
        Msg::NodePortsListed {
            op,
            ports,
            next,
            restarted,
        } => {
            e.u8(NODE_PORTS_LISTED);
            e.u64(*op);
            e.u32(ports.len() as u32);
            for p in ports {
                e.str(p);
            }
            e.opt_str(*next);
            e.u8(u8::from(*restarted));
        }
        other => unreachable!("not a coordination record: {other:?}"),
    }
}

/// Reads the fields of the coordination record of tag `tag`.
pub(super) fn decode<'a>(tag: u8, d: &mut Dec<'a>) -> Result<Msg<'a>, MeshError> {
    Ok(match tag {
        ACKED => Msg::Acked {
            op: d.u64()?,
            acknowledged: d.u64()?,
            unacknowledged: d.u64()?,
        },
        HANDOVER_TO => Msg::HandoverTo {
            op: d.u64()?,
            from: d.str()?,
            to: d.str()?,
            ports: d.named()?,
        },
        MOVE => Msg::Move {
            op: d.u64()?,
            from: d.str()?,
            to: d.node_ref()?,
            to_id: d.str()?,
            to_address: d.str()?,
            ports: d.named()?,
        },
        MOVED => {
            let op = d.u64()?;
            let n = d.count()?;
            let moved = (0..n)
                .map(|_| Ok((d.u32()?, d.u64()?)))
                .collect::<Result<_, MeshError>>()?;
            Msg::Moved {
                op,
                moved,
                not_owned: d.positions()?,
                unknown: d.positions()?,
                error: d.opt_str()?,
            }
        }
        LIST_PORTS => Msg::ListPorts {
            op: d.u64()?,
            prefix: d.str()?,
            after: d.opt_str()?,
            limit: d.u32()?,
        },
        LIST_NODES => Msg::ListNodes {
            op: d.u64()?,
            prefix: d.str()?,
            after: d.opt_str()?,
            limit: d.u32()?,
        },
        PORTS_LISTED => {
            let op = d.u64()?;
            let n = d.count()?;
            let ports = (0..n)
                .map(|_| Ok((d.str()?, d.str()?, d.str()?)))
                .collect::<Result<_, MeshError>>()?;
            Msg::PortsListed {
                op,
                ports,
                full: d.u8()? != 0,
            }
        }
        NODES_LISTED => {
            let op = d.u64()?;
            let n = d.count()?;
            let nodes = (0..n)
                .map(|_| Ok((d.str()?, d.home_info()?)))
                .collect::<Result<_, MeshError>>()?;
            Msg::NodesListed {
                op,
                nodes,
                full: d.u8()? != 0,
            }
        }
        NODE_PORTS => Msg::NodePorts {
            op: d.u64()?,
            node: d.str()?,
            start: d.opt_str()?,
            limit: d.u32()?,
        },
        NODE_PORTS_LISTED => {
            let op = d.u64()?;
            let n = d.count()?;
            let ports = (0..n).map(|_| d.str()).collect::<Result<_, MeshError>>()?;
            Msg::NodePortsListed {
                op,
                ports,
                next: d.opt_str()?,
                restarted: d.u8()? != 0,
            }
        }
        other => return Err(MeshError::UnknownTag(other)),
    })
}
