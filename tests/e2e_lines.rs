//! The README's worked example of adding a kind, built and run: the `lines` kind (crate
//! `nuklei/lines`, file `reaktor/src/kinds/lines.rs`, one registry line) behind tcp, served by
//! the real binary to a real TCP client.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Server;

const TOPOLOGY: &str = r#"
[reaktor]
pin = false

[[listener]]
name = "lines"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "lines"]

[[core]]
nuklei = ["tcp", "lines"]

[lines]
max_line = 64
"#;

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn every_line_comes_back_and_the_last_one_at_the_end_of_the_input() {
    let server = Server::start(TOPOLOGY);
    let mut stream = connect(&server);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream.write_all(b"hello\nwor").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    stream.write_all(b"ld\nno newline").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "world\n");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(
        rest, "no newline",
        "the partial line at the end, then the close"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_line_over_the_limit_ends_the_connection_with_an_error_line() {
    let server = Server::start(TOPOLOGY);
    let mut stream = connect(&server);
    stream.write_all(&[b'x'; 100]).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "error: line too long\n");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
