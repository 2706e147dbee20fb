//! A TLS 1.3 server connection whose records tls protects itself once rustls has done the
//! handshake: sans I/O, like [`crate::TlsSession`] which drives it.
//!
//! rustls' `UnbufferedServerConnection` runs the handshake (and sends its NewSessionTickets)
//! over [`Tls13::rx`] and [`Tls13::raw_out`]; when it reports `WriteTraffic` — handshake
//! done, nothing left to send, no complete record left unread — the connection is handed
//! over (`dangerous_into_kernel_connection`): the traffic keys and sequence numbers go to
//! [`record::Keys`], and rustls keeps only a `KernelConnection`, which derives the next
//! secrets on a KeyUpdate. From then on:
//!
//! * records are opened in place in `rx` (the one copy is tcp's DATA into `rx`), their
//!   plaintext handed out by [`Tls13::read`] straight from there;
//! * plaintext from [`Tls13::send`] is sealed in place in the caller's buffer by
//!   [`Tls13::write`] (the claimed frame of tcp's ring), at most 2^14 bytes per record;
//! * this module owns what rustls did for those records: the inner content type and
//!   padding, close_notify both ways, alerts (a fatal one received ends the connection; a
//!   failure here sends the fatal alert RFC 8446 names, then nothing else), post-handshake
//!   handshake messages (KeyUpdate: the receive key is updated, and `update_requested` is
//!   answered by our own KeyUpdate before any more data, then the send key is updated; any
//!   other message is `unexpected_message`), the AEAD's confidentiality limit (our own
//!   KeyUpdate before the send key protects that many records), at most 32 KeyUpdate
//!   requests between two application data records and 4 warning alerts (rustls' and
//!   BoringSSL's limits), and refusal of oversized or garbled records.

use std::collections::VecDeque;
use std::ops::Range;

use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{
    AlertDescription, ContentType, Error, HandshakeType, InvalidMessage, PeerMisbehaved,
    ProtocolVersion, SupportedCipherSuite,
};
use rustls_pki_types::CertificateDer;

use crate::record::{self, Keys, RecordError, HEADER_LEN, MAX_FRAGMENT, OVERHEAD};

const KEY_UPDATE: u8 = 24;
const KEY_UPDATE_REQUESTS: u8 = 32;
const WARNING_ALERTS: u8 = 4;
/// A KeyUpdate record's content: type, 24-bit length 1, `update_not_requested`.
const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [KEY_UPDATE, 0, 0, 1, 0];
/// Shrink the input buffer back when it is empty and larger than this.
const KEEP_CAPACITY: usize = 2 * (HEADER_LEN + record::MAX_CIPHERTEXT);

// The keys stay inline (they are used for every record); the whole `Tls13` is boxed.
#[allow(clippy::large_enum_variant)]
enum Stage {
    Handshaking(Box<UnbufferedServerConnection>),
    Traffic {
        kernel: Box<KernelConnection<ServerConnectionData>>,
        rx: Keys,
        tx: Keys,
    },
    /// Between the two, or after the hand-over failed.
    Gone,
}

pub(crate) struct Tls13 {
    stage: Stage,
    /// Ciphertext received: handshake records for rustls, then records opened here in place.
    rx: Vec<u8>,
    /// During the handshake, how much of `rx` rustls has been given: whole records, one at a
    /// time, and none after the one that completed the handshake, so that rustls never
    /// processes a record of the traffic phase (a KeyUpdate it answered then would be lost at
    /// the hand-over: rustls 0.23.46 keeps its answer outside the buffer the hand-over checks).
    fed: usize,
    /// Where the first record not yet opened starts in `rx`.
    rx_open: usize,
    /// Plaintext in `rx` waiting for `read`, in order.
    ranges: VecDeque<Range<usize>>,
    /// Application data rustls decrypted before the hand-over; read before `ranges`.
    early: Vec<u8>,
    early_read: usize,
    /// Plaintext bytes waiting for `read` (`early` and `ranges`).
    available: usize,
    /// A handshake message arriving in fragments (at most a KeyUpdate's 5 bytes).
    hs_fragment: Vec<u8>,
    /// rustls' handshake flight and alerts, sent as they are.
    raw_out: Vec<u8>,
    raw_sent: usize,
    /// Plaintext to seal.
    tx_plain: Vec<u8>,
    tx_sent: usize,
    limit: usize,
    /// Send a KeyUpdate (update_not_requested) before the next record, then update the key.
    key_update_due: bool,
    /// The send key protects at most this many records before we update it.
    tx_record_limit: u64,
    close_requested: bool,
    close_sent: bool,
    /// A fatal alert to seal; nothing follows it.
    alert_due: Option<AlertDescription>,
    peer_closed: bool,
    failed: bool,
    key_update_requests_left: u8,
    warning_alerts_left: u8,
    alpn: Option<Vec<u8>>,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
}

