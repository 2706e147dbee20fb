//! switch-load: the load generator of benches/switch.sh (issue 4).
//!
//! One thread, non-blocking sockets polled in a loop (the process is meant to own a core), so
//! the client stays far below the servers' cost per operation. std only: a minimal WebSocket
//! client (RFC 6455 framing, masked client frames, fragmented server messages), pipelined
//! HTTP/1.1, RESP (redis) and the NATS text protocol.
//!
//! ```text
//! switch-load MODE [--key value]...
//!   regport  --proto ws|http|redis   N connections pipeline RegPort batches of 16-byte ports
//!                                    (redis: SETNX per key) for --duration s (or --total ports)
//!   sendmsg  --proto ws|nats         one sender -> one receiver, --size-byte bodies, order checked,
//!                                    for --duration s (ws: or exactly --total messages)
//!   latency  --proto ws|redis        single-port RegPort (SETNX) round trips at --rate per second
//!   memory   --proto ws|redis        register --total ports, report RSS per port
//!   background                       watches, a listing and events beside another run
//!                                    (src/coord.rs)
//! common: --host 127.0.0.1 --port P --pid SERVER_PID --duration S --nodes N --batch B
//!         --depth D --token T --node-prefix b --tag XX --window W --size 64 --rate R
//!         --warmup S (regport/sendmsg: first S seconds not measured, default 1; latency: 0.5)
//!         --warmup-ports N (regport with --total: N more ports first, not measured)
//! ```
//!
//! Prints one line of `key=value` pairs, including the server's CPU time per operation
//! (utime+stime of --pid from /proc/PID/stat, before/after), the server's and this client's
//! share of a core over the run, and the load average. The client polls, so it always shows
//! ~100 % of its core; sendmsg also reports `client_idle_pct`, the share of the wall time spent
//! in loop turns that moved no bytes (waiting on the server): near 0 means the client, not the
//! server, is the bound.

use std::collections::HashMap;
use std::io::{self};
use std::process::exit;
use std::str::FromStr;

mod conn;
mod coord;
mod http;
mod latency;
mod proc;
mod regport;
mod sendmsg;
mod ws;

use conn::*;
use coord::*;
use http::*;
use latency::*;
use proc::*;
use regport::*;
use sendmsg::*;
use ws::*;

// ---------------------------------------------------------------------------------------------
// arguments

pub(crate) struct Args(HashMap<String, String>);

impl Args {
    pub(crate) fn parse(v: &[String]) -> Args {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < v.len() {
            let k = v[i]
                .strip_prefix("--")
                .unwrap_or_else(|| die(&format!("bad argument {}", v[i])));
            let val = v
                .get(i + 1)
                .unwrap_or_else(|| die(&format!("--{k} needs a value")));
            m.insert(k.to_string(), val.clone());
            i += 2;
        }
        Args(m)
    }
    pub(crate) fn get<T: FromStr>(&self, k: &str, default: T) -> T {
        match self.0.get(k) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("bad value for --{k}: {v}"))),
            None => default,
        }
    }
    pub(crate) fn s(&self, k: &str, default: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

pub(crate) fn die(msg: &str) -> ! {
    eprintln!("switch-load: {msg}");
    exit(2)
}

pub(crate) fn fail<T>(what: &str, e: io::Error) -> T {
    die(&format!("{what}: {e}"))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let Some(mode) = argv.get(1) else {
        die("usage: switch-load regport|sendmsg|latency|memory|background [--key value]... (see src/main.rs)")
    };
    let a = Args::parse(&argv[2..]);
    match mode.as_str() {
        "regport" => regport(&a),
        "memory" => memory(&a),
        "sendmsg" => sendmsg(&a),
        "latency" => latency(&a),
        "background" => background(&a),
        m => die(&format!("unknown mode {m}")),
    }
}
