//! The behaviour of `TlsSession`, specified by driving a real rustls client against it, with
//! every byte pumped between them in memory.

use std::io::{Read, Write};
use std::sync::Arc;

use nukleus_tls::rustls::{
    self, AlertDescription, CertificateError, ClientConfig, ClientConnection, ServerConfig,
};
use nukleus_tls::testing::{ClientCert, TestPki, CLIENT_CN, CLIENT_DNS, CLIENT_URI};
use nukleus_tls::{
    ClientAuth, FailureCause, TlsFailure, TlsSession, TlsSettings, TlsVersion, DEFAULT_BUFFER_LIMIT,
};

// ---------------------------------------------------------------------------------------------
// The harness: a rustls client, a TlsSession, and the wire between them.

/// Deterministic "arbitrary" chunk sizes (1..=max) for splitting the wire.
struct Splitter {
    state: u64,
    max: usize,
}

impl Splitter {
    fn whole() -> Self {
        Splitter { state: 0, max: 0 }
    }

    fn random(max: usize) -> Self {
        Splitter {
            state: 0x9e37_79b9_7f4a_7c15,
            max,
        }
    }

    fn next(&mut self, remaining: usize) -> usize {
        if self.max == 0 {
            return remaining;
        }
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let size = 1 + (self.state >> 33) as usize % self.max;
        size.min(remaining)
    }
}

/// How a handshake was refused, as each side saw it.
#[derive(Debug)]
struct Refusal {
    server: Option<TlsFailure>,
    client: Option<rustls::Error>,
}

struct Peers {
    client: ClientConnection,
    server: TlsSession,
    /// Plaintext the server side has read, and the client side has read.
    at_server: Vec<u8>,
    at_client: Vec<u8>,
    /// Ciphertext the server wrote since the last `take_server_wire`, for inspection.
    server_wire: Vec<u8>,
    split: Splitter,
    /// Size of the buffers the "nukleus" hands to read_plaintext / write_ciphertext.
    out_buffer: usize,
}

impl Peers {
    fn new(server: Arc<ServerConfig>, client: ClientConfig, sni: &str) -> Peers {
        Self::with_limit(server, client, sni, DEFAULT_BUFFER_LIMIT)
    }

    fn with_limit(
        server: Arc<ServerConfig>,
        client: ClientConfig,
        sni: &str,
        limit: usize,
    ) -> Peers {
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
        // The test client queues whole payloads at once; only the server is under test.
        client.set_buffer_limit(None);
        Peers {
            client,
            server: TlsSession::new(server, limit),
            at_server: Vec::new(),
            at_client: Vec::new(),
            server_wire: Vec::new(),
            split: Splitter::whole(),
            out_buffer: 16 * 1024 + 5,
        }
    }

