//! How log lines name the client of a connection.

use std::fmt;
use std::net::SocketAddr;

/// A connection's remote address for log lines: `127.0.0.1:50312`, or `unknown` where the
/// network nukleus did not say (a scripted peer in a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote(pub Option<SocketAddr>);

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_addresses_print_as_they_are() {
        let address: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(Remote(Some(address)).to_string(), "[::1]:8080");
        assert_eq!(Remote(None).to_string(), "unknown");
    }
}
