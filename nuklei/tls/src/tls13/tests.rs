//! The TLS 1.3 record layer against rustls as the peer, in process: a rustls
//! `ClientConnection` handshakes with a `TlsSession`, then records go both ways. Where a test
//! needs records rustls would never send (a tampered or oversized one, a KeyUpdate not ending
//! its record, a stray handshake message), the client's traffic keys are extracted from
//! rustls and the records are sealed here with `record::seal_any`.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CipherSuite, ClientConfig, ClientConnection, Error, ServerConfig};

use crate::record::{self, Keys, RecordError, HEADER_LEN, MAX_FRAGMENT, OVERHEAD};
use crate::testing::{ClientCert, TestPki};
use crate::{FailureCause, TlsFailure, TlsSession, TlsVersion, DEFAULT_BUFFER_LIMIT};

struct Peers {
    client: ClientConnection,
    server: TlsSession,
    at_client: Vec<u8>,
    at_server: Vec<u8>,
}

fn pki() -> TestPki {
    TestPki::generate().unwrap()
}

fn client_config(pki: &TestPki) -> ClientConfig {
    pki.client_config(ClientCert::None, &[]).unwrap()
}

fn server_config(pki: &TestPki) -> Arc<ServerConfig> {
    pki.server_settings().server_config().unwrap()
}

impl Peers {
    fn start(server: Arc<ServerConfig>, client: ClientConfig) -> Peers {
        Peers::start_shared(server, Arc::new(client))
    }

