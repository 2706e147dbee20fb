//! Rust client of the reaktor port switch (BYPSS).
//!
//! ```no_run
//! # async fn demo() -> Result<(), reaktor_client::Error> {
//! use reaktor_client::{connect, Config, Event};
//!
//! let (client, mut events) = connect(
//!     Config::new(["ws://127.0.0.1:8080"], "chat-1")
//!         .token("demo-chat")
//!         .address("chat-1.local:9000"),
//! )
//! .await?;
//! let reg = client.register_or_subscribe(["user:alice"]).await?;
//! for f in &reg.failed {
//!     println!("{} is on {} at {:?}", f.port, f.owner, f.address);
//! }
//! client.send("user:bob", "hello").await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Push { port, body } => println!("{port}: {body}"),
//!         Event::Released { port, .. } => { client.register([port]).await?; }
//!         Event::Reconnected { lost, .. } => println!("lost to other nodes: {lost:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # What the client does
//!
//! * Keeps **one receiving connection** (WaitMsg over WebSocket) to the first member of its
//!   URL list that accepts it, following `307` redirects (with the token) and waiting out
//!   `503 Retry-After`.
//! * **Renews the lease** by itself: a `relet` every quarter lease, on a fixed schedule; a
//!   renewal unanswered for half a lease drops the connection.
//! * **Reconnects** with exponential backoff and equal jitter, then **re-registers** the ports
//!   it held, in batches, before any queued call goes out, and reports the outcome as
//!   [`Event::Reconnected`]: `lost` names the ports another node took meanwhile, with their
//!   owner. A port is held ([`Client::held`]) exactly when the switch gave it to this node and
//!   the client has not reported it lost: the application is never left believing it owns a
//!   port the switch gave away without an event saying so.
//! * **Batches**: calls that reach the driver task while it is busy go out as one request per
//!   run of calls of the same kind (order kept), split to stay within [`Options`]; a merged
//!   request refused for one call's fault is retried one call per request, so only that call
//!   fails.
//! * Delivers pushes, release notifications and connection events through [`Events`], a
//!   **bounded buffer** (see below): one [`Event`] at a time ([`Events::next`]), or a batch
//!   of pushes at a time read in place without an event or a reference count per push
//!   ([`Events::next_batch`], [`Pushes::iter`]) for applications that take many.
//! * Reports failures as [`Error`] variants that say what went wrong and what to do.
//!
//! # Back-pressure
//!
//! At most `Options::max_buffered_events` pushes wait for the application (plus the one batch
//! [`Events::next`] is handing out). When the buffer is full the client stops reading the
//! connection: the switch's queue for the node grows, and past its `max_queued_bytes` the
//! switch disconnects the node as a slow consumer (close code 4002). If the buffer is still
//! full after `Options::max_stall`, the client drops the connection itself with
//! [`Error::SlowConsumer`]. Either way it reconnects and restores its ports, and the
//! application gets [`Event::Disconnected`]: the pushes queued at the switch at that moment
//! are lost, and said to be. Nothing is dropped silently and memory stays bounded.
//!
//! # Why async on tokio
//!
//! A node is a server: it already runs an async runtime for its own clients, and the
//! client must keep renewing the lease and reading pushes while the application does other
//! work. One tokio task per client owns the socket and the protocol state; the
//! [`Client`] handle only sends commands to it, so it can be cloned into every task of the
//! application and calls from many tasks merge into batches naturally. A blocking client
//! would need its own threads for the same (a reader, a renewer) and could not batch calls
//! from tasks it does not see. The footprint is tokio (`rt`, `net`, `time`, `sync`),
//! tokio-tungstenite (no TLS), futures-util's sink/stream traits and serde_json. `wss://` is
//! not built in yet.
//!
//! The protocol logic is sans-I/O ([`session`], [`batch`], [`wire`]) and tested without
//! sockets; [`connect`](fn@connect) and the driver only move bytes.
//!
//! # A cluster
//!
//! Give the client every member's URL. A member that is not the master redirects it (307),
//! one in an election says when to retry (503 with `retry_after_ms`), a master that loses its
//! lease closes the connection (4003, [`Error::MasterLost`]); the client reconnects to the
//! master and registers its ports again. It tracks the master's epoch ([`Client::epoch`])
//! and each held port's fencing token ([`Client::fencing_token`], [`FencingToken`]), which
//! a failover renews ([`Event::Reconnected`] says when: `epoch != previous_epoch`).
//!
//! # Coordination
//!
//! A node's [`Client`] also watches ports and nodes (`watch_ports`, `watch_nodes`; the events
//! arrive as [`Event`]s and resume from the last sequence after a reconnect), lists ports and
//! nodes page by page, hands ports over to another node and registers only if the current
//! owner is a given one (`handover`, `register_if`), and tells its session id (`session`).
//! A program that watches without being a node uses [`watch`](fn@watch): a [`Watcher`] on
//! the switch's node-less watch connection, with the token's `watch_ports` / `watch_nodes`
//! grants. The result types and [`Event`] are `#[non_exhaustive]` so they can grow without
//! breaking callers.

#![warn(missing_docs)]

pub mod batch;
mod client;
pub mod connect;
mod coord;
mod error;
pub mod names;
pub mod pushes;
pub mod session;
mod session_coord;
mod shared_str;
mod types;
pub mod watcher;
pub mod wire;

pub use batch::Limits;
pub use client::{backoff_delay, connect, Batch, Client, Config, Events, Options};
pub use error::Error;
pub use pushes::{PushRef, Pushes};
pub use shared_str::{SharedStr, INLINE_MAX};
pub use types::{
    Event, FailedPort, FencingToken, Handover, Message, NodeInfo, Page, PortOwner, Registration,
    SendReport, Unregistration, WatchEvent,
};
pub use watcher::{watch, WatchSpec, Watcher, WatcherOptions};
