//! client_load: the workloads of benches/peers/switch-load (`regport`, `sendmsg`) driven
//! through the Rust client's public API, for benches/clients.sh (side by side with the raw
//! protocol). One current-thread tokio runtime (the process is pinned to one core, like
//! switch-load's single thread).
//!
//! ```text
//! cargo bench -p reaktor-client --bench client_load -- MODE --port P --pid SERVER_PID
//!   regport  --nodes 4 --batch 1000 --depth 8 --total 10000000   fresh 16-byte ports
//!   sendmsg  --batch 1000 --depth 8 --window 65536 --size 64 --duration 5 --warmup 1
//!            --total N   exactly N messages, no warm-up, then stop (for instruction counts)
//!            --receive batch|event   how the receiving node takes its pushes: a batch at a
//!                        time, read in place (`Events::next_batch`, default), or one
//!                        `Event::Push` at a time (`Events::next`)
//!   common:  --host 127.0.0.1 --token bench --node-prefix b --tag aa
//!            --spin 1   never park the runtime (spin like switch-load; default 0: park)
//! ```
//! Prints one line of `key=value` pairs (the same keys as switch-load).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reaktor_client::{connect, Batch, Config, Event, Message, Options, SharedStr};

fn arg<T: std::str::FromStr>(a: &HashMap<String, String>, k: &str, d: T) -> T {
    a.get(k).and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn cpu_s(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks
        / std::env::var("CLK_TCK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100.0)
}

struct Meter {
    pid: u32,
    t0: Instant,
    srv0: f64,
    me0: f64,
}

impl Meter {
    fn start(pid: u32) -> Meter {
        Meter {
            pid,
            t0: Instant::now(),
            srv0: cpu_s(pid),
            me0: cpu_s(std::process::id()),
        }
    }

    fn report(&self, ops: u64, unit: &str) -> String {
        let wall = self.t0.elapsed().as_secs_f64();
        let srv = cpu_s(self.pid) - self.srv0;
        let me = cpu_s(std::process::id()) - self.me0;
        let per_op = |cpu: f64| if ops > 0 { cpu * 1e9 / ops as f64 } else { 0.0 };
        format!(
            "{unit}={ops} seconds={wall:.3} {unit}_per_s={:.0} server_ns_per_op={:.0} server_pct={:.0} client_pct={:.0} client_ns_per_op={:.0}",
            ops as f64 / wall,
            per_op(srv),
            100.0 * srv / wall,
            100.0 * me / wall,
            per_op(me)
        )
    }
}

/// 16-byte port name: 2-byte tag, 3-digit connection, 11-digit counter (as switch-load).
/// Digits written by hand, as switch-load does: `format!` cost more per port than the
/// client's whole JSON encoding, and the application's way of naming its ports is not what
/// this benchmark measures.
fn port_name(tag: &str, conn: usize, n: u64) -> String {
    let mut s = String::with_capacity(tag.len() + 14);
    s.push_str(tag);
    push_digits(&mut s, conn as u64, 3);
    push_digits(&mut s, n, 11);
    s
}

/// `v` as `width` decimal digits, zero-padded (the low digits if it is wider), into bytes:
/// switch-load's `put_dec` (it stops dividing at zero).
fn put_dec(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = start + width;
    while v > 0 && i > start {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `v` as `width` decimal digits appended to a string.
fn push_digits(s: &mut String, v: u64, width: usize) {
    let mut buf = Vec::with_capacity(width);
    put_dec(&mut buf, v, width);
    s.extend(buf.iter().map(|&b| char::from(b)));
}

/// switch-load's `parse_dec`: the sequence number at the start of a body, digits assumed
/// (a wrong body shows as a wrong sequence number, which the receiver reports).
fn parse_dec(b: &[u8]) -> u64 {
    b.iter()
        .fold(0, |v, &c| v * 10 + u64::from(c.wrapping_sub(b'0')))
}

fn config(a: &HashMap<String, String>, node: String) -> Config {
    let url = format!(
        "ws://{}:{}",
        a.get("host").map_or("127.0.0.1", |s| s.as_str()),
        arg(a, "port", 0u16)
    );
    Config::new([url], node.clone())
        .token(a.get("token").cloned().unwrap_or_else(|| "bench".into()))
        .address(format!("{node}:1"))
        .options(Options {
            max_batch_items: arg(a, "batch", 1000usize).max(1000),
            max_batch_bytes: 8 << 20,
            ..Options::default()
        })
}

async fn regport(a: HashMap<String, String>) {
    let nodes: usize = arg(&a, "nodes", 4);
    let batch: u64 = arg(&a, "batch", 1000);
    let depth: usize = arg(&a, "depth", 8);
    let total: u64 = arg(&a, "total", 10_000_000);
    let tag = a.get("tag").cloned().unwrap_or_else(|| "aa".into());
    let prefix = a.get("node-prefix").cloned().unwrap_or_else(|| "b".into());
    let mut clients = Vec::new();
    for i in 0..nodes {
        let (c, events) = connect(config(&a, format!("{prefix}{i}")))
            .await
            .expect("connect");
        clients.push((c, events));
    }
    let per_node = total / nodes as u64;
    let meter = Meter::start(arg(&a, "pid", 0));
    let mut tasks = Vec::new();
    for (i, (c, _)) in clients.iter().enumerate() {
        // The node's batches are issued in ascending order, as switch-load issues them: its
        // `depth` workers take the next batch number from one counter, and a worker's call
        // reaches the driver before the next worker takes a number. (Interleaved ranges,
        // worker d taking d, d+depth, ..., would insert names out of order and cost the
        // switch's ordered port index more per port than switch-load's stream does.)
        let next_batch = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        for _ in 0..depth {
            let c = c.clone();
            let tag = tag.clone();
            let next_batch = next_batch.clone();
            tasks.push(tokio::spawn(async move {
                let mut owned = 0u64;
                loop {
                    let k = next_batch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let start = k * batch;
                    if start >= per_node {
                        break;
                    }
                    let end = (start + batch).min(per_node);
                    let names: Vec<String> = (start..end).map(|n| port_name(&tag, i, n)).collect();
                    let r = c.register(names).await.expect("register");
                    assert!(r.failed.is_empty(), "{} failed", r.failed.len());
                    owned += r.owned.len() as u64;
                }
                owned
            }));
        }
    }
    let mut ports = 0;
    for t in tasks {
        ports += t.await.expect("worker");
    }
    println!(
        "mode=regport client=rust nodes={nodes} batch={batch} depth={depth} {}",
        meter.report(ports, "ports")
    );
}

async fn sendmsg(a: HashMap<String, String>) {
    let batch: u64 = arg(&a, "batch", 1000);
    let depth: u64 = arg(&a, "depth", 8);
    let window: u64 = arg(&a, "window", 65536);
    let size: usize = arg(&a, "size", 64);
    let duration: f64 = arg(&a, "duration", 5.0);
    let warmup: f64 = arg(&a, "warmup", 1.0);
    let pid: u32 = arg(&a, "pid", 0);
    let prefix = a.get("node-prefix").cloned().unwrap_or_else(|| "b".into());
    let (rx, mut events) = connect(config(&a, format!("{prefix}0")))
        .await
        .expect("connect");
    rx.register(["inbox"]).await.expect("register");
    let (tx, _e) = connect(config(&a, format!("{prefix}1")))
        .await
        .expect("connect");
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // --total N: exactly N messages (the last batch may be short), no warm-up.
    let total: u64 = arg(&a, "total", 0);
    let stop = Instant::now() + Duration::from_secs_f64(duration + warmup);
    // The receiver checks order and counts; the sender keeps `depth` batches in flight and at
    // most `window` messages undelivered, as switch-load does.
    let got_r = got.clone();
    let per_event = match a.get("receive").map_or("batch", String::as_str) {
        "batch" => false,
        "event" => true,
        r => panic!("--receive {r}: batch or event"),
    };
    let receiver = tokio::spawn(async move {
        let mut next = 0u64;
        let check = |next: &mut u64, body: &str| {
            let seq = parse_dec(&body.as_bytes()[..16]);
            assert_eq!(seq, *next, "out of order");
            *next += 1;
        };
        if per_event {
            while let Some(e) = events.next().await {
                match e {
                    Event::Push { body, .. } => check(&mut next, &body),
                    e => panic!("unexpected {e:?}"),
                }
                got_r.store(next, std::sync::atomic::Ordering::Relaxed);
            }
        } else {
            while let Some(b) = events.next_batch().await {
                match b {
                    Batch::Pushes(pushes) => pushes.iter().for_each(|p| check(&mut next, p.body)),
                    Batch::Event(e) => panic!("unexpected {e:?}"),
                }
                got_r.store(next, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let mut sent = 0u64;
    let mut inflight: tokio::task::JoinSet<Result<(), reaktor_client::Error>> =
        tokio::task::JoinSet::new();
    let mut meter = Meter::start(pid);
    let mut base = 0;
    let mut warm = (total == 0).then(|| Instant::now() + Duration::from_secs_f64(warmup));
    let pad = "x".repeat(size.saturating_sub(16));
    let inbox = SharedStr::from("inbox"); // inline: cloned without a reference count
    loop {
        let next = if total > 0 {
            batch.min(total - sent)
        } else {
            batch
        };
        if next == 0 || (total == 0 && Instant::now() >= stop) {
            break;
        }
        if warm.is_some_and(|w| Instant::now() >= w) {
            warm = None;
            meter = Meter::start(pid);
            base = got.load(std::sync::atomic::Ordering::Relaxed);
        }
        if inflight.len() as u64 >= depth
            || sent + next > got.load(std::sync::atomic::Ordering::Relaxed) + window
        {
            if inflight.is_empty() {
                tokio::task::yield_now().await;
            } else {
                inflight
                    .join_next()
                    .await
                    .expect("a send")
                    .expect("send task")
                    .expect("send");
            }
            continue;
        }
        // The batch's bodies written into one buffer and sent as slices of it, to one
        // port name shared by every message: the application's side of the work kept as
        // small as switch-load's, which writes them straight into its request.
        let body_len = 16 + pad.len();
        let mut bodies = Vec::with_capacity(next as usize * body_len);
        for s in sent..sent + next {
            put_dec(&mut bodies, s, 16);
            bodies.extend_from_slice(pad.as_bytes());
        }
        // One UTF-8 check per batch (digits and `x`s), where switch-load writes bytes.
        let bodies = SharedStr::from(String::from_utf8(bodies).expect("ASCII bodies"));
        let msgs: Vec<Message> = (0..next as usize)
            .map(|k| {
                Message::to(
                    inbox.clone(),
                    bodies.slice(k * body_len..(k + 1) * body_len),
                )
            })
            .collect();
        sent += next;
        let tx = tx.clone();
        inflight.spawn(async move { tx.send_many(msgs).await });
    }
    while let Some(r) = inflight.join_next().await {
        r.expect("send task").expect("send");
    }
    while got.load(std::sync::atomic::Ordering::Relaxed) < sent {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = meter.report(sent - base, "msgs");
    rx.close().await;
    let _ = receiver.await;
    println!("mode=sendmsg client=rust batch={batch} window={window} size={size} {report}");
}

fn main() {
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(mode) = argv.first().cloned() else {
        eprintln!("usage: client_load regport|sendmsg [--key value]...");
        std::process::exit(2)
    };
    let mut a = HashMap::new();
    for kv in argv[1..].chunks(2) {
        if let [k, v] = kv {
            a.insert(k.trim_start_matches("--").to_string(), v.clone());
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if arg(&a, "spin", 0u8) != 0 {
        // Never park: a task that always yields keeps the runtime polling its sockets
        // without sleeping in epoll_wait, as switch-load's loop spins. Without it the
        // process sleeps between replies and, on a busy machine, waits for the scheduler at
        // every wake-up; with it, it competes for its core as the raw client does.
        rt.spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
    match mode.as_str() {
        "regport" => rt.block_on(regport(a)),
        "sendmsg" => rt.block_on(sendmsg(a)),
        m => {
            eprintln!("unknown mode {m}");
            std::process::exit(2)
        }
    }
    // Not measured, but it would dominate a profile of the process: freeing millions of held
    // port names and the runtime's buffers.
    std::process::exit(0)
}
