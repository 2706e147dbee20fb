//! The ws nukleus: the protocol core of an RFC 6455 WebSocket server, sans I/O.
//!
//! Bytes in, events and bytes out; no sockets, threads or per-frame allocation, so the
//! nukleus can drive it straight from stream `DATA` payloads:
//!
//! * [`handshake`]: validate the upgrade request and write the `101` (or `400`/`426`) head.
//! * [`frame`]: the frame-header decoder and encoder, masking, control-frame encoders.
//! * [`session`]: the receive state machine that turns client bytes into [`Event`]s.
//! * [`utf8`]: incremental UTF-8 validation used for text messages.
//!
//! No extension is ever negotiated (permessage-deflate is declined), so RSV bits are always
//! a protocol error.

pub mod error;
pub mod frame;
pub mod handshake;
pub mod session;
pub mod utf8;

pub use error::{close_code, is_valid_close_code, Failure};
pub use frame::{
    apply_mask, encode_close, encode_header, encode_ping, encode_pong, ControlPayloadTooLong,
    FrameHeader, HeaderDecoder, OpCode, MAX_CONTROL_FRAME_LEN, MAX_CONTROL_PAYLOAD,
    MAX_SERVER_HEADER_LEN,
};
pub use handshake::{negotiate, write_rejection, write_response, Accepted, HandshakeError};
pub use session::{Config, Event, MessageKind, Session};
pub use utf8::{InvalidUtf8, Utf8Validator};
