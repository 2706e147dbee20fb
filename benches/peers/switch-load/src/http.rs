//! Pipelined HTTP/1.1 responses.

use crate::*;

/// A complete response at the front of `c`'s buffer: (status, body start, total length).
pub(crate) fn http_next(c: &Conn) -> Option<(u16, usize, usize)> {
    let d = c.data();
    let head_end = find(d, b"\r\n\r\n")? + 4;
    let head = &d[..head_end];
    let status = parse_dec(&head[9..12]) as u16;
    let mut len = 0usize;
    for line in head.split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let v = line[15..]
                .iter()
                .filter(|b| b.is_ascii_digit())
                .copied()
                .collect::<Vec<u8>>();
            len = parse_dec(&v) as usize;
        }
    }
    (d.len() >= head_end + len).then_some((status, head_end, head_end + len))
}
