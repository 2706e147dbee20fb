//! WebSocket echo server on tokio-tungstenite, one current-thread runtime (one core), echoing
//! every text and binary message on any path. Usage: tungstenite-echo [ADDR]
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8083".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("tungstenite-echo listening on {addr}");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tokio::task::spawn_local(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        match message {
                            Message::Text(_) | Message::Binary(_) => {
                                if ws.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Message::Close(_) => return,
                            _ => {}
                        }
                    }
                });
            }
        })
        .await;
}