    /// Everything the client has queued, fed to the server (in pieces if splitting), with the
    /// server's plaintext read as it appears.
    fn client_to_server(&mut self) -> Result<(), TlsFailure> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let piece = self.split.next(rest.len());
            let n = self.server.receive_ciphertext(&rest[..piece])?;
            rest = &rest[n..];
            let read = self.read_server_plaintext();
            assert!(n > 0 || read > 0, "server neither consumed nor produced");
        }
        Ok(())
    }

    fn read_server_plaintext(&mut self) -> usize {
        let mut buf = vec![0; self.out_buffer];
        let mut total = 0;
        loop {
            let n = self.server.read_plaintext(&mut buf);
            if n == 0 {
                return total;
            }
            self.at_server.extend_from_slice(&buf[..n]);
            total += n;
        }
    }

    /// Everything the server has queued, pulled through `out_buffer`-sized buffers and fed to
    /// the client.
    fn server_to_client(&mut self) -> Result<(), rustls::Error> {
        let mut buf = vec![0; self.out_buffer];
        loop {
            let n = self.server.write_ciphertext(&mut buf);
            if n == 0 {
                assert!(
                    !self.server.wants_write(),
                    "wants_write with nothing written"
                );
                return Ok(());
            }
            self.server_wire.extend_from_slice(&buf[..n]);
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                self.client.read_tls(&mut rest).unwrap();
                let state = self.client.process_new_packets()?;
                let mut plain = vec![0; state.plaintext_bytes_to_read()];
                self.client.reader().read_exact(&mut plain).unwrap();
                self.at_client.extend_from_slice(&plain);
            }
        }
    }

    /// Pumps both ways until both sides are done handshaking (or one refuses).
    fn handshake(&mut self) -> Result<(), Box<Refusal>> {
        for _ in 0..10 {
            if let Err(server) = self.client_to_server() {
                let client = self.server_to_client().err();
                return Err(Box::new(Refusal {
                    server: Some(server),
                    client,
                }));
            }
            if let Err(client) = self.server_to_client() {
                return Err(Box::new(Refusal {
                    server: None,
                    client: Some(client),
                }));
            }
            if !self.client.is_handshaking()
                && !self.server.is_handshaking()
                && !self.client.wants_write()
            {
                return Ok(());
            }
        }
        panic!("handshake did not finish in 10 round trips");
    }

    /// Sends `data` from the server, offering it piecewise as the outbound buffer allows.
    fn server_sends(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            let piece = self.split.next(rest.len());
            let n = self.server.send_plaintext(&rest[..piece]);
            rest = &rest[n..];
            self.server_to_client().unwrap();
        }
    }
}

fn pki() -> TestPki {
    TestPki::generate().unwrap()
}

fn server_config(settings: &TlsSettings) -> Arc<ServerConfig> {
    settings.server_config().unwrap()
}

fn mtls_settings(pki: &TestPki, mode: ClientAuth) -> TlsSettings {
    let mut settings = pki.server_settings();
    settings.client_ca_path = Some(pki.ca_cert.clone());
    settings.client_auth = mode;
    settings
}

/// A payload whose every position is recognisable, so reordering or loss shows.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Handshakes

