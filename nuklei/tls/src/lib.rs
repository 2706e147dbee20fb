//! The tls nukleus: [`TlsNukleus`] between tcp and http, over a protocol core that is sans I/O.
//!
//! [`TlsSettings`] turns a listener's configuration into a shared `rustls::ServerConfig`;
//! [`TlsSession`] runs one server connection over byte slices — ciphertext from the tcp
//! nukleus in and out, plaintext to and from the next nukleus (http) — with bounded buffering
//! in both directions. Nothing here owns a socket or a stream.
//!
//! How a nukleus drives one connection on each poll (the buffers are the DATA payloads it
//! received and space it reserved in its outgoing streams, sized to the granted windows):
//!
//! ```
//! use nukleus_tls::TlsSession;
//!
//! #[derive(Default)]
//! struct Step {
//!     tcp_acked: usize,   // ciphertext consumed: acknowledge to tcp (WINDOW)
//!     http_acked: usize,  // plaintext accepted: acknowledge to http (WINDOW)
//!     to_http: usize,     // plaintext written into `to_http`: DATA to http
//!     to_tcp: usize,      // ciphertext written into `to_tcp`: DATA to tcp
//!     failed: bool,       // flush `to_tcp`, then END to tcp and ABORT to http
//!     peer_closed: bool,  // close_notify seen and all plaintext delivered: END to http
//! }
//!
//! fn pump(
//!     session: &mut TlsSession,
//!     from_tcp: &[u8],
//!     from_http: &[u8],
//!     to_http: &mut [u8],
//!     to_tcp: &mut [u8],
//! ) -> Step {
//!     let mut step = Step::default();
//!     match session.receive_ciphertext(from_tcp) {
//!         Ok(consumed) => step.tcp_acked = consumed,
//!         Err(_failure) => {
//!             // Already logged; the alert (if any) goes out before the close.
//!             step.to_tcp = session.write_ciphertext(to_tcp);
//!             step.failed = true;
//!             return step;
//!         }
//!     }
//!     step.to_http = session.read_plaintext(to_http);
//!     step.http_acked = session.send_plaintext(from_http);
//!     // Handshake messages, records and alerts; call again next poll while wants_write().
//!     step.to_tcp = session.write_ciphertext(to_tcp);
//!     step.peer_closed = session.peer_closed() && session.plaintext_available() == 0;
//!     step
//! }
//! ```
//!
//! On END from http: `close_notify()`, flush `write_ciphertext`, then END to tcp.

/// The BEGIN extension tls gives http; it lives in the http crate, which reads it, so that
/// http (and every application behind it) does not depend on rustls.
pub use nukleus_http::tls_begin_ex as begin_ex;
mod config;
mod engine;
mod identity;
mod nukleus;
mod record;
mod tls13;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::{ClientAuth, ConfigError, TlsSettings, TlsVersion};
pub use engine::{FailureCause, TlsFailure, TlsSession, DEFAULT_BUFFER_LIMIT};
pub use identity::{parse_peer_identity, CertificateParseError, PeerIdentity};
pub use nukleus::{TlsConfig, TlsListener, TlsNukleus, TlsNukleusError};
pub use rustls;
