//! One TLS server connection as a sans-I/O byte pump.
//!
//! The session owns no socket and no stream: the nukleus hands it ciphertext from the tcp
//! side's DATA frames ([`TlsSession::receive_ciphertext`]) and plaintext from the application
//! side ([`TlsSession::send_plaintext`]), and pulls the results into buffers it owns
//! ([`TlsSession::read_plaintext`], [`TlsSession::write_ciphertext`]) — typically space reserved
//! in the outgoing stream's ring buffer, sized to the window it was granted.
//!
//! Memory per session is bounded in both directions:
//! * outbound, `ServerConnection::set_buffer_limit(limit)` caps plaintext queued during the
//!   handshake and ciphertext not yet taken by `write_ciphertext`; `send_plaintext` then accepts
//!   less (or 0), which is the caller's cue to stop acknowledging its input window;
//! * inbound, `receive_ciphertext` stops consuming once `limit` bytes of decrypted plaintext wait
//!   to be read (rustls also stops at its own 16 KiB), and returns how much it consumed, so the
//!   caller keeps the rest and does not widen the tcp window. At most one further TLS record
//!   (~16.7 KiB) can be in flight beyond the limit.
//!
//! Two record layers sit behind this API:
//! * TLS 1.3, when the listener's config allows it (`enable_secret_extraction`, set by
//!   [`crate::TlsSettings`]) and the client offers a TLS 1.3 suite: rustls'
//!   `UnbufferedServerConnection` does the handshake, then [`crate::tls13`] protects the
//!   records itself — opened in place in its input buffer, sealed in place in the buffer
//!   given to [`TlsSession::write_ciphertext`] (the claimed frame of tcp's ring), no `Vec`
//!   per record. Should rustls still choose TLS 1.2, the ClientHello is replayed into a
//!   buffered `ServerConnection` before anything was sent.
//! * TLS 1.2 (and configs without secret extraction): rustls' buffered `ServerConnection`,
//!   which allocates one `Vec` per record it queues.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::{Accepted, Acceptor, UnbufferedServerConnection};
use rustls::{CipherSuite, ServerConfig, ServerConnection};
use rustls_pki_types::CertificateDer;

use crate::config::TlsVersion;
use crate::identity::{parse_peer_identity, PeerIdentity};
use crate::tls13::Tls13;

/// Default per-direction buffer limit: four full TLS records.
pub const DEFAULT_BUFFER_LIMIT: usize = 64 * 1024;

/// A plaintext (pre-encryption) fatal `unrecognized_name` alert record: content type 21
/// (alert), legacy record version TLS 1.2, length 2, level fatal (2), description 112.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Why a session failed. The session is dead afterwards: flush [`TlsSession::write_ciphertext`]
/// if `alert_queued` (so the peer learns why), then end/abort both streams.
#[derive(Clone, Debug, thiserror::Error)]
#[error("TLS {} failed: {cause}", if *.during_handshake { "handshake" } else { "connection" })]
pub struct TlsFailure {
    pub cause: FailureCause,
    /// A fatal alert waits in the session's output for [`TlsSession::write_ciphertext`].
    pub alert_queued: bool,
    /// The failure happened before the handshake completed.
    pub during_handshake: bool,
}

/// What went wrong in a [`TlsFailure`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FailureCause {
    /// The peer broke the protocol or was refused by rustls (bad bytes, untrusted or expired
    /// client certificate, no common version or ALPN protocol, an alert from the peer, ...).
    #[error("{0}")]
    Rustls(rustls::Error),
    /// The client asked (SNI) for a host this listener is not configured to serve.
    #[error("client asked for server name {0:?}, which is not in this listener's server_names")]
    UnknownServerName(String),
    /// rustls could not take the input at all (e.g. a handshake message over its 64 KiB cap).
    #[error("unreadable TLS input: {0}")]
    Input(String),
}