#[test]
fn tls13_handshake_negotiates_http11() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    assert!(peers.server.is_handshaking());
    peers.handshake().unwrap();

    assert!(!peers.server.is_handshaking());
    assert_eq!(peers.server.protocol_version(), Some(TlsVersion::Tls13));
    assert_eq!(peers.server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(peers.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(peers.server.sni(), Some("localhost"));
    assert!(
        peers.server.peer_identity().is_none(),
        "no client auth, no identity"
    );
    assert!(peers.server.failure().is_none());
}

#[test]
fn tls12_handshake_negotiates_http11() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[TlsVersion::Tls12])
            .unwrap(),
        "localhost",
    );
    peers.handshake().unwrap();
    assert_eq!(peers.server.protocol_version(), Some(TlsVersion::Tls12));
    assert_eq!(peers.server.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn handshake_survives_one_byte_at_a_time_and_tiny_output_buffers() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    peers.split = Splitter::random(1);
    peers.out_buffer = 3;
    peers.handshake().unwrap();
    assert_eq!(peers.server.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn client_without_alpn_is_admitted_without_a_protocol() {
    let pki = pki();
    let mut client = pki.client_config(ClientCert::None, &[]).unwrap();
    client.alpn_protocols.clear();
    let mut peers = Peers::new(server_config(&pki.server_settings()), client, "localhost");
    peers.handshake().unwrap();
    assert_eq!(peers.server.alpn_protocol(), None);
}

#[test]
fn client_offering_only_other_alpn_protocols_is_refused() {
    let pki = pki();
    let mut client = pki.client_config(ClientCert::None, &[]).unwrap();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let mut peers = Peers::new(server_config(&pki.server_settings()), client, "localhost");
    let refusal = peers.handshake().unwrap_err();
    let server = refusal.server.unwrap();
    assert_eq!(
        server.cause,
        FailureCause::Rustls(rustls::Error::NoApplicationProtocol)
    );
    assert!(server.alert_queued);
    assert_eq!(
        refusal.client,
        Some(rustls::Error::AlertReceived(
            AlertDescription::NoApplicationProtocol
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// Application data

fn exchange_large_split_data(version: TlsVersion) {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[version]).unwrap(),
        "localhost",
    );
    peers.handshake().unwrap();
    peers.split = Splitter::random(3000);
    peers.out_buffer = 1000;

    // Several records each way (a record carries at most 16 KiB).
    let request = payload(100_000);
    peers.client.writer().write_all(&request).unwrap();
    peers.client_to_server().unwrap();
    assert_eq!(peers.at_server.len(), request.len());
    assert!(peers.at_server == request, "request arrived altered");

    let response = payload(150_000);
    peers.server_sends(&response);
    assert_eq!(peers.at_client.len(), response.len());
    assert!(peers.at_client == response, "response arrived altered");
}

#[test]
fn tls13_data_both_ways_larger_than_a_record_split_anywhere() {
    exchange_large_split_data(TlsVersion::Tls13);
}

#[test]
fn tls12_data_both_ways_larger_than_a_record_split_anywhere() {
    exchange_large_split_data(TlsVersion::Tls12);
}

#[test]
fn plaintext_sent_during_the_handshake_is_delivered_after_it() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[TlsVersion::Tls12])
            .unwrap(),
        "localhost",
    );
    // Before the ClientHello there is no connection to queue it on.
    assert_eq!(peers.server.send_plaintext(b"too early"), 0);
    peers.client_to_server().unwrap();
    assert!(peers.server.is_handshaking());
    assert_eq!(peers.server.send_plaintext(b"hello"), 5);
    peers.handshake().unwrap();
    assert_eq!(peers.at_client, b"hello");
}

// ---------------------------------------------------------------------------------------------
// Closing

#[test]
fn close_notify_from_the_client_ends_the_plaintext_after_buffered_data() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    peers.handshake().unwrap();
    peers.client.writer().write_all(b"last words").unwrap();
    peers.client.send_close_notify();
    let mut wire = Vec::new();
    while peers.client.wants_write() {
        peers.client.write_tls(&mut wire).unwrap();
    }
    // Trailing junk after close_notify is discarded, not an error.
    wire.extend_from_slice(b"junk");
    assert_eq!(peers.server.receive_ciphertext(&wire).unwrap(), wire.len());
    assert!(peers.server.peer_closed());
    assert!(peers.server.failure().is_none());
    let mut buf = [0; 64];
    let n = peers.server.read_plaintext(&mut buf);
    assert_eq!(&buf[..n], b"last words");
    assert_eq!(peers.server.read_plaintext(&mut buf), 0);
}