    /// With a client config (and so a session cache) shared by several connections.
    fn start_shared(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Peers {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(client, name).unwrap();
        client.set_buffer_limit(None);
        Peers {
            client,
            server: TlsSession::new(server, DEFAULT_BUFFER_LIMIT),
            at_client: Vec::new(),
            at_server: Vec::new(),
        }
    }

    /// A completed handshake (NewSessionTickets delivered).
    fn connected(server: Arc<ServerConfig>, client: ClientConfig) -> Peers {
        Peers::connected_shared(server, Arc::new(client))
    }

    fn connected_shared(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Peers {
        let mut peers = Peers::start_shared(server, client);
        for _ in 0..10 {
            peers.pump_to_server().unwrap();
            peers.pump_to_client().unwrap();
            if !peers.client.is_handshaking()
                && !peers.server.is_handshaking()
                && !peers.client.wants_write()
                && !peers.server.wants_write()
            {
                return peers;
            }
        }
        panic!("no handshake in 10 round trips");
    }

    fn client_wire(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        wire
    }

    fn pump_to_server(&mut self) -> Result<(), TlsFailure> {
        let wire = self.client_wire();
        self.feed(&wire)
    }

    /// `wire` into the server, its plaintext read as it appears.
    fn feed(&mut self, wire: &[u8]) -> Result<(), TlsFailure> {
        feed(&mut self.server, wire, &mut self.at_server)
    }

    fn server_wire(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        self.server.write_ciphertext_to_vec(&mut wire);
        wire
    }

    fn pump_to_client(&mut self) -> Result<(), Error> {
        let wire = self.server_wire();
        self.client_reads(&wire)
    }

    fn client_reads(&mut self, wire: &[u8]) -> Result<(), Error> {
        let mut rest = wire;
        while !rest.is_empty() {
            self.client.read_tls(&mut rest).unwrap();
            let state = self.client.process_new_packets()?;
            let mut plain = vec![0; state.plaintext_bytes_to_read()];
            self.client.reader().read_exact(&mut plain).unwrap();
            self.at_client.extend_from_slice(&plain);
        }
        Ok(())
    }
}

fn feed(server: &mut TlsSession, wire: &[u8], at_server: &mut Vec<u8>) -> Result<(), TlsFailure> {
    let mut rest = wire;
    let mut buf = vec![0; 20_000];
    loop {
        let n = server.receive_ciphertext(rest)?;
        rest = &rest[n..];
        let mut read = 0;
        loop {
            let r = server.read_plaintext(&mut buf);
            if r == 0 {
                break;
            }
            at_server.extend_from_slice(&buf[..r]);
            read += r;
        }
        if rest.is_empty() {
            return Ok(());
        }
        assert!(n > 0 || read > 0, "server neither consumed nor produced");
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The (outer length, body) of each record in `wire`.
fn records(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        out.push(&rest[..HEADER_LEN + len]);
        rest = &rest[HEADER_LEN + len..];
    }
    out
}

fn failure_cause(result: Result<(), TlsFailure>) -> Error {
    match result.unwrap_err().cause {
        FailureCause::Rustls(e) => e,
        other => panic!("not a rustls error: {other:?}"),
    }
}

// ----- crafted records: the client's keys taken from rustls ---------------------------------

struct Crafted {
    server: TlsSession,
    /// The client's send keys (the server's receive keys) and receive keys.
    client_tx: Keys,
    client_rx: Keys,
    at_server: Vec<u8>,
}

impl Crafted {
    fn new(pki: &TestPki, suite: Option<CipherSuite>) -> Crafted {
        let suites: Vec<_> = suite.into_iter().collect();
        let mut client = pki
            .client_config_with_suites(ClientCert::None, &[TlsVersion::Tls13], &suites)
            .unwrap();
        client.enable_secret_extraction = true;
        let peers = Peers::connected(server_config(pki), client);
        assert!(peers.server.own_records());
        let secrets = peers.client.dangerous_extract_secrets().unwrap();
        Crafted {
            server: peers.server,
            client_tx: Keys::new(&secrets.tx.1, secrets.tx.0).unwrap(),
            client_rx: Keys::new(&secrets.rx.1, secrets.rx.0).unwrap(),
            at_server: Vec::new(),
        }
    }

    fn seal(&mut self, content_type: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![0; content.len() + OVERHEAD];
        out[HEADER_LEN..][..content.len()].copy_from_slice(content);
        record::seal_any(&mut self.client_tx, content_type, &mut out, content.len()).unwrap();
        out
    }

    fn send(&mut self, content_type: u8, content: &[u8]) -> Result<(), TlsFailure> {
        let wire = self.seal(content_type, content);
        feed(&mut self.server, &wire, &mut self.at_server)
    }

    /// The server's records since the last call, opened with the client's receive keys;
    /// stops at the first that does not open.
    fn receive(&mut self) -> Vec<Result<(u8, Vec<u8>), RecordError>> {
        let mut wire = Vec::new();
        self.server.write_ciphertext_to_vec(&mut wire);
        let mut out = Vec::new();
        for r in records(&wire) {
            let mut r = r.to_vec();
            match record::open(&mut self.client_rx, &mut r) {
                Ok((t, range)) => out.push(Ok((t, r[range].to_vec()))),
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    /// The fatal alert the server sent, opened.
    fn alert(&mut self) -> Vec<Result<(u8, Vec<u8>), RecordError>> {
        assert!(self.server.wants_write());
        let sent = self.receive();
        assert!(!self.server.wants_write());
        sent
    }
}

fn alert(description: AlertDescription) -> Vec<Result<(u8, Vec<u8>), RecordError>> {
    vec![Ok((record::ALERT, vec![2, u8::from(description)]))]
}

// ----- with rustls as it is ------------------------------------------------------------------

#[test]
fn tls13_is_handed_over_and_tls12_stays_with_rustls() {
    let pki = pki();
    let peers = Peers::connected(server_config(&pki), client_config(&pki));
    assert!(peers.server.own_records());
    assert_eq!(peers.server.protocol_version(), Some(TlsVersion::Tls13));
    assert_eq!(peers.server.alpn_protocol(), Some(&b"http/1.1"[..]));

    let tls12 = pki
        .client_config(ClientCert::None, &[TlsVersion::Tls12])
        .unwrap();
    let peers = Peers::connected(server_config(&pki), tls12);
    assert!(!peers.server.own_records());
    assert_eq!(peers.server.protocol_version(), Some(TlsVersion::Tls12));

    // A listener without TLS 1.3 never takes over, even if asked to extract secrets: rustls
    // picks TLS 1.2 for a client offering both, and the ClientHello is replayed into a
    // buffered connection.
    let mut settings = pki.server_settings();
    settings.versions = vec![TlsVersion::Tls12];
    let mut only12 = (*settings.server_config().unwrap()).clone();
    assert!(!only12.enable_secret_extraction);
    only12.enable_secret_extraction = true;
    let mut peers = Peers::connected(Arc::new(only12), client_config(&pki));
    assert!(!peers.server.own_records());
    assert_eq!(peers.server.protocol_version(), Some(TlsVersion::Tls12));
    peers.client.writer().write_all(b"ping").unwrap();
    peers.pump_to_server().unwrap();
    assert_eq!(peers.at_server, b"ping");
    assert_eq!(peers.server.send_plaintext(b"pong"), 4);
    peers.pump_to_client().unwrap();
    assert_eq!(peers.at_client, b"pong");
}

#[test]
fn a_resumed_session_is_handed_over_too() {
    let pki = pki();
    let server = server_config(&pki);
    let client = Arc::new(client_config(&pki));
    let mut first = Peers::connected_shared(server.clone(), client.clone());
    assert_eq!(
        first.client.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    first.client.writer().write_all(b"one").unwrap();
    first.pump_to_server().unwrap();
    assert_eq!(first.at_server, b"one");

    // The NewSessionTickets rustls sent before the hand-over let the client resume.
    let mut second = Peers::connected_shared(server, client);
    assert_eq!(
        second.client.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert!(second.server.own_records());
    second.client.writer().write_all(b"two").unwrap();
    second.pump_to_server().unwrap();
    assert_eq!(second.at_server, b"two");
    assert_eq!(second.server.send_plaintext(b"ok"), 2);
    second.pump_to_client().unwrap();
    assert_eq!(second.at_client, b"ok");
}

#[test]
fn every_aead_carries_data_both_ways_in_records_up_to_the_limit() {
    let pki = pki();
    for suite in [
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let client = pki
            .client_config_with_suites(ClientCert::None, &[], &[suite])
            .unwrap();
        let mut peers = Peers::connected(server_config(&pki), client);
        assert!(peers.server.own_records());
        let up = payload(200_000);
        peers.client.writer().write_all(&up).unwrap();
        peers.pump_to_server().unwrap();
        assert!(peers.at_server == up, "{suite:?}: upload altered");

        let down = payload(100_003);
        let mut sent = 0;
        while sent < down.len() {
            sent += peers.server.send_plaintext(&down[sent..]);
            let wire = peers.server_wire();
            // No record carries more than 2^14 bytes.
            for r in records(&wire) {
                assert!(r.len() <= MAX_FRAGMENT + OVERHEAD);
            }
            peers.client_reads(&wire).unwrap();
        }
        assert!(peers.at_client == down, "{suite:?}: download altered");
    }
}

#[test]
fn a_small_output_buffer_gets_whole_records_only() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    let data = payload(5_000);
    assert_eq!(peers.server.send_plaintext(&data), data.len());
    let mut buf = [0u8; 100];
    assert_eq!(
        peers.server.write_ciphertext(&mut buf[..OVERHEAD]),
        0,
        "no room for a byte"
    );
    while peers.server.wants_write() {
        let n = peers.server.write_ciphertext(&mut buf);
        let waiting = data.len() - peers.at_client.len();
        // One whole record per call, as large as the buffer allows.
        assert_eq!(n, (waiting + OVERHEAD).min(100));
        peers.client_reads(&buf[..n]).unwrap();
    }
    assert!(peers.at_client == data);
}

#[test]
fn sequence_numbers_go_past_2_16_both_ways() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    const RECORDS: usize = 66_000;
    for i in 0..RECORDS {
        peers.client.writer().write_all(&[i as u8]).unwrap();
    }
    let wire = peers.client_wire();
    assert_eq!(records(&wire).len(), RECORDS, "one record per write");
    peers.feed(&wire).unwrap();
    let expected: Vec<u8> = (0..RECORDS).map(|i| i as u8).collect();
    assert!(peers.at_server == expected);

    let mut wire = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..RECORDS {
        assert_eq!(peers.server.send_plaintext(&[i as u8]), 1);
        let n = peers.server.write_ciphertext(&mut buf);
        assert_eq!(n, 1 + OVERHEAD);
        wire.extend_from_slice(&buf[..n]);
    }
    peers.client_reads(&wire).unwrap();
    assert!(peers.at_client == expected);
}

#[test]
fn key_update_requested_by_the_client_is_answered_once_before_data() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    for round in 0..5u8 {
        peers.client.refresh_traffic_keys().unwrap();
        if round == 3 {
            // Two requests while the server is silent: one answer (RFC 8446 §4.6.3).
            peers.client.refresh_traffic_keys().unwrap();
        }
        peers.client.writer().write_all(&[b'p', round]).unwrap();
        peers.pump_to_server().unwrap();
        assert_eq!(peers.at_server, [b'p', round]);
        peers.at_server.clear();

        assert_eq!(peers.server.send_plaintext(&[b'q', round]), 2);
        let wire = peers.server_wire();
        let rs = records(&wire);
        // The KeyUpdate (5 bytes of handshake + type + tag), then the data under the new key:
        // rustls reads the data only if it was sealed under the key it moved to.
        assert_eq!(rs.len(), 2, "round {round}");
        assert_eq!(rs[0].len(), 5 + OVERHEAD);
        assert_eq!(rs[1].len(), 2 + OVERHEAD);
        peers.client_reads(&wire).unwrap();
        assert_eq!(peers.at_client, [b'q', round]);
        peers.at_client.clear();
    }
}

#[test]
fn the_server_updates_its_key_before_the_confidentiality_limit() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    peers.server.set_key_update_interval(4);
    let mut wire = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..20u8 {
        assert_eq!(peers.server.send_plaintext(&[i]), 1);
        let n = peers.server.write_ciphertext(&mut buf);
        wire.extend_from_slice(&buf[..n]);
    }
    let rs = records(&wire);
    let key_updates = rs.iter().filter(|r| r.len() == 5 + OVERHEAD).count();
    // Three records and a KeyUpdate per key.
    assert_eq!(key_updates, 6, "{} records", rs.len());
    assert_eq!(rs.len(), 26);
    peers.client_reads(&wire).unwrap();
    assert_eq!(peers.at_client, (0..20).collect::<Vec<u8>>());
    // And the client's own key updates still work after ours.
    peers.client.refresh_traffic_keys().unwrap();
    peers.client.writer().write_all(b"still").unwrap();
    peers.pump_to_server().unwrap();
    assert_eq!(peers.at_server, b"still");
}

#[test]
fn a_flood_of_key_update_requests_is_refused() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    for _ in 0..32 {
        peers.client.refresh_traffic_keys().unwrap();
    }
    peers.pump_to_server().unwrap();
    // Application data resets the count.
    peers.client.writer().write_all(b"x").unwrap();
    for _ in 0..32 {
        peers.client.refresh_traffic_keys().unwrap();
    }
    peers.pump_to_server().unwrap();
    peers.client.refresh_traffic_keys().unwrap();
    let error = failure_cause(peers.pump_to_server());
    assert_eq!(
        error,
        Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyKeyUpdateRequests)
    );
}

#[test]
fn close_notify_both_ways() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    peers.client.writer().write_all(b"last words").unwrap();
    peers.client.send_close_notify();
    let mut wire = peers.client_wire();
    wire.extend_from_slice(b"junk after close_notify is dropped");
    peers.feed(&wire).unwrap();
    assert!(peers.server.peer_closed());
    assert_eq!(peers.at_server, b"last words");
    assert!(peers.server.failure().is_none());

    // The server can still answer, then close.
    assert_eq!(peers.server.send_plaintext(b"bye"), 3);
    peers.server.close_notify();
    assert_eq!(peers.server.send_plaintext(b"more"), 0);
    peers.pump_to_client().unwrap();
    assert!(!peers.server.wants_write());
    assert_eq!(peers.at_client, b"bye");
    let mut rest = Vec::new();
    assert_eq!(peers.client.reader().read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn data_and_close_notify_behind_the_clients_finished_are_read_across_the_hand_over() {
    let pki = pki();
    let mut peers = Peers::start(server_config(&pki), client_config(&pki));
    peers.pump_to_server().unwrap(); // ClientHello
    peers.pump_to_client().unwrap(); // ServerHello .. Finished
    assert!(!peers.client.is_handshaking());
    // Finished, a request and close_notify arrive in one piece.
    peers
        .client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    peers.client.send_close_notify();
    peers.pump_to_server().unwrap();
    assert!(peers.server.own_records());
    assert!(!peers.server.is_handshaking());
    assert_eq!(peers.at_server, b"GET / HTTP/1.1\r\n\r\n");
    assert!(peers.server.peer_closed());
    assert_eq!(peers.server.send_plaintext(b"HTTP/1.1 200 OK"), 15);
    peers.pump_to_client().unwrap();
    assert_eq!(peers.at_client, b"HTTP/1.1 200 OK");
}

#[test]
fn a_key_update_right_behind_the_clients_finished_is_answered_by_our_records() {
    let pki = pki();
    let mut peers = Peers::start(server_config(&pki), client_config(&pki));
    peers.pump_to_server().unwrap(); // ClientHello
    peers.pump_to_client().unwrap(); // ServerHello .. Finished
    assert!(!peers.client.is_handshaking());
    // Finished, KeyUpdate(update_requested) and a request in one flight: rustls is given
    // only the records up to the Finished, so the KeyUpdate is ours to answer.
    peers.client.refresh_traffic_keys().unwrap();
    peers.client.writer().write_all(b"request").unwrap();
    peers.pump_to_server().unwrap();
    assert!(peers.server.own_records());
    assert_eq!(peers.at_server, b"request");
    assert_eq!(peers.server.send_plaintext(b"response"), 8);
    let wire = peers.server_wire();
    let rs = records(&wire);
    // The NewSessionTickets (from rustls, before the hand-over: one record), our KeyUpdate,
    // the data.
    let lengths: Vec<_> = rs.iter().map(|r| r.len()).collect();
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    assert_eq!(lengths[1..], [5 + OVERHEAD, 8 + OVERHEAD]);
    peers.client_reads(&wire).unwrap();
    assert_eq!(peers.at_client, b"response");
}

#[test]
fn a_tampered_record_gets_bad_record_mac_and_ends_the_session() {
    let pki = pki();
    let mut peers = Peers::connected(server_config(&pki), client_config(&pki));
    peers.client.writer().write_all(b"hello").unwrap();
    let mut wire = peers.client_wire();
    let last = wire.len() - 1;
    wire[last] ^= 0x80;
    let failure = peers.feed(&wire).unwrap_err();
    assert_eq!(failure.cause, FailureCause::Rustls(Error::DecryptError));
    assert!(failure.alert_queued && !failure.during_handshake);
    assert!(peers.at_server.is_empty());
    assert_eq!(
        peers.pump_to_client(),
        Err(Error::AlertReceived(AlertDescription::BadRecordMac))
    );
    // Dead: nothing more in or out.
    assert_eq!(peers.server.send_plaintext(b"x"), 0);
    assert_eq!(peers.server.read_plaintext(&mut [0; 8]), 0);
    assert!(!peers.server.wants_write());
    assert!(peers.server.receive_ciphertext(b"more").is_err());
}

// ----- with crafted records ------------------------------------------------------------------

#[test]
fn a_record_over_the_limit_gets_record_overflow() {
    let pki = pki();
    // Inner plaintext of 2^14 + 2 bytes, properly sealed.
    let mut c = Crafted::new(&pki, None);
    let big = vec![b'a'; MAX_FRAGMENT + 1];
    assert_eq!(
        failure_cause(c.send(record::APPLICATION_DATA, &big)),
        Error::PeerSentOversizedRecord
    );
    assert_eq!(c.alert(), alert(AlertDescription::RecordOverflow));

    // Exactly 2^14 is fine.
    let mut c = Crafted::new(&pki, None);
    c.send(record::APPLICATION_DATA, &big[..MAX_FRAGMENT])
        .unwrap();
    assert_eq!(c.at_server.len(), MAX_FRAGMENT);

    // A header announcing more than 2^14 + 256 bytes is refused before the body arrives.
    let mut c = Crafted::new(&pki, Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256));
    let over = (record::MAX_CIPHERTEXT + 1) as u16;
    let header = [23, 3, 3, (over >> 8) as u8, over as u8];
    let failure = c.server.receive_ciphertext(&header).unwrap_err();
    assert_eq!(
        failure.cause,
        FailureCause::Rustls(Error::PeerSentOversizedRecord)
    );
    assert_eq!(c.alert(), alert(AlertDescription::RecordOverflow));
}

#[test]
fn key_update_not_requested_moves_only_the_receive_key() {
    let pki = pki();
    let mut c = Crafted::new(&pki, Some(CipherSuite::TLS13_AES_256_GCM_SHA384));
    c.send(record::APPLICATION_DATA, b"before").unwrap();
    c.send(record::HANDSHAKE, &[24, 0, 0, 1, 0]).unwrap();
    // No KeyUpdate in answer: the server's data is still under the key we know.
    assert_eq!(c.server.send_plaintext(b"reply"), 5);
    assert_eq!(
        c.receive(),
        vec![Ok((record::APPLICATION_DATA, b"reply".to_vec()))]
    );
    // The server moved its receive key: a record under the old key no longer opens.
    assert_eq!(
        failure_cause(c.send(record::APPLICATION_DATA, b"after")),
        Error::DecryptError
    );
    assert_eq!(c.alert(), alert(AlertDescription::BadRecordMac));
    assert_eq!(c.at_server, b"before");
}

#[test]
fn key_update_requested_is_answered_before_the_next_data() {
    let pki = pki();
    let mut c = Crafted::new(&pki, None);
    c.send(record::HANDSHAKE, &[24, 0, 0, 1, 1]).unwrap();
    assert!(
        c.server.wants_write(),
        "the answer is due even without data"
    );
    assert_eq!(c.server.send_plaintext(b"reply"), 5);
    let sent = c.receive();
    assert_eq!(sent[0], Ok((record::HANDSHAKE, vec![24, 0, 0, 1, 0])));
    // The data follows under the new key, which only rustls could derive.
    assert_eq!(sent[1], Err(RecordError::BadRecordMac));
}

#[test]
fn a_key_update_split_over_records_is_joined() {
    let pki = pki();
    let mut c = Crafted::new(&pki, None);
    c.send(record::HANDSHAKE, &[24, 0]).unwrap();
    c.send(record::HANDSHAKE, &[0, 1]).unwrap();
    c.send(record::HANDSHAKE, &[1]).unwrap();
    assert_eq!(c.server.send_plaintext(b"r"), 1);
    assert_eq!(
        c.receive()[0],
        Ok((record::HANDSHAKE, vec![24, 0, 0, 1, 0]))
    );
}

#[test]
fn misplaced_or_unexpected_handshake_messages_are_refused() {
    let pki = pki();
    let cases: [(&[u8], Error, AlertDescription); 5] = [
        // A KeyUpdate must end its record (what follows would be under the old key).
        (
            &[24, 0, 0, 1, 0, 24],
            Error::PeerMisbehaved(rustls::PeerMisbehaved::KeyEpochWithPendingFragment),
            AlertDescription::UnexpectedMessage,
        ),
        // Clients send no NewSessionTicket, nor anything else after their Finished.
        (
            &[4, 0, 0, 0],
            Error::InappropriateHandshakeMessage {
                expect_types: vec![rustls::HandshakeType::KeyUpdate],
                got_type: rustls::HandshakeType::NewSessionTicket,
            },
            AlertDescription::UnexpectedMessage,
        ),
        (
            &[24, 0, 0, 2, 0, 0],
            Error::InvalidMessage(rustls::InvalidMessage::InvalidKeyUpdate),
            AlertDescription::DecodeError,
        ),
        (
            &[24, 0, 0, 1, 7],
            Error::InvalidMessage(rustls::InvalidMessage::InvalidKeyUpdate),
            AlertDescription::IllegalParameter,
        ),
        (
            &[],
            Error::InvalidMessage(rustls::InvalidMessage::InvalidEmptyPayload),
            AlertDescription::DecodeError,
        ),
    ];
    for (content, error, description) in cases {
        let mut c = Crafted::new(&pki, None);
        assert_eq!(failure_cause(c.send(record::HANDSHAKE, content)), error);
        assert_eq!(c.alert(), alert(description), "{content:?}");
    }

    // A handshake message begun in one record may not be interrupted by data.
    let mut c = Crafted::new(&pki, None);
    c.send(record::HANDSHAKE, &[24, 0]).unwrap();
    assert!(matches!(
        failure_cause(c.send(record::APPLICATION_DATA, b"x")),
        Error::InappropriateMessage { .. }
    ));
    assert_eq!(c.alert(), alert(AlertDescription::UnexpectedMessage));
}

#[test]
fn garbled_records_are_refused_with_the_right_alert() {
    let pki = pki();
    // change_cipher_spec, protected, after the handshake.
    let mut c = Crafted::new(&pki, None);
    assert!(matches!(
        failure_cause(c.send(20, &[1])),
        Error::InappropriateMessage { .. }
    ));
    assert_eq!(c.alert(), alert(AlertDescription::UnexpectedMessage));

    // All padding, no content type.
    let mut c = Crafted::new(&pki, None);
    assert_eq!(
        failure_cause(c.send(0, &[0, 0])),
        Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalTlsInnerPlaintext)
    );
    assert_eq!(c.alert(), alert(AlertDescription::UnexpectedMessage));

    // A plaintext handshake record after the handshake.
    let mut c = Crafted::new(&pki, None);
    let failure = c.server.receive_ciphertext(&[22, 3, 3, 0, 4, 24, 0, 0, 1]);
    assert!(matches!(
        failure.unwrap_err().cause,
        FailureCause::Rustls(Error::InappropriateMessage { .. })
    ));
    assert_eq!(c.alert(), alert(AlertDescription::UnexpectedMessage));

    // A record too short to hold a tag.
    let mut c = Crafted::new(&pki, None);
    let failure = c.server.receive_ciphertext(&[23, 3, 3, 0, 3, 1, 2, 3]);
    assert_eq!(
        failure.unwrap_err().cause,
        FailureCause::Rustls(Error::DecryptError)
    );
    assert_eq!(c.alert(), alert(AlertDescription::BadRecordMac));

    // A padded record is fine: content, type, zeros.
    let mut c = Crafted::new(&pki, None);
    c.send(0, b"padded\x17\0\0\0\0").unwrap();
    assert_eq!(c.at_server, b"padded");
}

#[test]
fn alerts_from_the_client() {
    let pki = pki();
    // A fatal alert ends the session; nothing is sent back.
    let mut c = Crafted::new(&pki, None);
    c.send(record::APPLICATION_DATA, b"data").unwrap();
    let failure = c.send(record::ALERT, &[2, 40]).unwrap_err();
    assert_eq!(
        failure.cause,
        FailureCause::Rustls(Error::AlertReceived(AlertDescription::HandshakeFailure))
    );
    assert!(!failure.alert_queued);
    assert!(!c.server.wants_write());

    // user_canceled is tolerated a few times; other warnings are not.
    let mut c = Crafted::new(&pki, None);
    for _ in 0..4 {
        c.send(record::ALERT, &[1, 90]).unwrap();
    }
    assert_eq!(
        failure_cause(c.send(record::ALERT, &[1, 90])),
        Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyWarningAlertsReceived)
    );
    let mut c = Crafted::new(&pki, None);
    assert_eq!(
        failure_cause(c.send(record::ALERT, &[1, 42])),
        Error::AlertReceived(AlertDescription::BadCertificate)
    );
    assert_eq!(c.alert(), alert(AlertDescription::DecodeError));

