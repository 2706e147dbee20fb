//! Protocol failures of an established connection and the close codes they map to.

/// Close status codes used by the server (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether a close code may appear on the wire (RFC 6455 §7.4 and the IANA registry).
///
/// 1004 is reserved, 1005/1006/1015 are for local reporting only, 1016–2999 are unassigned
/// protocol codes, 3000–4999 are for libraries and applications.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why the server fails the connection. Each maps to the close code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("client frame is not masked")]
    UnmaskedFrame,
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("close frame payload of one byte")]
    CloseBodyTooShort,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("frame too big")]
    FrameTooBig,
    #[error("message too big")]
    MessageTooBig,
}

impl Failure {
    /// The close code to send when failing the connection for this reason.
    pub fn close_code(&self) -> u16 {
        match self {
            Failure::InvalidUtf8 | Failure::InvalidCloseReason => close_code::INVALID_PAYLOAD,
            Failure::FrameTooBig | Failure::MessageTooBig => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame (static, so failing allocates nothing).
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::UnmaskedFrame => "client frame is not masked",
            Failure::ReservedBits => "reserved bits set",
            Failure::ReservedOpcode(_) => "reserved opcode",
            Failure::ControlFrameTooLong => "control frame too long",
            Failure::FragmentedControlFrame => "fragmented control frame",
            Failure::LengthOverflow => "invalid payload length",
            Failure::UnexpectedContinuation => "unexpected continuation frame",
            Failure::ExpectedContinuation => "expected continuation frame",
            Failure::CloseBodyTooShort => "close payload of one byte",
            Failure::InvalidCloseCode(_) => "invalid close code",
            Failure::InvalidCloseReason => "close reason is not valid UTF-8",
            Failure::InvalidUtf8 => "invalid UTF-8 in text message",
            Failure::FrameTooBig => "frame too big",
            Failure::MessageTooBig => "message too big",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_valid_on_the_wire_follow_the_iana_registry() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_close_code(c)).collect();
        let mut expected: Vec<u16> = vec![1000, 1001, 1002, 1003];
        expected.extend(1007..=1014);
        expected.extend(3000..=4999);
        assert_eq!(valid, expected);
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!is_valid_close_code(reserved), "{reserved}");
        }
    }

    #[test]
    fn utf8_failures_close_with_1007_size_failures_with_1009_others_with_1002() {
        assert_eq!(Failure::InvalidUtf8.close_code(), 1007);
        assert_eq!(Failure::InvalidCloseReason.close_code(), 1007);
        assert_eq!(Failure::FrameTooBig.close_code(), 1009);
        assert_eq!(Failure::MessageTooBig.close_code(), 1009);
        assert_eq!(Failure::MessageTooBig.reason(), "message too big");
        assert_eq!(Failure::InvalidCloseCode(5).close_code(), 1002);
        assert_eq!(Failure::CloseBodyTooShort.close_code(), 1002);
    }

    #[test]
    fn failure_reasons_fit_a_close_frame() {
        let all = [
            Failure::UnmaskedFrame,
            Failure::ReservedBits,
            Failure::ReservedOpcode(3),
            Failure::ControlFrameTooLong,
            Failure::FragmentedControlFrame,
            Failure::LengthOverflow,
            Failure::UnexpectedContinuation,
            Failure::ExpectedContinuation,
            Failure::CloseBodyTooShort,
            Failure::InvalidCloseCode(0),
            Failure::InvalidCloseReason,
            Failure::InvalidUtf8,
            Failure::FrameTooBig,
            Failure::MessageTooBig,
        ];
        for f in all {
            assert!(f.reason().len() <= 123);
            assert!(is_valid_close_code(f.close_code()));
        }
    }
}