#[test]
fn close_notify_from_the_server_follows_its_data() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    peers.handshake().unwrap();
    assert_eq!(peers.server.send_plaintext(b"bye"), 3);
    peers.server.close_notify();
    assert!(peers.server.wants_write());
    assert_eq!(
        peers.server.send_plaintext(b"more"),
        0,
        "nothing after close_notify"
    );
    peers.server_to_client().unwrap();
    assert_eq!(peers.at_client, b"bye");
    let mut rest = Vec::new();
    // Ok(0) from the reader means the peer closed cleanly with close_notify.
    assert_eq!(peers.client.reader().read_to_end(&mut rest).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// The first fatal alert record in `wire` (plaintext, before keys exist): (level, description).
fn plaintext_alert(wire: &[u8]) -> (u8, u8) {
    assert!(wire.len() >= 7, "no alert record in {wire:?}");
    assert_eq!(wire[0], 21, "content type must be alert (21): {wire:?}");
    assert_eq!(&wire[3..5], &[0, 2], "alert record length: {wire:?}");
    (wire[5], wire[6])
}

#[test]
fn garbage_instead_of_a_client_hello_fails_with_an_alert() {
    let pki = pki();
    let mut session = TlsSession::new(server_config(&pki.server_settings()), DEFAULT_BUFFER_LIMIT);
    let failure = session
        .receive_ciphertext(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap_err();
    assert!(failure.during_handshake);
    assert!(failure.alert_queued);
    assert!(matches!(
        failure.cause,
        FailureCause::Rustls(rustls::Error::InvalidMessage(_))
    ));
    assert!(session.wants_write());
    let mut out = [0; 64];
    let n = session.write_ciphertext(&mut out);
    let (level, _description) = plaintext_alert(&out[..n]);
    assert_eq!(level, 2, "fatal");
    assert!(!session.wants_write());

    // The session stays dead: same error, nothing consumed, nothing produced.
    let again = session.receive_ciphertext(b"\x16\x03\x01").unwrap_err();
    assert_eq!(again.cause, failure.cause);
    assert_eq!(session.write_ciphertext(&mut out), 0);
    assert_eq!(session.read_plaintext(&mut out), 0);
    assert_eq!(session.send_plaintext(b"x"), 0);
    assert!(!session.is_handshaking());
}

#[test]
fn truncated_handshake_leaves_the_session_waiting() {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    let mut hello = Vec::new();
    peers.client.write_tls(&mut hello).unwrap();
    let half = &hello[..hello.len() / 2];
    assert_eq!(peers.server.receive_ciphertext(half).unwrap(), half.len());
    // The peer goes quiet: nothing to send, nothing to read, still handshaking.
    assert!(peers.server.is_handshaking());
    assert!(!peers.server.wants_write());
    assert_eq!(peers.server.write_ciphertext(&mut [0; 64]), 0);
    assert_eq!(peers.server.read_plaintext(&mut [0; 64]), 0);
    assert!(peers.server.failure().is_none());
    assert_eq!(peers.server.receive_ciphertext(&[]).unwrap(), 0);

    // The rest arriving later completes the ClientHello as if nothing happened.
    let rest = &hello[hello.len() / 2..];
    assert_eq!(peers.server.receive_ciphertext(rest).unwrap(), rest.len());
    assert!(peers.server.wants_write(), "ServerHello is ready");
}

#[test]
fn unknown_sni_is_refused_with_unrecognized_name() {
    let pki = pki();
    let mut settings = pki.server_settings();
    settings.server_names = vec!["localhost".to_owned()];
    let mut peers = Peers::new(
        server_config(&settings),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "elsewhere.test",
    );
    let refusal = peers.handshake().unwrap_err();
    let server = refusal.server.unwrap();
    assert_eq!(
        server.cause,
        FailureCause::UnknownServerName("elsewhere.test".to_owned())
    );
    assert!(server.alert_queued && server.during_handshake);
    assert_eq!(peers.server.sni(), Some("elsewhere.test"));
    assert_eq!(plaintext_alert(&peers.server_wire), (2, 112));
    assert_eq!(
        refusal.client,
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnrecognisedName
        ))
    );
}

#[test]
fn listed_sni_is_admitted() {
    let pki = pki();
    let mut settings = pki.server_settings();
    settings.server_names = vec!["LOCALHOST".to_owned(), "*.reaktor.test".to_owned()];
    let mut peers = Peers::new(
        server_config(&settings),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
    );
    peers.handshake().unwrap();
    assert_eq!(peers.server.sni(), Some("localhost"));
}

// ---------------------------------------------------------------------------------------------
// Client certificates (mTLS)

fn mtls(
    mode: ClientAuth,
    cert: ClientCert,
    version: TlsVersion,
) -> (Peers, Result<(), Box<Refusal>>) {
    let pki = pki();
    let mut peers = Peers::new(
        server_config(&mtls_settings(&pki, mode)),
        pki.client_config(cert, &[version]).unwrap(),
        "localhost",
    );
    let outcome = peers.handshake();
    (peers, outcome)
}

