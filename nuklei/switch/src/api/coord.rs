//! The coordination calls of the API (issue 15): watches, listings, handover, acknowledged
//! delivery and sessions — their reply bodies, the requests a REST route carries in its path
//! and query, and running them on the switch of one instance.
//!
//! | method and path | request | reply |
//! |---|---|---|
//! | `POST /v1/nodes/{node}/watches` | `{"ports":"user:","prefix":true,"from":[17]}` | `{"watch":1,"cursor":[17]}` |
//! | `DELETE /v1/nodes/{node}/watches/{watch}` | | `{"unwatched":1}` |
//! | `GET /v1/ports?prefix=user:&after=user:9&limit=100` | | `{"ports":[{"port":…,"owner":…,"address":…}],"next":"user:99"}` |
//! | `GET /v1/nodes?prefix=&after=&limit=` | | `{"nodes":[{"node":…,"address":…,"ports":3}],"next":null}` |
//! | `GET /v1/nodes/{node}/ports?after=&limit=` | | `{"ports":["p"],"next":…,"restarted":false}` |
//! | `POST /v1/nodes/{node}/handover` | `{"to":"b","ports":["p"]}` | `{"moved":["p"],"not_owned":[],"unknown":[]}` |
//! | `POST /v1/nodes/{node}/ack` | `{"upto":17}` | `{"acknowledged":3}` |
//!
//! Node-scoped calls may name the session they are for (`"session": N` in the body; WaitMsg's
//! first push gives it): a call for a session that was replaced fails with 409
//! `session_replaced` instead of acting for the new one.

use std::borrow::Cow;

use super::body::*;
use super::error::ApiError;
use super::response::{announced, reg_port_response};
use super::route::Route;
use crate::listing::PageRequest;
use crate::request::{self, Page, Parsed, Request};
use crate::switch::HandoverReply;
use crate::switch::WatchReply;
use crate::switch::{NodeListing, NodePortsListing, PortListing};
use crate::switch::{Output, Switch};
use crate::watch::WatchRequest;

fn page(p: &PageRequest) -> Page<'_> {
    Page {
        prefix: Cow::Borrowed(p.prefix.as_str()),
        after: p.after.as_deref().map(Cow::Borrowed),
        limit: p.limit,
    }
}

/// The request a REST route carries in its path and query (listings, unwatch), if it does.
pub fn route_request(route: &Route) -> Option<Parsed<'_>> {
    let request = match route {
        Route::ListPorts(p) => Request::ListPorts(page(p)),
        Route::ListNodes(p) => Request::ListNodes(page(p)),
        Route::NodePorts { node, page: p } => Request::NodePorts {
            node: Cow::Borrowed(node),
            page: page(p),
        },
        Route::Unwatch { watch, .. } => Request::Unwatch { watch: *watch },
        _ => return None,
    };
    Some(Parsed {
        request,
        session: None,
    })
}

/// The page of a parsed listing request.
pub fn page_request(page: &Page<'_>) -> PageRequest {
    PageRequest {
        prefix: page.prefix.to_string(),
        after: page.after.as_deref().map(str::to_string),
        limit: page.limit,
    }
}

/// The watch of a parsed watch request.
pub fn watch_request(spec: &request::WatchSpec<'_>) -> WatchRequest {
    WatchRequest {
        id: spec.watch,
        kind: spec.kind,
        key: spec.key.to_string(),
        prefix: spec.prefix,
        from: spec.from.clone(),
    }
}

/// The watch reply body.
pub fn watch_response(reply: WatchReply) -> ResponseBody {
    ResponseBody::Watch(WatchResponse {
        watch: reply.id,
        cursor: reply.cursor,
    })
}

/// The ports page body.
pub fn list_ports_response(listing: PortListing) -> ResponseBody {
    ResponseBody::ListPorts(ListPortsResponse {
        ports: listing
            .ports
            .into_iter()
            .map(|p| ListedPortBody {
                port: p.port,
                owner: p.owner.to_string(),
                address: announced(&p.address),
            })
            .collect(),
        next: listing.next,
    })
}

/// The nodes page body.
pub fn list_nodes_response(listing: NodeListing) -> ResponseBody {
    ResponseBody::ListNodes(ListNodesResponse {
        nodes: listing
            .nodes
            .into_iter()
            .map(|n| ListedNodeBody {
                node: n.node.to_string(),
                address: announced(&n.address),
                ports: n.ports,
            })
            .collect(),
        next: listing.next,
    })
}

/// The node's-ports page body.
pub fn node_ports_response(listing: NodePortsListing) -> ResponseBody {
    ResponseBody::NodePorts(NodePortsResponse {
        ports: listing.ports,
        next: listing.next,
        restarted: listing.restarted,
    })
}

/// The handover reply body for the request's `ports`.
pub fn handover_response<S: AsRef<str>>(ports: &[S], reply: HandoverReply) -> ResponseBody {
    let take = |v: Vec<usize>| -> Vec<String> {
        v.into_iter()
            .map(|i| ports[i].as_ref().to_string())
            .collect()
    };
    ResponseBody::Handover(HandoverResponse {
        moved: take(reply.moved),
        not_owned: take(reply.not_owned),
        unknown: take(reply.unknown),
    })
}

/// Runs a coordination request on the switch of one instance; `None` if `req` is not one.
pub fn execute(
    switch: &mut Switch,
    node: &str,
    req: &Request<'_>,
    out: &mut Vec<Output>,
) -> Option<Result<ResponseBody, ApiError>> {
    let result = match req {
        Request::Watch(spec) => switch
            .watch(node, watch_request(spec), out)
            .map(watch_response),
        Request::Unwatch { watch } => switch
            .unwatch(node, *watch)
            .map(|()| ResponseBody::Unwatch(UnwatchResponse { unwatched: *watch })),
        Request::ListPorts(page) => switch
            .list_ports(&page_request(page))
            .map(list_ports_response),
        Request::ListNodes(page) => switch
            .list_nodes(&page_request(page))
            .map(list_nodes_response),
        Request::NodePorts { node: of, page } => switch
            .node_ports(of, page.after.as_deref(), page.limit)
            .map(node_ports_response),
        Request::Handover { to, ports } => switch
            .handover(node, to, ports, out)
            .map(|r| handover_response(ports, r)),
        Request::Ack { upto } => switch
            .ack(node, *upto)
            .map(|acknowledged| ResponseBody::Ack(AckResponse { acknowledged })),
        Request::RegPort {
            ports,
            subscribe,
            if_owner: Some(expected),
        } => switch
            .reg_port_if(node, ports, expected.as_deref(), *subscribe, out)
            .map(|r| reg_port_response(ports, r)),
        _ => return None,
    };
    Some(result.map_err(ApiError::from))
}
