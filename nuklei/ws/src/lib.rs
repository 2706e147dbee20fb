//! The ws nukleus: the protocol core of an RFC 6455 WebSocket server, sans I/O.
//!
//! Bytes in, events and bytes out; no sockets, threads or per-frame allocation, so the
//! nukleus can drive it straight from stream `DATA` payloads:
//!
//! * [`handshake`]: validate the upgrade request and write the `101` (or `400`/`426`) head.
//! * [`frame`]: the frame-header decoder and encoder, masking, control-frame encoders.
//! * [`session`]: the receive state machine that turns client bytes into [`Event`]s.
//! * [`utf8`]: incremental UTF-8 validation used for text messages.
//! * [`nukleus`]: [`WsNukleus`], the nukleus that drives all of the above between `http`
//!   and application nuklei, speaking the message-stream protocol of [`app`].
//!
//! # Driving a connection
//!
//! ```
//! use nukleus_ws::{encode_close, encode_header, encode_pong, handshake, Event, OpCode, Session};
//! use nukleus_ws::{MAX_CONTROL_FRAME_LEN, MAX_SERVER_HEADER_LEN};
//!
//! // 1. The http nukleus hands over the upgrade request (here as header pairs).
//! let headers: [(&str, &[u8]); 4] = [
//!     ("Upgrade", b"websocket"),
//!     ("Connection", b"Upgrade"),
//!     ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
//!     ("Sec-WebSocket-Version", b"13"),
//! ];
//! let mut reply = Vec::new();
//! match handshake::negotiate("GET", 1, headers, &["chat"]) {
//!     Ok(accepted) => handshake::write_response(&accepted, &mut reply),
//!     Err(error) => handshake::write_rejection(&error, &mut reply), // then close
//! }
//!
//! // 2. Each DATA payload from the client goes through the session, in place.
//! let mut session = Session::default();
//! let mut input = vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]; // masked text "hi"
//! let mut pos = 0;
//! let mut out = Vec::new();
//! loop {
//!     let (consumed, event) = session.receive(&mut input[pos..]);
//!     pos += consumed;
//!     let Some(event) = event else { break }; // all consumed: wait for the next DATA
//!     match event {
//!         Event::MessageStart(_kind) => {} // e.g. BEGIN/flags towards the application
//!         Event::MessageData(piece) => {
//!             // Echo each piece as it arrives, as its own frame (a real nukleus keeps the
//!             // message open with fin = false and continuation opcodes until MessageEnd).
//!             let mut head = [0u8; MAX_SERVER_HEADER_LEN];
//!             let n = encode_header(true, OpCode::Text, piece.len() as u64, &mut head);
//!             out.extend_from_slice(&head[..n]);
//!             out.extend_from_slice(piece);
//!         }
//!         Event::MessageEnd => {}
//!         Event::Ping(payload) => {
//!             let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
//!             let n = encode_pong(payload, &mut frame).expect("pings carry at most 125 bytes");
//!             out.extend_from_slice(&frame[..n]);
//!         }
//!         Event::Pong(_) => {}
//!         Event::Close { code, .. } => {
//!             // Echo the code (§5.5.1), then end the stream once the frame is written.
//!             let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
//!             let n = encode_close(code, "", &mut frame);
//!             out.extend_from_slice(&frame[..n]);
//!         }
//!         Event::Failed(failure) => {
//!             let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
//!             let n = encode_close(Some(failure.close_code()), failure.reason(), &mut frame);
//!             out.extend_from_slice(&frame[..n]);
//!         }
//!     }
//! }
//! assert_eq!(out, [0x81, 2, b'h', b'i']);
//! ```
//!
//! No extension is ever negotiated (permessage-deflate is declined), so RSV bits are always
//! a protocol error.

pub mod app;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod nukleus;
pub mod session;
pub mod utf8;

pub use error::{close_code, is_valid_close_code, Failure};
pub use frame::{
    apply_mask, encode_close, encode_header, encode_ping, encode_pong, ControlPayloadTooLong,
    FrameHeader, HeaderDecoder, OpCode, MAX_CONTROL_FRAME_LEN, MAX_CONTROL_PAYLOAD,
    MAX_SERVER_HEADER_LEN,
};
pub use handshake::{negotiate, write_rejection, write_response, Accepted, HandshakeError};
pub use nukleus::{Route, WsConfig, WsNukleus};
pub use session::{Config, Event, MessageKind, Session};
pub use utf8::{InvalidUtf8, Utf8Validator};