#[test]
fn valid_client_certificate_is_accepted_and_its_identity_exposed() {
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let (peers, outcome) = mtls(ClientAuth::Required, ClientCert::Valid, version);
        outcome.unwrap();
        let identity = peers.server.peer_identity().expect("identity");
        assert_eq!(identity.common_name.as_deref(), Some(CLIENT_CN));
        assert_eq!(identity.dns_names, vec![CLIENT_DNS]);
        assert_eq!(identity.uris, vec![CLIENT_URI]);
        assert_eq!(peers.server.peer_certificates().map(<[_]>::len), Some(1));
    }
}

fn assert_refused_for_certificate(
    refusal: &Refusal,
    server_error: fn(&rustls::Error) -> bool,
    client_alert: AlertDescription,
) {
    let server = refusal.server.as_ref().expect("the server refuses");
    assert!(server.during_handshake && server.alert_queued, "{server:?}");
    let error = server.cause.rustls_error().expect("a rustls error");
    assert!(server_error(error), "unexpected server error {error:?}");
    assert_eq!(
        refusal.client,
        Some(rustls::Error::AlertReceived(client_alert))
    );
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let (peers, outcome) = mtls(ClientAuth::Required, ClientCert::Foreign, version);
        assert_refused_for_certificate(
            &outcome.unwrap_err(),
            |e| {
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                )
            },
            AlertDescription::UnknownCA,
        );
        assert!(peers.server.peer_identity().is_none());
    }
}

#[test]
fn expired_client_certificate_is_refused() {
    let (_, outcome) = mtls(ClientAuth::Required, ClientCert::Expired, TlsVersion::Tls13);
    assert_refused_for_certificate(
        &outcome.unwrap_err(),
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            )
        },
        AlertDescription::CertificateExpired,
    );
}

#[test]
fn missing_client_certificate_is_refused_when_required() {
    let (_, outcome) = mtls(ClientAuth::Required, ClientCert::None, TlsVersion::Tls13);
    assert_refused_for_certificate(
        &outcome.unwrap_err(),
        |e| matches!(e, rustls::Error::NoCertificatesPresented),
        AlertDescription::CertificateRequired,
    );
}

#[test]
fn missing_client_certificate_is_anonymous_when_optional() {
    let (peers, outcome) = mtls(ClientAuth::Optional, ClientCert::None, TlsVersion::Tls13);
    outcome.unwrap();
    assert!(peers.server.peer_identity().is_none());
    let (peers, outcome) = mtls(ClientAuth::Optional, ClientCert::Valid, TlsVersion::Tls13);
    outcome.unwrap();
    assert_eq!(
        peers.server.peer_identity().unwrap().common_name.as_deref(),
        Some(CLIENT_CN)
    );
}

// ---------------------------------------------------------------------------------------------
// Bounded buffering

/// One maximal TLS record: what may be decrypted or queued past the limit in one step.
const ONE_RECORD: usize = 16 * 1024 + 256;

#[test]
fn unread_plaintext_stops_the_session_consuming_ciphertext() {
    let pki = pki();
    let limit = 20_000;
    let mut peers = Peers::with_limit(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
        limit,
    );
    peers.handshake().unwrap();

    let sent = payload(1_000_000);
    peers.client.writer().write_all(&sent).unwrap();
    let mut wire = Vec::new();
    while peers.client.wants_write() {
        peers.client.write_tls(&mut wire).unwrap();
    }

    // The application never reads: the session takes a bounded amount and refuses the rest.
    let consumed = peers.server.receive_ciphertext(&wire).unwrap();
    assert!(consumed < wire.len());
    assert!(consumed <= limit + 2 * ONE_RECORD, "consumed {consumed}");
    assert!(peers.server.plaintext_available() <= limit + ONE_RECORD);
    assert_eq!(
        peers.server.receive_ciphertext(&wire[consumed..]).unwrap(),
        0
    );

    // Once the application reads, the rest flows, unaltered.
    let mut rest = &wire[consumed..];
    peers.read_server_plaintext();
    while !rest.is_empty() {
        let n = peers.server.receive_ciphertext(rest).unwrap();
        assert!(peers.server.plaintext_available() <= limit + ONE_RECORD);
        rest = &rest[n..];
        peers.read_server_plaintext();
    }
    assert!(peers.at_server == sent, "data altered under backpressure");
}