/// What one step of rustls' handshake asked for.
enum Step {
    Again,
    Blocked,
    HandOver,
    Failed(Error),
}

impl Tls13 {
    /// Starts rustls' handshake over `hello` (the bytes the Acceptor read: the ClientHello and
    /// whatever came after it).
    pub(crate) fn new(conn: UnbufferedServerConnection, limit: usize, hello: &[u8]) -> Self {
        Tls13 {
            stage: Stage::Handshaking(Box::new(conn)),
            rx: hello.to_vec(),
            fed: 0,
            rx_open: 0,
            ranges: VecDeque::new(),
            early: Vec::new(),
            early_read: 0,
            available: 0,
            hs_fragment: Vec::new(),
            raw_out: Vec::new(),
            raw_sent: 0,
            tx_plain: Vec::new(),
            tx_sent: 0,
            limit,
            key_update_due: false,
            tx_record_limit: u64::MAX,
            close_requested: false,
            close_sent: false,
            alert_due: None,
            peer_closed: false,
            failed: false,
            key_update_requests_left: KEY_UPDATE_REQUESTS,
            warning_alerts_left: WARNING_ALERTS,
            alpn: None,
            peer_certificates: None,
        }
    }

    /// Runs the handshake over what `rx` holds; call once after [`Tls13::new`].
    pub(crate) fn start(&mut self) -> Result<(), Error> {
        self.drive()
    }

