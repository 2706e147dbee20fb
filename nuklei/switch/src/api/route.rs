//! REST routes: a method and path resolved to a [`Route`].

use super::error::ApiError;
use crate::listing::PageRequest;
use crate::request::Op;

/// The API version prefix.
pub const VERSION: &str = "v1";

/// A resolved REST route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/nodes/{node}/ports`.
    RegPort {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `DELETE /v1/nodes/{node}/ports`.
    UnRegPort {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `POST /v1/nodes/{node}/relet`.
    Relet {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `POST /v1/messages`.
    SendMsg,
    /// `POST /v1/ports/query`.
    QueryPort,
    /// `POST /v1/nodes/query`.
    QueryNode,
    /// `POST /v1/nodes/{node}/watches`.
    Watch {
        /// Node id.
        node: String,
    },
    /// `DELETE /v1/nodes/{node}/watches/{watch}`.
    Unwatch {
        /// Node id.
        node: String,
        /// The watch.
        watch: u64,
    },
    /// `GET /v1/ports`.
    ListPorts(crate::listing::PageRequest),
    /// `GET /v1/nodes`.
    ListNodes(crate::listing::PageRequest),
    /// `GET /v1/nodes/{node}/ports`.
    NodePorts {
        /// Whose ports.
        node: String,
        /// The page (`after`, `limit`).
        page: crate::listing::PageRequest,
    },
    /// `POST /v1/nodes/{node}/handover`.
    Handover {
        /// The giving node.
        node: String,
    },
    /// `POST /v1/nodes/{node}/ack`.
    Ack {
        /// Node id.
        node: String,
    },
}

impl Route {
    /// The operation of this route.
    pub fn op(&self) -> Op {
        match self {
            Route::RegPort { .. } => Op::RegPort,
            Route::UnRegPort { .. } => Op::UnRegPort,
            Route::Relet { .. } => Op::Relet,
            Route::SendMsg => Op::SendMsg,
            Route::QueryPort => Op::QueryPort,
            Route::QueryNode => Op::QueryNode,
            Route::Watch { .. } => Op::Watch,
            Route::Unwatch { .. } => Op::Unwatch,
            Route::ListPorts(_) => Op::ListPorts,
            Route::ListNodes(_) => Op::ListNodes,
            Route::NodePorts { .. } => Op::NodePorts,
            Route::Handover { .. } => Op::Handover,
            Route::Ack { .. } => Op::Ack,
        }
    }

    /// The node the request acts for, if any (for authorization).
    pub fn node(&self) -> Option<&str> {
        match self {
            Route::RegPort { node }
            | Route::UnRegPort { node }
            | Route::Relet { node }
            | Route::Watch { node }
            | Route::Unwatch { node, .. }
            | Route::Handover { node }
            | Route::Ack { node } => Some(node),
            _ => None,
        }
    }
}

/// Resolve `method` and `path` (query string allowed, ignored) to a route.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let path_only = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path_only.trim_matches('/').split('/').collect();
    let not_allowed = || ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path_only.to_string(),
    };
    let post = |r: Route| {
        if method == "POST" {
            Ok(r)
        } else {
            Err(not_allowed())
        }
    };
    let query = path
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q));
    let get = |r: Route| {
        if method == "GET" {
            Ok(r)
        } else {
            Err(not_allowed())
        }
    };
    match segments.as_slice() {
        [v, "messages"] if *v == VERSION => post(Route::SendMsg),
        [v, "ports", "query"] if *v == VERSION => post(Route::QueryPort),
        [v, "nodes", "query"] if *v == VERSION => post(Route::QueryNode),
        [v, "ports"] if *v == VERSION => get(Route::ListPorts(page_query(query)?)),
        [v, "nodes"] if *v == VERSION => get(Route::ListNodes(page_query(query)?)),
        [v, "nodes", node, "ports"] if *v == VERSION => {
            let node = percent_decode(node)?;
            match method {
                "POST" => Ok(Route::RegPort { node }),
                "DELETE" => Ok(Route::UnRegPort { node }),
                "GET" => Ok(Route::NodePorts {
                    node,
                    page: page_query(query)?,
                }),
                _ => Err(not_allowed()),
            }
        }
        [v, "nodes", node, "relet"] if *v == VERSION => post(Route::Relet {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "watches"] if *v == VERSION => post(Route::Watch {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "watches", watch] if *v == VERSION => {
            let watch = watch
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("watch id {watch:?} is not a number")))?;
            let node = percent_decode(node)?;
            if method == "DELETE" {
                Ok(Route::Unwatch { node, watch })
            } else {
                Err(not_allowed())
            }
        }
        [v, "nodes", node, "handover"] if *v == VERSION => post(Route::Handover {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "ack"] if *v == VERSION => post(Route::Ack {
            node: percent_decode(node)?,
        }),
        _ => Err(ApiError::NotFound(path_only.to_string())),
    }
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::BadRequest(format!("bad percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::BadRequest(format!("node id {s:?} is not UTF-8 after decoding")))
}

/// The page of a listing route's query string (`prefix`, `after`, `limit`).
pub fn page_query(query: Option<&str>) -> Result<PageRequest, ApiError> {
    let get = |name| crate::auth::query_param(query, name);
    let limit = match get("limit") {
        None => None,
        Some(l) => Some(l.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("limit {l:?} is not a number of entries"))
        })?),
    };
    Ok(PageRequest {
        prefix: get("prefix").unwrap_or_default(),
        after: get("after").filter(|a| !a.is_empty()),
        limit,
    })
}
