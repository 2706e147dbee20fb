//! What a [`super::Client`] hands its driver: the commands on the channel between them, and
//! the reply each call waits on. Apart from client.rs and client/coord.rs, which both send
//! them, so that neither needs the other's names.

use tokio::sync::oneshot;

use crate::batch::Items;
use crate::error::Error;
use crate::session::{Outcome, Waiter};
use crate::types::FencingToken;
use crate::wire::Op;

/// The ports the session holds (or watches), as the driver hands them out.
pub(super) type HeldSet = crate::names::NameSet;

/// Where a call's outcome goes.
pub(super) type Reply = oneshot::Sender<Result<Outcome, Error>>;

impl Waiter for Reply {
    fn complete(self, result: Result<Outcome, Error>) {
        let _ = self.send(result);
    }
}

/// What a coordination call asks of the session.
pub(super) enum CoordCommand {
    Raw(serde_json::Map<String, serde_json::Value>),
    Watch {
        kind: &'static str,
        key: String,
        prefix: bool,
    },
    Unwatch(u64),
    Handover(serde_json::Map<String, serde_json::Value>),
    RegisterIf(serde_json::Map<String, serde_json::Value>, Vec<String>),
}

/// A call or question from the application to the driver.
pub(super) enum Command {
    Call {
        op: Op,
        items: Items,
        subscribe: bool,
        exclusive: bool,
        reply: Reply,
    },
    Held(oneshot::Sender<(HeldSet, HeldSet)>),
    Fencing(String, oneshot::Sender<(Option<u64>, Option<FencingToken>)>),
    Close(oneshot::Sender<()>),
    /// A request outside the batches ([`crate::coord`]).
    Coord(CoordCommand, Reply),
    Session(oneshot::Sender<Option<u64>>),
}
