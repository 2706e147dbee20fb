//! Writing HTTP/1.1 response heads, and the error responses http produces on its own.

use std::time::{Duration, Instant, SystemTime};

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The `Date` header value, re-formatted at most every 250 ms using the core loop's clock
/// (reading the system clock per response was a visible cost).
pub struct DateCache {
    value: [u8; 29],
    /// When the value is due to be formatted again (an `Instant` comparison per poll is
    /// cheaper than the duration since the last formatting).
    due: Option<Instant>,
}

/// How long a formatted `Date` is reused.
const DATE_REUSE: Duration = Duration::from_millis(250);

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            value: [b' '; 29],
            due: None,
        }
    }
}

impl DateCache {
    /// Re-formats the value if it is older than 250 ms; returns whether the text changed.
    pub fn refresh(&mut self, now: Instant) -> bool {
        if self.due.is_some_and(|due| now < due) {
            return false;
        }
        self.due = Some(now + DATE_REUSE);
        let text = httpdate::fmt_http_date(SystemTime::now());
        if text.len() != 29 || text.as_bytes() == self.value {
            return false;
        }
        self.value.copy_from_slice(text.as_bytes());
        true
    }

    pub fn value(&self) -> &[u8; 29] {
        &self.value
    }
}

/// Appends `HTTP/1.1 <status> <reason>\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    if status == 200 {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A complete error response with a short plain-text reason, closing the connection.
pub fn error_response(out: &mut Vec<u8>, status: u16, reason: &str, date: &[u8]) {
    status_line(out, status);
    header(out, b"Date", date);
    header(out, b"Content-Type", b"text/plain; charset=utf-8");
    let mut buffer = itoa::Buffer::new();
    header(
        out,
        b"Content-Length",
        buffer.format(reason.len() + 1).as_bytes(),
    );
    header(out, b"Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_formatted_again_only_after_250_ms() {
        let mut date = DateCache::default();
        let start = Instant::now();
        assert!(date.refresh(start), "the first refresh formats");
        let first = *date.value();
        assert!(first.ends_with(b" GMT"));
        assert!(!date.refresh(start));
        assert!(!date.refresh(start + Duration::from_millis(249)));
        // An earlier clock (another core's) is not a reason to format.
        assert!(!date.refresh(start - Duration::from_millis(10)));
        assert_eq!(*date.value(), first);
        // Due again: formatted (the text changes only if the second did).
        date.refresh(start + DATE_REUSE);
        assert_eq!(date.due, Some(start + DATE_REUSE + DATE_REUSE));
        assert!(!date.refresh(start + DATE_REUSE + Duration::from_millis(249)));
    }
}