impl FailureCause {
    /// The rustls error, when rustls raised it.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        match self {
            FailureCause::Rustls(e) => Some(e),
            _ => None,
        }
    }

    /// A short operator-facing explanation for the log line.
    fn hint(&self, before_client_hello: bool) -> &'static str {
        use rustls::Error as E;
        match self {
            FailureCause::Rustls(E::InvalidMessage(_)) if before_client_hello => {
                "the peer did not open with a valid TLS ClientHello: plaintext or another protocol on a TLS port?"
            }
            FailureCause::Rustls(E::InvalidCertificate(_)) => {
                "client certificate refused: it must chain to client_ca_path and be within its validity period"
            }
            FailureCause::Rustls(E::NoCertificatesPresented) => {
                "client_auth = required but the client sent no certificate"
            }
            FailureCause::Rustls(E::NoApplicationProtocol) => {
                "the client offered none of the configured ALPN protocols"
            }
            FailureCause::Rustls(E::PeerIncompatible(_)) => {
                "no TLS version, cipher suite or signature scheme in common with the client"
            }
            FailureCause::Rustls(E::AlertReceived(_)) => {
                "the client aborted with an alert: often it does not trust the server certificate"
            }
            FailureCause::UnknownServerName(_) => {
                "add the name to server_names, or leave server_names empty to accept any"
            }
            _ => "the peer broke the TLS protocol",
        }
    }
}

enum Phase {
    /// Collecting the ClientHello, before any server state exists.
    Accepting(Acceptor),
    /// Handshaking or established, with rustls' own records (TLS 1.2).
    Connected(ServerConnection),
    /// TLS 1.3: rustls' handshake, then records protected by [`Tls13`].
    Tls13(Box<Tls13>),
    /// Refused during or right after the ClientHello; only an alert may remain to send.
    Refused,
}

/// The server side of one TLS connection, driven by byte slices. See the module docs.
pub struct TlsSession {
    config: Arc<ServerConfig>,
    buffer_limit: usize,
    phase: Phase,
    /// Alert bytes for refusals that happen before a `ServerConnection` exists.
    pending_alert: Vec<u8>,
    failure: Option<TlsFailure>,
    sni: Option<String>,
    /// Decrypted plaintext waiting for `read_plaintext`.
    inbound_plaintext: usize,
    peer_closed: bool,
    sent_close_notify: bool,
    /// Whether completion of the handshake has been seen (identity extracted once, then).
    established: bool,
    peer_identity: Option<PeerIdentity>,
    /// The client's address, for log lines.
    remote: streams::Remote,
    /// What the Acceptor read, replayed into the connection that takes over from it.
    hello: Vec<u8>,
}

impl TlsSession {
    /// A session for a newly accepted connection. `buffer_limit` bounds buffered bytes in each
    /// direction (see the module docs); [`DEFAULT_BUFFER_LIMIT`] suits most listeners, and it is
    /// raised to one full record (16 KiB) if smaller, as rustls cannot work with less.
    pub fn new(config: Arc<ServerConfig>, buffer_limit: usize) -> Self {
        TlsSession {
            config,
            buffer_limit: buffer_limit.max(16 * 1024),
            phase: Phase::Accepting(Acceptor::default()),
            pending_alert: Vec::new(),
            failure: None,
            sni: None,
            inbound_plaintext: 0,
            peer_closed: false,
            sent_close_notify: false,
            established: false,
            peer_identity: None,
            remote: streams::Remote(None),
            hello: Vec::new(),
        }
    }

    /// Names the client in the session's log lines.
    pub fn with_remote(mut self, remote: Option<std::net::SocketAddr>) -> Self {
        self.remote = streams::Remote(remote);
        self
    }

