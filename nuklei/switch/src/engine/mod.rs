//! The switch engine: what the switch nukleus drives, sans I/O, in the quinn-proto style.
//! Inputs are `handle_*` calls (a WaitMsg, a relet, a closed connection, the clock, an API
//! call under a token, a mesh record); outputs are `poll_*` calls (events for receiving
//! connections, completed calls, the next lease deadline, mesh bytes to send) and the push
//! queues the nukleus drains into frames.
//!
//! One trait, two engines: [`single::SingleEngine`] (all ports and nodes here, every call
//! completed at once; the degenerate cluster of one) and [`cluster::ClusterEngine`] (one
//! instance of several, calls that need other instances completed when their mesh replies
//! arrive). The nukleus is written once against [`SwitchEngine`].

use crate::api::{self, ApiError, ResponseBody};
use crate::auth::Grant;
use crate::cluster::Token;
use crate::mesh::Msg;
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::switch::{CloseReason, Metrics, Output, Session, SwitchError};
use crate::watch::WatchRequest;
use streams::LentFrame;

mod call;
pub mod cluster;
pub mod single;

pub use call::{response, Call, Shape};

/// What a node-less watcher asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatcherCall {
    /// Start a watch.
    Watch(WatchRequest),
    /// End watch `0`.
    Unwatch(u64),
}

/// A completed call, as [`SwitchEngine::poll_done`] hands it out.
#[derive(Debug)]
pub enum Completion {
    /// A REST call's reply body or error.
    Rest(Result<ResponseBody, ApiError>),
    /// A WebSocket request's reply message, serialized (id included).
    Ws(String),
    /// `/v1/metrics`: the counters of every instance, summed.
    Metrics {
        /// Switch counters.
        metrics: Metrics,
        /// Exchanges opened by the switch nuklei.
        requests: u64,
        /// Exchanges refused before reaching the switch (auth, routing).
        refused: u64,
    },
}

/// The switch as its nukleus drives it. Every call completes with exactly one
/// [`Completion`] under its token, at once or later; receiving connections learn of pushes
/// and closes through [`SwitchEngine::poll_event`].
pub trait SwitchEngine: Send {
    // ----- inputs -----------------------------------------------------------------------

    /// WaitMsg: `conn` becomes the receiving connection of `node`.
    fn handle_wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
    ) -> Result<Session, SwitchError>;

    /// A node-less watcher (`/v1/watch`) opens on `conn`: a receiving connection for watches
    /// only, homed here, with no ports and no lease, not listed among the nodes; it ends
    /// with [`SwitchEngine::handle_connection_closed`] or [`SwitchEngine::handle_close`].
    fn handle_open_watcher(&mut self, conn: ConnId) -> Session;

    /// A watch (`Some(request)`) or an unwatch (`None`, of watch `unwatch`) of the
    /// node-less watcher `watcher` (the index [`SwitchEngine::handle_open_watcher`] gave),
    /// completing under `token` as a REST reply, or as a WebSocket reply with request id
    /// `ws_id`.
    fn handle_watcher_call(
        &mut self,
        token: Token,
        watcher: NodeIdx,
        call: WatcherCall,
        ws_id: Option<u64>,
    );

    /// A heartbeat of `node`'s receiving connection; the new lease deadline.
    fn handle_relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError>;

    /// A connection closed; whether it was a receiving connection.
    fn handle_connection_closed(&mut self, conn: ConnId) -> bool;

    /// The caller closes receiving connection `conn` for `reason` (its token was revoked):
    /// the node goes offline now, and the engine answers with [`Output::Close`]. Whether it
    /// was a receiving connection.
    fn handle_close(&mut self, conn: ConnId, reason: CloseReason) -> bool;

    /// The clock reached `now`: expire leases; how many nodes went offline.
    fn handle_timeout(&mut self, now: u64) -> usize;

    /// A REST call (`route`, request `body`) under `token`, made with credentials that may
    /// act for whom `grant` says.
    fn handle_rest(
        &mut self,
        token: Token,
        route: &api::Route,
        body: &[u8],
        now: u64,
        grant: &dyn Grant,
    );

    /// A request message on `node`'s WebSocket under `token` (its credentials: `grant`).
    fn handle_ws(&mut self, token: Token, node: &str, text: &str, now: u64, grant: &dyn Grant);

    /// `/v1/metrics` under `token`; `requests` and `refused` are this nukleus's exchange
    /// counts.
    fn handle_metrics(&mut self, token: Token, requests: u64, refused: u64);

    /// Records from switch instance `from` (cluster only).
    fn handle_mesh(&mut self, _from: usize, _msg: Msg<'_>) {}

    /// This nukleus's exchange counts, for other instances' `/v1/metrics` (cluster only).
    fn handle_exchange_counts(&mut self, _requests: u64, _refused: u64) {}

    // ----- outputs ----------------------------------------------------------------------

    /// The next event for a receiving connection (pushes pending, close).
    fn poll_event(&mut self) -> Option<Output>;

    /// The next completed call.
    fn poll_done(&mut self) -> Option<(Token, Completion)>;

    /// The next lease deadline.
    fn poll_timeout(&self) -> Option<u64>;

    /// Bytes to send to switch instance `peer` (cluster only); the caller drains what it
    /// sent.
    fn poll_transmit(&mut self, _peer: usize) -> Option<&mut Vec<u8>> {
        None
    }

    /// Bytes waiting in every mesh outbox (lent frames included).
    fn transmit_bytes(&self) -> usize {
        0
    }

    /// Lends the engine a frame of the ring to switch instance `peer` to write the mesh records
    /// that follow into, where the peer reads them (cluster only): handed back if the engine
    /// takes none (no mesh, or records wait in its overflow and must go first).
    fn lend_frame(&mut self, _peer: usize, frame: LentFrame) -> Result<(), LentFrame> {
        Err(frame)
    }

    /// The frame lent for `peer` and the bytes written into it, to give back to its ring
    /// before the bytes of [`SwitchEngine::poll_transmit`] are sent; with `written_only`,
    /// only if something was written into it or it took no more (an untouched frame stays
    /// lent for the next polls).
    fn take_frame(&mut self, _peer: usize, _written_only: bool) -> Option<(LentFrame, usize)> {
        None
    }

    /// Whether the engine holds a frame lent for `peer`.
    fn holds_frame(&self, _peer: usize) -> bool {
        false
    }

    // ----- push queues and state --------------------------------------------------------

    /// Pushes queued for a node homed here.
    fn queued(&self, node: NodeIdx) -> usize;

    /// The oldest pushes of a node that fit in a frame of `max_bytes`, to copy out in place
    /// and then take off the queue with [`SwitchEngine::consume`].
    fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>>;

    /// Takes the batch last returned by [`SwitchEngine::batch`] off the node's queue.
    fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained;

    /// Drains a node's pushes as a JSON array into `out`.
    fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained;

    /// Counters of this instance.
    fn metrics(&self) -> Metrics;

    /// Lease duration (ms).
    fn lease_ms(&self) -> u64;
}

/// The completion of a call with WebSocket request id `ws_id` (`None`: REST).
pub(crate) fn completion(ws_id: Option<u64>, result: Result<ResponseBody, ApiError>) -> Completion {
    match ws_id {
        None => Completion::Rest(result),
        Some(id) => Completion::Ws(
            serde_json::to_string(&api::WsReply {
                id,
                body: result.unwrap_or_else(|e| ResponseBody::Error(e.body())),
            })
            .unwrap_or_default(),
        ),
    }
}