    // Alerts are exactly two bytes.
    let mut c = Crafted::new(&pki, None);
    assert!(matches!(
        failure_cause(c.send(record::ALERT, &[1, 0, 0])),
        Error::InvalidMessage(_)
    ));
    assert_eq!(c.alert(), alert(AlertDescription::DecodeError));

    // close_notify: data before it is read, the rest is dropped, our answer still goes out.
    let mut c = Crafted::new(&pki, None);
    let mut wire = c.seal(record::APPLICATION_DATA, b"last");
    wire.extend(c.seal(record::ALERT, &[1, 0]));
    wire.extend(c.seal(record::APPLICATION_DATA, b"ignored"));
    feed(&mut c.server, &wire, &mut c.at_server).unwrap();
    assert!(c.server.peer_closed());
    assert_eq!(c.at_server, b"last");
    c.server.send_plaintext(b"answer");
    c.server.close_notify();
    assert_eq!(
        c.receive(),
        vec![
            Ok((record::APPLICATION_DATA, b"answer".to_vec())),
            Ok((record::ALERT, vec![1, 0])),
        ]
    );
}

#[test]
fn arbitrary_records_and_bytes_after_the_handshake_never_panic() {
    let pki = pki();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % bound.max(1)
    };
    let mut failures = 0;
    for case in 0..90 {
        let mut c = Crafted::new(&pki, None);
        let mut wire = Vec::new();
        for _ in 0..1 + next(4) {
            // Properly sealed records of any inner type and content...
            let content: Vec<u8> = (0..next(12)).map(|_| next(256) as u8).collect();
            let content_type = [0, 20, 21, 22, 23, 24, next(256)][next(7)] as u8;
            wire.extend(c.seal(content_type, &content));
        }
        match case % 3 {
            // ...some of their bytes flipped,
            0 => {
                for _ in 0..1 + next(3) {
                    let at = next(wire.len());
                    wire[at] ^= 1 << next(8);
                }
            }
            // ...cut short or followed by garbage,
            1 => {
                wire.truncate(next(wire.len() + 1));
                wire.extend((0..next(40)).map(|_| next(256) as u8));
            }
            // ...or as they are.
            _ => {}
        }
        let mut rest = &wire[..];
        let mut failed = false;
        while !rest.is_empty() {
            let piece = 1 + next(rest.len());
            match c.server.receive_ciphertext(&rest[..piece]) {
                Ok(n) => {
                    let mut buf = [0u8; 64];
                    while c.server.read_plaintext(&mut buf) > 0 {}
                    if n == 0 {
                        break;
                    }
                    rest = &rest[n..];
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let sent = c.receive();
        failures += usize::from(failed);
        if failed {
            // Dead: at most one alert went out, and nothing more comes in or out.
            assert!(sent.len() <= 1, "case {case}: {sent:?}");
            assert!(c.server.receive_ciphertext(b"x").is_err());
            assert_eq!(c.server.send_plaintext(b"x"), 0);
        }
    }
    // Both kinds of outcome were exercised.
    assert!((30..90).contains(&failures), "{failures} of 90 failed");
}