#[test]
fn unflushed_ciphertext_stops_the_session_accepting_plaintext() {
    let pki = pki();
    let limit = 20_000;
    let mut peers = Peers::with_limit(
        server_config(&pki.server_settings()),
        pki.client_config(ClientCert::None, &[]).unwrap(),
        "localhost",
        limit,
    );
    peers.handshake().unwrap();

    // The tcp side never drains: acceptance stops near the limit.
    let data = payload(1_000_000);
    let mut accepted = 0;
    loop {
        let n = peers.server.send_plaintext(&data[accepted..]);
        if n == 0 {
            break;
        }
        accepted += n;
    }
    assert!(accepted <= limit + ONE_RECORD, "accepted {accepted}");
    let mut wire = Vec::new();
    let queued = peers.server.write_ciphertext_to_vec(&mut wire);
    assert!(queued <= limit + 2 * ONE_RECORD, "queued {queued}");
    assert!(!peers.server.wants_write());

    // Draining makes room again.
    assert!(peers.server.send_plaintext(&data[accepted..]) > 0);
}

// ---------------------------------------------------------------------------------------------
// Logging: one warn line per failed handshake, naming the reason

mod capture {
    use std::fmt::{Debug, Write};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::{span, Event, Level, Metadata, Subscriber};

    /// Records every event as "LEVEL field=value ..." (a minimal subscriber, so the tests need
    /// no tracing-subscriber).
    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(event.metadata().level().to_string());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    impl Capture {
        pub fn warnings(&self) -> Vec<String> {
            let level = Level::WARN.to_string();
            let events = self.0.lock().unwrap();
            events
                .iter()
                .filter(|e| e.starts_with(&level))
                .cloned()
                .collect()
        }
    }
}

fn warnings_during(run: impl FnOnce()) -> Vec<String> {
    let capture = capture::Capture::default();
    tracing::subscriber::with_default(capture.clone(), run);
    capture.warnings()
}

#[test]
fn each_failed_handshake_logs_one_warning_with_its_reason() {
    let pki = pki();
    let warnings = warnings_during(|| {
        let mut session =
            TlsSession::new(server_config(&pki.server_settings()), DEFAULT_BUFFER_LIMIT);
        let _ = session.receive_ciphertext(b"GET / HTTP/1.1\r\n\r\n");
        let _ = session.receive_ciphertext(b"more garbage");
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("TLS handshake failed"), "{warnings:?}");
    assert!(warnings[0].contains("ClientHello"), "{warnings:?}");

    let mut settings = pki.server_settings();
    settings.server_names = vec!["localhost".to_owned()];
    let warnings = warnings_during(|| {
        let mut peers = Peers::new(
            server_config(&settings),
            pki.client_config(ClientCert::None, &[]).unwrap(),
            "elsewhere.test",
        );
        peers.handshake().unwrap_err();
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("elsewhere.test"), "{warnings:?}");

    let warnings = warnings_during(|| {
        let (_, outcome) = mtls(ClientAuth::Required, ClientCert::Foreign, TlsVersion::Tls13);
        outcome.unwrap_err();
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("client certificate"), "{warnings:?}");

    let warnings = warnings_during(|| {
        let (_, outcome) = mtls(ClientAuth::Required, ClientCert::Valid, TlsVersion::Tls13);
        outcome.unwrap();
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}
