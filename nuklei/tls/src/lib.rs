//! The tls nukleus: the protocol core, sans I/O.
//!
//! [`TlsSettings`] turns a listener's configuration into a shared `rustls::ServerConfig`;
//! [`TlsSession`] runs one server connection over byte slices — ciphertext from the tcp
//! nukleus in and out, plaintext to and from the next nukleus (http) — with bounded buffering
//! in both directions. Nothing here owns a socket or a stream.

mod config;
mod engine;
mod identity;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::{ClientAuth, ConfigError, TlsSettings, TlsVersion};
pub use engine::{FailureCause, TlsFailure, TlsSession, DEFAULT_BUFFER_LIMIT};
pub use identity::{parse_peer_identity, CertificateParseError, PeerIdentity};
pub use rustls;
