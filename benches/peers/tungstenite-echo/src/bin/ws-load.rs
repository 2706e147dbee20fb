//! WebSocket load generator for benches/ws_echo.sh, on one current-thread runtime.
//!
//! Usage: ws-load URL CONNECTIONS MODE SIZE SECONDS
//!   MODE rtt:    each connection sends a binary message of SIZE bytes and waits for its echo
//!   MODE oneway: each connection sends SIZE-byte messages as fast as it can (a reader drains
//!                the echoes); throughput is the messages the server echoed
//! Prints one line: `messages=N seconds=S rate=R p50_us=.. p99_us=..` (latency for rtt only).
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: ws-load URL CONNECTIONS rtt|oneway SIZE SECONDS");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let connections: usize = args[2].parse().expect("connections");
    let mode = args[3].clone();
    let size: usize = args[4].parse().expect("size");
    let seconds: f64 = args[5].parse().expect("seconds");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let mut streams = Vec::new();
            for _ in 0..connections {
                let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .expect("connect");
                streams.push(ws);
            }
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(seconds);
            let payload = vec![0x5au8; size];
            let mut tasks = Vec::new();
            for ws in streams {
                let payload = payload.clone();
                let mode = mode.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let mut latencies = Vec::new();
                    let mut count = 0u64;
                    let (mut tx, mut rx) = ws.split();
                    if mode == "rtt" {
                        while Instant::now() < deadline {
                            let sent = Instant::now();
                            tx.send(Message::binary(payload.clone())).await.expect("send");
                            loop {
                                match rx.next().await {
                                    Some(Ok(Message::Binary(_))) => break,
                                    Some(Ok(_)) => continue,
                                    other => panic!("connection ended: {other:?}"),
                                }
                            }
                            latencies.push(sent.elapsed().as_micros() as u64);
                            count += 1;
                        }
                    } else {
                        let writer = tokio::task::spawn_local(async move {
                            while Instant::now() < deadline {
                                for _ in 0..64 {
                                    if tx.feed(Message::binary(payload.clone())).await.is_err() {
                                        return;
                                    }
                                }
                                if tx.flush().await.is_err() {
                                    return;
                                }
                            }
                        });
                        while let Ok(Some(Ok(message))) =
                            tokio::time::timeout_at(deadline.into(), rx.next()).await
                        {
                            if let Message::Binary(_) = message {
                                count += 1;
                            }
                        }
                        writer.abort();
                    }
                    (count, latencies)
                }));
            }
            let mut total = 0u64;
            let mut latencies = Vec::new();
            for task in tasks {
                let (count, mut l) = task.await.expect("task");
                total += count;
                latencies.append(&mut l);
            }
            let elapsed = start.elapsed().as_secs_f64();
            latencies.sort_unstable();
            let pct = |p: f64| {
                latencies
                    .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            };
            println!(
                "messages={total} seconds={elapsed:.2} rate={:.0} p50_us={} p99_us={}",
                total as f64 / elapsed,
                pct(0.5),
                pct(0.99)
            );
            std::process::exit(0);
        })
        .await;
}