    /// Feeds ciphertext received from the peer; returns how many bytes were consumed.
    ///
    /// Fewer than `input.len()` means the inbound buffer is full: read plaintext, then offer the
    /// rest again (and meanwhile do not widen the peer's window). Bytes after the peer's
    /// `close_notify` are discarded (counted as consumed). On `Err` the session is dead: flush
    /// [`write_ciphertext`](Self::write_ciphertext) to send the alert, then close; the same error
    /// is returned by every later call.
    pub fn receive_ciphertext(&mut self, input: &[u8]) -> Result<usize, TlsFailure> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let mut consumed = 0;
        while consumed < input.len() {
            let mut rest = &input[consumed..];
            match &mut self.phase {
                Phase::Accepting(acceptor) => {
                    let n = match acceptor.read_tls(&mut rest) {
                        Ok(n) => n,
                        Err(e) => return Err(self.fail(FailureCause::Input(e.to_string()))),
                    };
                    if self.config.enable_secret_extraction {
                        self.hello.extend_from_slice(&input[consumed..consumed + n]);
                    }
                    consumed += n;
                    match acceptor.accept() {
                        Ok(Some(accepted)) => self.accept(accepted)?,
                        Ok(None) if n == 0 => break,
                        Ok(None) => {}
                        Err((error, mut alert)) => {
                            // Writing into a Vec cannot fail.
                            let _ = alert.write_all(&mut self.pending_alert);
                            let failure = self.fail(FailureCause::Rustls(error));
                            self.phase = Phase::Refused;
                            return Err(failure);
                        }
                    }
                }
                Phase::Connected(conn) => {
                    if self.peer_closed {
                        consumed = input.len();
                        break;
                    }
                    if self.inbound_plaintext >= self.buffer_limit {
                        break;
                    }
                    match conn.read_tls(&mut rest) {
                        Ok(n) => consumed += n,
                        // rustls' own received-plaintext cap: backpressure, not failure.
                        Err(e) if e.kind() == io::ErrorKind::Other => break,
                        Err(e) => return Err(self.fail(FailureCause::Input(e.to_string()))),
                    }
                    self.process()?;
                }
                Phase::Tls13(tls) => {
                    let result = tls.receive(rest);
                    match result {
                        Ok(n) => {
                            consumed += n;
                            self.note_established();
                            if n == 0 {
                                break;
                            }
                        }
                        Err(e) => return Err(self.fail(FailureCause::Rustls(e))),
                    }
                }
                Phase::Refused => break,
            }
        }
        Ok(consumed)
    }

    /// Copies decrypted plaintext into `out`; returns the number of bytes written (0 when none
    /// is waiting, after failure, or after the peer's close_notify once all data was read).
    pub fn read_plaintext(&mut self, out: &mut [u8]) -> usize {
        if self.failure.is_some() || out.is_empty() {
            return 0;
        }
        let conn = match &mut self.phase {
            Phase::Connected(conn) => conn,
            Phase::Tls13(tls) => return tls.read(out),
            _ => return 0,
        };
        match conn.reader().read(out) {
            Ok(n) => {
                self.inbound_plaintext = self.inbound_plaintext.saturating_sub(n);
                n
            }
            // WouldBlock: nothing buffered yet.
            Err(_) => 0,
        }
    }

    /// Decrypted plaintext waiting for [`read_plaintext`](Self::read_plaintext).
    pub fn plaintext_available(&self) -> usize {
        match &self.phase {
            Phase::Tls13(tls) if self.failure.is_none() => tls.available(),
            _ => self.inbound_plaintext,
        }
    }

    /// Queues application data for encryption; returns how many bytes were accepted (possibly
    /// fewer than `data.len()`, or 0, when the outbound buffer is full — drain
    /// [`write_ciphertext`](Self::write_ciphertext) and offer the rest again). Data sent while
    /// the handshake is still running is encrypted once it completes. Accepts nothing before the
    /// ClientHello was processed, after a failure, or after [`close_notify`](Self::close_notify).
    pub fn send_plaintext(&mut self, data: &[u8]) -> usize {
        if self.failure.is_some() || self.sent_close_notify {
            return 0;
        }
        match &mut self.phase {
            Phase::Connected(conn) => conn.writer().write(data).unwrap_or(0),
            Phase::Tls13(tls) => tls.send(data),
            _ => 0,
        }
    }

    /// Moves queued ciphertext (handshake messages, records, alerts) into `out`; returns the
    /// number of bytes written. Call until it returns 0 or [`wants_write`](Self::wants_write) is
    /// false; a partly consumed record stays queued and continues in the next call.
    pub fn write_ciphertext(&mut self, out: &mut [u8]) -> usize {
        let mut written = 0;
        if !self.pending_alert.is_empty() {
            let n = self.pending_alert.len().min(out.len());
            out[..n].copy_from_slice(&self.pending_alert[..n]);
            self.pending_alert.drain(..n);
            written = n;
        }
        match &mut self.phase {
            Phase::Connected(conn) => {
                while written < out.len() {
                    let mut rest = &mut out[written..];
                    match conn.write_tls(&mut rest) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => written += n,
                    }
                }
            }
            Phase::Tls13(tls) => written += tls.write(&mut out[written..]),
            _ => {}
        }
        written
    }

    /// Appends all queued ciphertext to `out`; returns the number of bytes appended.
    pub fn write_ciphertext_to_vec(&mut self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.append(&mut self.pending_alert);
        match &mut self.phase {
            Phase::Connected(conn) => while matches!(conn.write_tls(out), Ok(n) if n > 0) {},
            Phase::Tls13(tls) => loop {
                let at = out.len();
                out.resize(at + 64 * 1024, 0);
                let n = tls.write(&mut out[at..]);
                out.truncate(at + n);
                if n == 0 {
                    break;
                }
            },
            _ => {}
        }
        out.len() - start
    }

    /// Whether ciphertext is waiting for [`write_ciphertext`](Self::write_ciphertext).
    pub fn wants_write(&self) -> bool {
        !self.pending_alert.is_empty()
            || match &self.phase {
                Phase::Connected(conn) => conn.wants_write(),
                Phase::Tls13(tls) => tls.wants_write(),
                _ => false,
            }
    }

    /// True until the handshake completes; false once it did, or after a failure.
    pub fn is_handshaking(&self) -> bool {
        if self.failure.is_some() {
            return false;
        }
        match &self.phase {
            Phase::Accepting(_) => true,
            Phase::Connected(conn) => conn.is_handshaking(),
            Phase::Tls13(tls) => tls.is_handshaking(),
            Phase::Refused => false,
        }
    }

    /// The failure that ended this session, if any.
    pub fn failure(&self) -> Option<&TlsFailure> {
        self.failure.as_ref()
    }

    /// The peer sent close_notify: no more plaintext will arrive after what is buffered.
    pub fn peer_closed(&self) -> bool {
        match &self.phase {
            Phase::Tls13(tls) => tls.peer_closed(),
            _ => self.peer_closed,
        }
    }

    /// The negotiated ALPN protocol (e.g. `b"http/1.1"`), once the ClientHello was processed.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.phase {
            Phase::Connected(conn) => conn.alpn_protocol(),
            Phase::Tls13(tls) => tls.alpn_protocol(),
            _ => None,
        }
    }

    /// The server name the client asked for (SNI), lower-cased, once its ClientHello arrived.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The negotiated protocol version, once the ClientHello was processed.
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        match &self.phase {
            Phase::Connected(conn) => match conn.protocol_version()? {
                rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
                rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
                _ => None,
            },
            Phase::Tls13(_) => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// The verified client certificate chain (end entity first), after the handshake.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.phase {
            Phase::Connected(conn) if self.established => conn.peer_certificates(),
            Phase::Tls13(tls) if self.established => tls.peer_certificates(),
            _ => None,
        }
    }

    /// Who the client is, from its verified certificate; `None` without mTLS, for an anonymous
    /// client under `client_auth = optional`, or before the handshake completed.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer_identity.as_ref()
    }

    /// Queues a close_notify alert (flush it with [`write_ciphertext`](Self::write_ciphertext)).
    /// Plaintext already accepted is sent before it; nothing is accepted after it.
    pub fn close_notify(&mut self) {
        if !self.sent_close_notify && self.failure.is_none() {
            match &mut self.phase {
                Phase::Connected(conn) => conn.send_close_notify(),
                Phase::Tls13(tls) => tls.close_notify(),
                _ => {}
            }
        }
        self.sent_close_notify = true;
    }

    fn accept(&mut self, accepted: Accepted) -> Result<(), TlsFailure> {
        let hello = accepted.client_hello();
        self.sni = hello.server_name().map(str::to_owned);
        let offers_tls13 = hello.cipher_suites().iter().any(|suite| {
            matches!(
                suite,
                CipherSuite::TLS13_AES_128_GCM_SHA256
                    | CipherSuite::TLS13_AES_256_GCM_SHA384
                    | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            )
        });
        // Ask the listener's resolver first: rustls answers a refusal from inside the
        // handshake with access_denied, while RFC 6066 wants unrecognized_name.
        if let Some(sni) = &self.sni {
            if self.config.cert_resolver.resolve(hello).is_none() {
                let name = sni.clone();
                self.pending_alert
                    .extend_from_slice(&UNRECOGNIZED_NAME_ALERT);
                self.phase = Phase::Refused;
                return Err(self.fail(FailureCause::UnknownServerName(name)));
            }
        }
        let hello = std::mem::take(&mut self.hello);
        if self.config.enable_secret_extraction && offers_tls13 {
            drop(accepted);
            return self.take_over(&hello);
        }
        match accepted.into_connection(self.config.clone()) {
            Ok(mut conn) => {
                conn.set_buffer_limit(Some(self.buffer_limit));
                self.phase = Phase::Connected(conn);
                // Bytes the client sent right behind its ClientHello are already buffered.
                self.process()
            }
            Err((error, mut alert)) => {
                let _ = alert.write_all(&mut self.pending_alert);
                self.phase = Phase::Refused;
                Err(self.fail(FailureCause::Rustls(error)))
            }
        }
    }

    /// Starts rustls' unbuffered handshake over the ClientHello, for our own TLS 1.3 records;
    /// if rustls picks TLS 1.2 after all, replays the ClientHello into a buffered connection
    /// (nothing was sent yet).
    fn take_over(&mut self, hello: &[u8]) -> Result<(), TlsFailure> {
        let conn = match UnbufferedServerConnection::new(self.config.clone()) {
            Ok(conn) => conn,
            Err(e) => {
                self.phase = Phase::Refused;
                return Err(self.fail(FailureCause::Rustls(e)));
            }
        };
        let mut tls = Box::new(Tls13::new(conn, self.buffer_limit, hello));
        let started = tls.start();
        if started.is_ok() && tls.negotiated_tls12() {
            let mut conn = match ServerConnection::new(self.config.clone()) {
                Ok(conn) => conn,
                Err(e) => {
                    self.phase = Phase::Refused;
                    return Err(self.fail(FailureCause::Rustls(e)));
                }
            };
            conn.set_buffer_limit(Some(self.buffer_limit));
            let mut rest = hello;
            while !rest.is_empty() {
                match conn.read_tls(&mut rest) {
                    Ok(n) if n > 0 => {}
                    _ => {
                        self.phase = Phase::Refused;
                        let cause = FailureCause::Input("ClientHello replay refused".into());
                        return Err(self.fail(cause));
                    }
                }
            }
            self.phase = Phase::Connected(conn);
            return self.process();
        }
        self.phase = Phase::Tls13(tls);
        match started {
            Ok(()) => {
                self.note_established();
                Ok(())
            }
            Err(e) => Err(self.fail(FailureCause::Rustls(e))),
        }
    }

    /// Once the handshake is over: who the client is, from its certificate (once).
    fn note_established(&mut self) {
        if self.established || self.is_handshaking() || self.failure.is_some() {
            return;
        }
        let chain = match &self.phase {
            Phase::Connected(conn) => conn.peer_certificates(),
            Phase::Tls13(tls) => tls.peer_certificates(),
            _ => return,
        };
        self.established = true;
        self.peer_identity = chain.and_then(|chain| {
            let leaf = chain.first()?;
            match parse_peer_identity(leaf) {
                Ok(identity) => Some(identity),
                Err(e) => {
                    // Verified by webpki yet unreadable here: treat the peer as
                    // anonymous rather than guess who it is.
                    tracing::warn!(remote = %self.remote, error = %e, "client certificate accepted but its identity is unreadable");
                    None
                }
            }
        });
    }

    /// Runs rustls over buffered records and records what it tells us.
    fn process(&mut self) -> Result<(), TlsFailure> {
        let Phase::Connected(conn) = &mut self.phase else {
            return Ok(());
        };
        match conn.process_new_packets() {
            Ok(state) => {
                self.inbound_plaintext = state.plaintext_bytes_to_read();
                self.peer_closed |= state.peer_has_closed();
                self.note_established();
                Ok(())
            }
            Err(error) => Err(self.fail(FailureCause::Rustls(error))),
        }
    }

    /// Makes the TLS 1.3 record layer update its send key (a KeyUpdate) before it protects
    /// `records` records with one key, instead of at the AEAD's confidentiality limit: lets
    /// tests reach the limit.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_key_update_interval(&mut self, records: u64) {
        if let Phase::Tls13(tls) = &mut self.phase {
            tls.set_tx_record_limit(records);
        }
    }

    /// Whether this session's records are protected by [`Tls13`] (rather than rustls).
    #[cfg(any(test, feature = "testing"))]
    pub fn own_records(&self) -> bool {
        matches!(self.phase, Phase::Tls13(_))
    }

    /// Marks the session failed, logs the one line for it, and returns the failure.
    fn fail(&mut self, cause: FailureCause) -> TlsFailure {
        let before_client_hello = matches!(self.phase, Phase::Accepting(_));
        let (during_handshake, queued_by_rustls) = match &self.phase {
            Phase::Connected(conn) => (conn.is_handshaking(), conn.wants_write()),
            Phase::Tls13(tls) => (tls.is_handshaking(), tls.wants_write()),
            _ => (true, false),
        };
        let failure = TlsFailure {
            alert_queued: queued_by_rustls || !self.pending_alert.is_empty(),
            during_handshake,
            cause,
        };
        let hint = failure.cause.hint(before_client_hello);
        if during_handshake {
            tracing::warn!(remote = %self.remote, sni = self.sni.as_deref(), error = %failure.cause, hint, "TLS handshake failed");
        } else {
            tracing::info!(remote = %self.remote, sni = self.sni.as_deref(), error = %failure.cause, hint, "TLS connection failed");
        }
        self.failure = Some(failure.clone());
        failure
    }
}