    /// rustls chose TLS 1.2 for this client: the session goes back to rustls' own records.
    pub(crate) fn negotiated_tls12(&self) -> bool {
        matches!(&self.stage, Stage::Handshaking(conn) if conn.protocol_version() == Some(ProtocolVersion::TLSv1_2))
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self.stage, Stage::Handshaking(_))
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.stage {
            Stage::Handshaking(conn) => conn.alpn_protocol(),
            _ => self.alpn.as_deref(),
        }
    }

    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer_certificates.as_deref()
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    pub(crate) fn available(&self) -> usize {
        self.available
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn set_tx_record_limit(&mut self, records: u64) {
        self.tx_record_limit = self.tx_record_limit.min(records);
    }

    /// Takes ciphertext; returns how much was consumed (less once `limit` bytes of plaintext
    /// wait to be read). After the peer's close_notify everything is consumed and dropped.
    pub(crate) fn receive(&mut self, input: &[u8]) -> Result<usize, Error> {
        if self.peer_closed {
            return Ok(input.len());
        }
        if matches!(self.stage, Stage::Handshaking(_)) {
            self.rx.extend_from_slice(input);
            self.drive()?;
            if matches!(self.stage, Stage::Traffic { .. }) {
                self.open_records()?;
            }
            return Ok(input.len());
        }
        self.compact();
        let mut consumed = 0;
        loop {
            self.open_records()?;
            if self.peer_closed {
                return Ok(input.len());
            }
            if consumed == input.len() || self.available >= self.limit {
                return Ok(consumed);
            }
            // Take exactly what completes the next record (its header first).
            let have = self.rx.len() - self.rx_open;
            let want = match record::record_length(&self.rx[self.rx_open..]) {
                Ok(Some(total)) => total - have,
                Ok(None) => HEADER_LEN - have,
                Err(e) => return Err(self.record_failure(e)),
            };
            let n = want.min(input.len() - consumed);
            self.rx.extend_from_slice(&input[consumed..consumed + n]);
            consumed += n;
        }
    }

    /// Copies waiting plaintext into `out`; returns how many bytes.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = drain_pending(&mut self.early, &mut self.early_read, out);
        while n < out.len() {
            let Some(range) = self.ranges.front_mut() else {
                break;
            };
            let take = range.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&self.rx[range.start..][..take]);
            range.start += take;
            n += take;
            if range.start == range.end {
                self.ranges.pop_front();
            }
        }
        self.available -= n;
        if self.ranges.is_empty() {
            self.compact();
        }
        n
    }

    /// Queues plaintext to seal; returns how much was taken (up to `limit` waiting).
    pub(crate) fn send(&mut self, data: &[u8]) -> usize {
        if self.failed || self.close_requested {
            return 0;
        }
        let waiting = self.tx_plain.len() - self.tx_sent;
        let n = data.len().min(self.limit.saturating_sub(waiting));
        if n > 0 {
            if self.tx_sent == self.tx_plain.len() {
                self.tx_plain.clear();
                self.tx_sent = 0;
            }
            self.tx_plain.extend_from_slice(&data[..n]);
        }
        n
    }

    pub(crate) fn close_notify(&mut self) {
        self.close_requested = true;
    }

    pub(crate) fn wants_write(&self) -> bool {
        if self.raw_sent < self.raw_out.len() || self.alert_due.is_some() {
            return true;
        }
        if self.failed || !matches!(self.stage, Stage::Traffic { .. }) {
            return false;
        }
        self.key_update_due
            || self.tx_sent < self.tx_plain.len()
            || (self.close_requested && !self.close_sent)
    }

    /// Writes what is due into `out` — rustls' handshake bytes, then records sealed in place
    /// — and returns how many bytes. A record is never split: when the next one does not
    /// fit, it waits for the next call.
    pub(crate) fn write(&mut self, out: &mut [u8]) -> usize {
        let mut w = drain_pending(&mut self.raw_out, &mut self.raw_sent, out);
        if !self.raw_out.is_empty() {
            return w; // rustls' bytes go out first, whole
        }
        let Stage::Traffic { kernel, tx, .. } = &mut self.stage else {
            return w;
        };
        if let Some(alert) = self.alert_due {
            if out.len() - w >= 2 + OVERHEAD {
                out[w + HEADER_LEN..][..2].copy_from_slice(&[2, u8::from(alert)]);
                if let Ok(n) = record::seal(tx, record::ALERT, &mut out[w..], 2) {
                    w += n;
                }
                self.alert_due = None;
            }
            return w;
        }
        if self.failed {
            return w;
        }
        loop {
            let room = out.len() - w;
            if self.key_update_due {
                let content = KEY_UPDATE_NOT_REQUESTED.len();
                if room < content + OVERHEAD {
                    break;
                }
                out[w + HEADER_LEN..][..content].copy_from_slice(&KEY_UPDATE_NOT_REQUESTED);
                let sealed = record::seal(tx, record::HANDSHAKE, &mut out[w..], content);
                let next = kernel.update_tx_secret();
                match (sealed, next) {
                    (Ok(n), Ok((seq, secrets))) => match Keys::new(&secrets, seq) {
                        Some(keys) => {
                            *tx = keys;
                            w += n;
                            self.key_update_due = false;
                        }
                        None => {
                            self.failed = true;
                            break;
                        }
                    },
                    _ => {
                        self.failed = true;
                        break;
                    }
                }
                continue;
            }
            let waiting = self.tx_plain.len() - self.tx_sent;
            if waiting > 0 {
                if tx.sequence().saturating_add(1) >= self.tx_record_limit {
                    self.key_update_due = true;
                    continue;
                }
                if room < OVERHEAD + 1 {
                    break;
                }
                let n = waiting.min(room - OVERHEAD).min(MAX_FRAGMENT);
                out[w + HEADER_LEN..][..n].copy_from_slice(&self.tx_plain[self.tx_sent..][..n]);
                match record::seal(tx, record::APPLICATION_DATA, &mut out[w..], n) {
                    Ok(sealed) => w += sealed,
                    Err(_) => {
                        self.failed = true;
                        break;
                    }
                }
                self.tx_sent += n;
                continue;
            }
            if self.close_requested && !self.close_sent && room >= 2 + OVERHEAD {
                out[w + HEADER_LEN..][..2].copy_from_slice(&[1, 0]);
                if let Ok(n) = record::seal(tx, record::ALERT, &mut out[w..], 2) {
                    w += n;
                }
                self.close_sent = true;
            }
            break;
        }
        if self.tx_sent == self.tx_plain.len() && self.tx_sent > 0 {
            self.tx_plain.clear();
            self.tx_sent = 0;
            if self.tx_plain.capacity() > KEEP_CAPACITY {
                // A large response went out: an idle connection keeps no large buffer.
                self.tx_plain = Vec::new();
            }
        }
        w
    }

    // ----- the handshake, by rustls ----------------------------------------------------------

    /// Runs rustls until it needs more input or the handshake is over (then hands over).
    fn drive(&mut self) -> Result<(), Error> {
        loop {
            let Stage::Handshaking(conn) = &mut self.stage else {
                return Ok(());
            };
            let next = step(
                conn,
                &mut self.rx,
                &mut self.fed,
                &mut self.raw_out,
                &mut self.early,
                &mut self.peer_closed,
            );
            match next {
                Step::Again => {}
                Step::Blocked => {
                    if conn.is_handshaking() {
                        if let Some(end) = next_record_end(&self.rx, self.fed) {
                            self.fed = end;
                            continue;
                        }
                    }
                    return Ok(());
                }
                Step::HandOver => return self.hand_over(),
                Step::Failed(error) => {
                    // rustls queued its alert: encode it for `write`.
                    // (Same input buffer: rustls' deframer remembers positions in it.)
                    while let Step::Again = step(
                        conn,
                        &mut self.rx,
                        &mut self.fed,
                        &mut self.raw_out,
                        &mut Vec::new(),
                        &mut false,
                    ) {}
                    self.failed = true;
                    self.tx_plain = Vec::new();
                    return Err(error);
                }
            }
        }
    }

    fn hand_over(&mut self) -> Result<(), Error> {
        let Stage::Handshaking(conn) = std::mem::replace(&mut self.stage, Stage::Gone) else {
            return Ok(());
        };
        self.available = self.early.len() - self.early_read;
        let version = conn.protocol_version();
        let limit = match conn.negotiated_cipher_suite() {
            Some(SupportedCipherSuite::Tls13(suite)) => suite.common.confidentiality_limit,
            _ => 0,
        };
        if self.fed != 0 {
            // rustls holds part of a handshake message it was given: nothing is left to
            // finish it (clients send none after their Finished in the same flight).
            self.failed = true;
            self.alert_due = None;
            return Err(Error::PeerMisbehaved(
                PeerMisbehaved::KeyEpochWithPendingFragment,
            ));
        }
        if version != Some(ProtocolVersion::TLSv1_3) || limit == 0 {
            self.failed = true;
            return Err(Error::General(format!(
                "handshake ended in {version:?}: only TLS 1.3 records are protected here"
            )));
        }
        self.alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        self.peer_certificates = conn
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
        let (secrets, kernel) = match conn.dangerous_into_kernel_connection() {
            Ok(taken) => taken,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let (Some(rx), Some(tx)) = (
            Keys::new(&secrets.rx.1, secrets.rx.0),
            Keys::new(&secrets.tx.1, secrets.tx.0),
        ) else {
            self.failed = true;
            return Err(Error::General("unsupported TLS 1.3 AEAD".into()));
        };
        self.tx_record_limit = self.tx_record_limit.min(limit);
        self.stage = Stage::Traffic {
            kernel: Box::new(kernel),
            rx,
            tx,
        };
        if self.peer_closed {
            // rustls stopped reading at the close_notify: what follows is dropped.
            self.rx.clear();
        }
        Ok(())
    }

    // ----- records after the hand-over -------------------------------------------------------

    /// Opens every complete record in `rx` in place and acts on it.
    fn open_records(&mut self) -> Result<(), Error> {
        while !self.peer_closed && !self.failed {
            let Stage::Traffic { rx: keys, .. } = &mut self.stage else {
                return Ok(());
            };
            let total = match record::record_length(&self.rx[self.rx_open..]) {
                Ok(Some(total)) if self.rx.len() - self.rx_open >= total => total,
                Ok(_) => return Ok(()),
                Err(e) => return Err(self.record_failure(e)),
            };
            let start = self.rx_open;
            let opened = record::open(keys, &mut self.rx[start..start + total]);
            self.rx_open += total;
            match opened {
                Ok((content_type, range)) => {
                    let range = start + range.start..start + range.end;
                    self.on_record(content_type, range)?;
                }
                Err(e) => return Err(self.record_failure(e)),
            }
        }
        Ok(())
    }

    fn on_record(&mut self, content_type: u8, range: Range<usize>) -> Result<(), Error> {
        if content_type != record::HANDSHAKE && !self.hs_fragment.is_empty() {
            // A handshake message split over records may not be interleaved with others.
            return Err(self.fail(
                AlertDescription::UnexpectedMessage,
                Error::InappropriateMessage {
                    expect_types: vec![ContentType::Handshake],
                    got_type: ContentType::from(content_type),
                },
            ));
        }
        match content_type {
            record::APPLICATION_DATA => {
                self.key_update_requests_left = KEY_UPDATE_REQUESTS;
                if !range.is_empty() {
                    self.available += range.len();
                    self.ranges.push_back(range);
                }
                Ok(())
            }
            record::ALERT => self.on_alert(range),
            record::HANDSHAKE => self.on_handshake(range),
            other => Err(self.fail(
                AlertDescription::UnexpectedMessage,
                Error::InappropriateMessage {
                    expect_types: vec![ContentType::ApplicationData],
                    got_type: ContentType::from(other),
                },
            )),
        }
    }

    fn on_alert(&mut self, range: Range<usize>) -> Result<(), Error> {
        // TLS 1.3 alerts are never fragmented nor coalesced: exactly two bytes.
        if range.len() != 2 {
            let error = Error::InvalidMessage(if range.is_empty() {
                InvalidMessage::InvalidEmptyPayload
            } else {
                InvalidMessage::TrailingData("alert")
            });
            return Err(self.fail(AlertDescription::DecodeError, error));
        }
        let (level, description) = (self.rx[range.start], self.rx[range.start + 1]);
        let description = AlertDescription::from(description);
        if level != 1 && level != 2 {
            return Err(self.fail(
                AlertDescription::IllegalParameter,
                Error::AlertReceived(description),
            ));
        }
        if description == AlertDescription::CloseNotify {
            self.peer_closed = true;
            return Ok(());
        }
        if level == 1 {
            if self.warning_alerts_left == 0 {
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    Error::PeerMisbehaved(PeerMisbehaved::TooManyWarningAlertsReceived),
                ));
            }
            self.warning_alerts_left -= 1;
            if description == AlertDescription::UserCanceled {
                return Ok(());
            }
            // Warnings other than these two are outlawed in TLS 1.3 (as rustls does).
            return Err(self.fail(
                AlertDescription::DecodeError,
                Error::AlertReceived(description),
            ));
        }
        // A fatal alert from the peer: nothing is sent back.
        self.failed = true;
        self.tx_plain = Vec::new();
        Err(Error::AlertReceived(description))
    }

    fn on_handshake(&mut self, range: Range<usize>) -> Result<(), Error> {
        if range.is_empty() {
            return Err(self.fail(
                AlertDescription::DecodeError,
                Error::InvalidMessage(InvalidMessage::InvalidEmptyPayload),
            ));
        }
        let mut bytes = range;
        while !bytes.is_empty() {
            // Only KeyUpdate (5 bytes) is accepted, so no more than 5 bytes are ever joined.
            let take = (KEY_UPDATE_NOT_REQUESTED.len() - self.hs_fragment.len()).min(bytes.len());
            self.hs_fragment
                .extend_from_slice(&self.rx[bytes.start..bytes.start + take]);
            bytes.start += take;
            let message = &self.hs_fragment;
            if message[0] != KEY_UPDATE {
                let got = HandshakeType::from(message[0]);
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    Error::InappropriateHandshakeMessage {
                        expect_types: vec![HandshakeType::KeyUpdate],
                        got_type: got,
                    },
                ));
            }
            if message.len() >= 4 && message[1..4] != [0, 0, 1] {
                return Err(self.fail(
                    AlertDescription::DecodeError,
                    Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                ));
            }
            if message.len() < KEY_UPDATE_NOT_REQUESTED.len() {
                continue; // the rest is in the next record
            }
            let request = message[4];
            self.hs_fragment.clear();
            if !bytes.is_empty() {
                // The next message would be under the old key: a KeyUpdate ends its record.
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    Error::PeerMisbehaved(PeerMisbehaved::KeyEpochWithPendingFragment),
                ));
            }
            self.on_key_update(request)?;
        }
        Ok(())
    }

    fn on_key_update(&mut self, request: u8) -> Result<(), Error> {
        if self.key_update_requests_left == 0 {
            return Err(self.fail(
                AlertDescription::UnexpectedMessage,
                Error::PeerMisbehaved(PeerMisbehaved::TooManyKeyUpdateRequests),
            ));
        }
        self.key_update_requests_left -= 1;
        match request {
            0 => {}
            // Answered once however many arrive while we are silent (RFC 8446 §4.6.3).
            1 => self.key_update_due = !self.close_sent,
            _ => {
                return Err(self.fail(
                    AlertDescription::IllegalParameter,
                    Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                ))
            }
        }
        let Stage::Traffic { kernel, rx, .. } = &mut self.stage else {
            return Ok(());
        };
        match kernel.update_rx_secret() {
            Ok((seq, secrets)) => match Keys::new(&secrets, seq) {
                Some(keys) => {
                    *rx = keys;
                    Ok(())
                }
                None => Err(self.fail(
                    AlertDescription::InternalError,
                    Error::General("unsupported TLS 1.3 AEAD".into()),
                )),
            },
            Err(e) => Err(self.fail(AlertDescription::InternalError, e)),
        }
    }

    fn record_failure(&mut self, e: RecordError) -> Error {
        self.fail(e.alert(), e.rustls_error())
    }

    /// Ends the connection: `alert` is the last thing sent, nothing is read any more.
    fn fail(&mut self, alert: AlertDescription, error: Error) -> Error {
        self.failed = true;
        self.alert_due = Some(alert);
        self.key_update_due = false;
        self.tx_plain = Vec::new();
        self.tx_sent = 0;
        error
    }

    /// Drops opened bytes from the front of `rx` once their plaintext has been read.
    fn compact(&mut self) {
        if !self.ranges.is_empty() || self.rx_open == 0 {
            return;
        }
        self.rx.drain(..self.rx_open);
        self.rx_open = 0;
        if self.rx.is_empty() && self.rx.capacity() > KEEP_CAPACITY {
            self.rx = Vec::new();
        }
    }
}

