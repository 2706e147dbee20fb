//! A fault-injecting TCP proxy for the cluster tests: every link between two members (one
//! direction of the election traffic) goes through one, so a test can cut exactly the links
//! it wants. Cut: live connections are shut down and new ones are accepted and then held
//! without a byte forwarded (a black hole, as a real partition looks to the sender), until
//! the link heals. Threads and blocking sockets: a handful of links in a test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct State {
    target: SocketAddr,
    cut: AtomicBool,
    stop: AtomicBool,
    /// Every socket of the live connections (both sides), to shut them down on a cut.
    live: Mutex<Vec<TcpStream>>,
    /// Connections accepted while cut, held until the link heals.
    held: Mutex<Vec<TcpStream>>,
}

/// One proxied link: connect to `addr` to reach the target.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Proxy::on(listener, target)
    }

    /// Forwards the connections `listener` accepts to `target`.
    pub fn on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        std::thread::spawn(move || accept(listener, accept_state));
        Proxy { addr, state }
    }

    /// Partitions the link: live connections end, new ones go nowhere.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for socket in self.state.live.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Heals the link: held connections are closed (the sender reconnects), new ones pass.
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        for socket in self.state.held.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        self.heal();
        // Unblock the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn accept(listener: TcpListener, state: Arc<State>) {
    for incoming in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        let _ = client.set_nodelay(true);
        if state.cut.load(Ordering::SeqCst) {
            state.held.lock().unwrap().push(client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&state.target, Duration::from_millis(500))
        else {
            continue;
        };
        let _ = server.set_nodelay(true);
        {
            let mut live = state.live.lock().unwrap();
            live.push(client.try_clone().unwrap());
            live.push(server.try_clone().unwrap());
        }
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || pump(client, server));
        std::thread::spawn(move || pump(s2, c2));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
