//! The one response both floors (`epoll-floor`, `uring-floor`) send for every request head:
//! `200 Hello, World!`, its `Date` refreshed once a second, as the servers they stand beside.

use std::time::{Duration, SystemTime};

/// The response bytes, rebuilt when the second changes.
pub struct FloorResponse {
    second: u64,
    bytes: Vec<u8>,
}

impl FloorResponse {
    pub fn new() -> FloorResponse {
        let mut response = FloorResponse {
            second: u64::MAX,
            bytes: Vec::new(),
        };
        response.refresh();
        response
    }

    /// Rebuilds the bytes if the clock moved to another second since the last call.
    pub fn refresh(&mut self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now != self.second {
            self.second = now;
            let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(now));
            self.bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nDate: {date}\r\n\r\nHello, World!").into_bytes();
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
