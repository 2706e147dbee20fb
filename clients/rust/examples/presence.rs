//! A presence node: logs a user in (port `user:<name>`), says hello to another user every
//! second, prints what arrives, takes the user over when another node lets it go, and keeps
//! all of that across switch restarts.
//!
//! ```text
//! cargo run --release -p reaktor -- run --topology examples/default.toml &
//! cargo run -p reaktor-client --example presence -- ws://127.0.0.1:8080 chat-1 demo-chat alice bob 10
//! cargo run -p reaktor-client --example presence -- ws://127.0.0.1:8080 chat-2 demo-chat bob alice 10
//! ```
//! Arguments: URL[,URL...] NODE TOKEN USER PEER SECONDS.

use std::time::Duration;

use reaktor_client::{connect, Config, Event, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [urls, node, token, user, peer, seconds] = args.as_slice() else {
        eprintln!("usage: presence URL[,URL...] NODE TOKEN USER PEER SECONDS");
        std::process::exit(2);
    };
    let me = format!("user:{user}");
    let config = Config::new(urls.split(','), node.as_str())
        .token(token.as_str())
        .address(format!("{node}.local:9000"));
    let (client, mut events) = connect(config).await?;
    println!("[{node}] connected");
    let reg = client.register_or_subscribe([me.clone()]).await?;
    match reg.failed.first() {
        None => println!("[{node}] logged in {user}"),
        Some(f) => println!(
            "[{node}] {user} is on {} ({:?}); waiting for release",
            f.owner, f.address
        ),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds.parse()?);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => {
                let body = format!("hello from {user}");
                let report = client.send_report(vec![Message::to(format!("user:{peer}"), body)]).await?;
                if report.dropped > 0 {
                    println!("[{node}] {peer} is offline");
                }
            }
            event = events.next() => match event {
                Some(Event::Push { port, body }) => println!("[{node}] to {port}: {body}"),
                Some(Event::Released { port, reason }) => {
                    println!("[{node}] {port} released ({reason})");
                    if port == me && client.register([me.clone()]).await?.failed.is_empty() {
                        println!("[{node}] logged in {user}");
                    }
                }
                Some(Event::Disconnected { error, fin, .. }) => {
                    println!("[{node}] disconnected: {error}");
                    if fin {
                        break;
                    }
                }
                Some(Event::Reconnected { url, restored, lost, .. }) => {
                    println!("[{node}] reconnected to {url}: {restored} kept, lost {lost:?}")
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    client.close().await;
    Ok(())
}