/// One call of rustls' unbuffered state machine over `rx` (what it has read is dropped from
/// the front); handshake bytes to send go to `out`, application data it decrypted to `early`.
/// Where the record after `rx[..fed]` ends, once it is all there; all of `rx` if its header
/// announces more than any TLS record holds (rustls refuses it then).
fn next_record_end(rx: &[u8], fed: usize) -> Option<usize> {
    let header = rx.get(fed..fed + HEADER_LEN)?;
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    if len > record::MAX_CIPHERTEXT + 2048 {
        return Some(rx.len());
    }
    let end = fed + HEADER_LEN + len;
    (end <= rx.len()).then_some(end)
}

fn step(
    conn: &mut UnbufferedServerConnection,
    rx: &mut Vec<u8>,
    fed: &mut usize,
    out: &mut Vec<u8>,
    early: &mut Vec<u8>,
    peer_closed: &mut bool,
) -> Step {
    let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut rx[..*fed]);
    let step = match state {
        Err(error) => Step::Failed(error),
        Ok(ConnectionState::EncodeTlsData(mut encode)) => {
            let start = out.len();
            let mut size = 4096;
            loop {
                out.resize(start + size, 0);
                match encode.encode(&mut out[start..]) {
                    Ok(n) => {
                        out.truncate(start + n);
                        break Step::Again;
                    }
                    Err(EncodeError::InsufficientSize(e)) => size = e.required_size,
                    Err(e) => {
                        out.truncate(start);
                        break Step::Failed(Error::General(e.to_string()));
                    }
                }
            }
        }
        // Transmitted by the caller's next `write`.
        Ok(ConnectionState::TransmitTlsData(transmit)) => {
            transmit.done();
            Step::Again
        }
        Ok(ConnectionState::ReadTraffic(mut traffic)) => {
            let mut step = Step::Again;
            while let Some(record) = traffic.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        early.extend_from_slice(record.payload);
                    }
                    Err(e) => {
                        step = Step::Failed(e);
                        break;
                    }
                }
            }
            step
        }
        Ok(ConnectionState::ReadEarlyData(mut data)) => {
            // Not enabled in our configs; drained so the handshake can go on.
            while let Some(Ok(record)) = data.next_record() {
                discard += record.discard;
            }
            Step::Again
        }
        Ok(ConnectionState::PeerClosed) => {
            *peer_closed = true;
            Step::Again
        }
        Ok(ConnectionState::WriteTraffic(_)) => Step::HandOver,
        Ok(_) => Step::Blocked,
    };
    rx.drain(..discard);
    *fed -= discard;
    step
}

/// Copies what is left of `pending` after `*sent` into `out` (as much as fits) and advances
/// `*sent`; once all of it is out, frees it and starts the count again. Returns the bytes
/// copied (0 when nothing is pending).
fn drain_pending(pending: &mut Vec<u8>, sent: &mut usize, out: &mut [u8]) -> usize {
    let n = (pending.len() - *sent).min(out.len());
    out[..n].copy_from_slice(&pending[*sent..][..n]);
    *sent += n;
    if n > 0 && *sent == pending.len() {
        *pending = Vec::new();
        *sent = 0;
    }
    n
}

#[cfg(test)]
mod tests;
