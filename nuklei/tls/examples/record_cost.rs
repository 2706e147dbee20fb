//! Server-side cost of TLS 1.3 records per keep-alive exchange, rustls' records against
//! tls's own (`tls13.rs`), in one process and one build: a rustls client sends an 80-byte
//! request, the `TlsSession` takes it in and reads it out, queues a 150-byte response and
//! writes its record into a buffer, the client reads it. Only the session's calls are timed.
//! The two record layers differ by one flag of the same `ServerConfig`
//! (`enable_secret_extraction`: off = rustls protects the records).
//!
//! `cargo run --release -p nukleus-tls --features testing --example record_cost [exchanges]
//! [both|rustls|own] [rounds]` (defaults 200000, both, 3). For instruction counts, run one
//! mode under callgrind with `--toggle-collect='*TlsSession*'` for N exchanges and for 0, and
//! divide the difference by N (the handshake is counted in both).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nukleus_tls::rustls::{self, ClientConnection, ServerConfig};
use nukleus_tls::testing::{ClientCert, TestPki};
use nukleus_tls::{TlsSession, TlsVersion, DEFAULT_BUFFER_LIMIT};

fn run(
    server: Arc<ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    exchanges: usize,
) -> (Duration, bool) {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client, name).unwrap();
    let mut session = TlsSession::new(server, DEFAULT_BUFFER_LIMIT);
    let mut wire = Vec::new();
    let mut out = vec![0u8; 64 * 1024];
    let mut plain = vec![0u8; 16 * 1024];
    // Handshake.
    for _ in 0..10 {
        wire.clear();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        session.receive_ciphertext(&wire).unwrap();
        let n = session.write_ciphertext(&mut out);
        let mut rest = &out[..n];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && !session.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    let own = session.own_records();
    let request = [b'r'; 80];
    let response = [b's'; 150];
    let mut spent = Duration::ZERO;
    for _ in 0..exchanges {
        client.writer().write_all(&request).unwrap();
        wire.clear();
        client.write_tls(&mut wire).unwrap();
        let start = Instant::now();
        let used = session.receive_ciphertext(&wire).unwrap();
        let got = session.read_plaintext(&mut plain);
        let taken = session.send_plaintext(&response);
        let n = session.write_ciphertext(&mut out);
        spent += start.elapsed();
        assert!(used == wire.len() && got == request.len() && taken == response.len());
        let mut rest = &out[..n];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
        }
        let state = client.process_new_packets().unwrap();
        assert_eq!(state.plaintext_bytes_to_read(), response.len());
        client
            .reader()
            .read_exact(&mut plain[..response.len()])
            .unwrap();
    }
    (spent, own)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exchanges: usize = args.get(1).map_or(200_000, |a| a.parse().unwrap());
    let mode = args.get(2).map_or("both", String::as_str);
    let rounds: usize = args.get(3).map_or(3, |a| a.parse().unwrap());
    let pki = TestPki::generate().unwrap();
    let own = pki.server_settings().server_config().unwrap();
    let mut plain = (*own).clone();
    plain.enable_secret_extraction = false;
    let rustls_records = Arc::new(plain);
    let client = Arc::new(
        pki.client_config(ClientCert::None, &[TlsVersion::Tls13])
            .unwrap(),
    );
    for round in 1..=rounds {
        for (name, config) in [("rustls records", &rustls_records), ("own records", &own)] {
            if mode != "both" && !name.starts_with(mode) {
                continue;
            }
            let (spent, is_own) = run(config.clone(), client.clone(), exchanges);
            assert_eq!(is_own, name == "own records");
            println!(
                "round {round}: {name:>14}: {:.0} ns per exchange (server side, {exchanges} exchanges)",
                spent.as_nanos() as f64 / exchanges.max(1) as f64
            );
        }
    }
}
