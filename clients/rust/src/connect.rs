//! Opening the receiving connection: `GET /v1/ws/{node}` on the first member of the URL list
//! that accepts it, following `307`/`308` (and `301`–`303`) redirects with the token (a
//! member the application listed is trusted to name the master) and reporting `503` with its
//! `Retry-After`.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, LOCATION, RETRY_AFTER};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::Error;

/// An open WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What to open.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// Member URLs, normalised by [`base_url`].
    pub members: &'a [String],
    /// Node id.
    pub node: &'a str,
    /// Bearer token.
    pub token: Option<&'a str>,
    /// Address announced to other nodes.
    pub address: Option<&'a str>,
    /// Timeout of one handshake.
    pub open_timeout: Duration,
    /// Redirects followed per member.
    pub max_redirects: usize,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// A watcher that is not a node: `/v1/ws/?{query}` (the first watch) instead of the
    /// node's WaitMsg (`node` and `address` are not used).
    pub watcher_query: Option<&'a str>,
}

/// A member URL as `ws://host:port[/prefix]` (`http` becomes `ws`; no scheme means `ws`),
/// without a trailing slash.
pub fn base_url(url: &str) -> Result<String, Error> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("ws".to_string(), url),
    };
    let scheme = match scheme.as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => {
            return Err(Error::ConnectFailed {
                message: format!("{url}: TLS (wss://) is not built into this client yet; put a TLS terminator on loopback or use ws://"),
            })
        }
        other => {
            return Err(Error::ConnectFailed {
                message: format!("{url}: unsupported scheme {other:?}; use ws:// or http://"),
            })
        }
    };
    Ok(format!("{scheme}://{}", rest.trim_end_matches('/')))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The WaitMsg URL of the node at member `base`.
pub fn wait_msg_url(base: &str, node: &str, address: Option<&str>) -> String {
    let mut url = format!("{base}/v1/ws/{}", pct(node));
    if let Some(a) = address {
        url.push_str("?address=");
        url.push_str(&pct(a));
    }
    url
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// Resolve a `Location` against the URL it answered, as a WebSocket URL.
pub fn resolve_location(current: &str, location: &str) -> String {
    let abs = if location.contains("://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(current))
    } else {
        let dir = current.rsplit_once('/').map_or(current, |(d, _)| d);
        format!("{dir}/{location}")
    };
    if let Some(rest) = abs.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = abs.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        abs
    }
}

/// The `retry_after_ms` a cluster member's 503 body names, capped.
pub fn retry_after_ms(body: &str, cap: Duration) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let ms = value.get("retry_after_ms")?.as_u64()?;
    Some(Duration::from_millis(ms).min(cap))
}

/// `Retry-After` (delta-seconds; an HTTP date counts as the cap), capped.
pub fn retry_after(value: Option<&HeaderValue>, cap: Duration) -> Option<Duration> {
    let v = value?.to_str().ok()?.trim();
    Some(match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s).min(cap),
        _ => cap,
    })
}

/// Open the receiving connection at the first member (from index `start`, round robin) that
/// accepts it. Returns the socket and the member it is open to (after redirects).
///
/// Errors: `Unauthorized`/`Forbidden`/`BadRequest` at once (retrying cannot help);
/// `Unavailable` with the shortest `retry_after` if members answered 503; `NotMaster` if
/// redirects looped; `ConnectFailed` if none could be reached.
pub async fn open(t: &Target<'_>, start: usize) -> Result<(Ws, String), Error> {
    let mut unavailable: Option<Error> = None;
    let mut last = String::from("no member");
    let n = t.members.len().max(1);
    for k in 0..t.members.len() {
        let member = &t.members[(start + k) % n];
        let mut url = match t.watcher_query {
            Some(query) => format!("{member}/v1/ws/?{query}"),
            None => wait_msg_url(member, t.node, t.address),
        };
        let mut redirects = 0;
        loop {
            let mut request = match url.as_str().into_client_request() {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{url}: {e}");
                    break;
                }
            };
            if let Some(token) = t.token {
                let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::Unauthorized {
                        message: "the token has characters a header cannot carry".into(),
                    }
                })?;
                request.headers_mut().insert(AUTHORIZATION, v);
            }
            let attempt = tokio::time::timeout(
                t.open_timeout,
                tokio_tungstenite::connect_async_with_config(request, None, true),
            )
            .await;
            match attempt {
                Ok(Ok((ws, _))) => return Ok((ws, origin(&url).to_string())),
                Ok(Err(WsError::Http(response))) => {
                    let status = response.status().as_u16();
                    let location = response
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok());
                    if (301..=308).contains(&status) && status != 304 && location.is_some() {
                        redirects += 1;
                        if redirects > t.max_redirects {
                            return Err(Error::NotMaster {
                                message: format!(
                                    "more than {} redirects from {member}",
                                    t.max_redirects
                                ),
                            });
                        }
                        url = resolve_location(&url, location.unwrap_or_default());
                        tracing::info!(node = t.node, status, %url, "following redirect");
                        continue;
                    }
                    let body = response
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    // A cluster member's 503 names a finer wait in its body than Retry-After.
                    let wait = retry_after_ms(&body, t.max_retry_after).or_else(|| {
                        retry_after(response.headers().get(RETRY_AFTER), t.max_retry_after)
                    });
                    let e = Error::from_status(status, &body, wait);
                    if let Error::Unavailable { retry_after, .. } = &e {
                        let shorter = match &unavailable {
                            Some(Error::Unavailable { retry_after: r, .. }) => retry_after < r,
                            _ => true,
                        };
                        if shorter {
                            unavailable = Some(e.clone());
                        }
                        last = e.to_string();
                        break;
                    }
                    return Err(e);
                }
                Ok(Err(e)) => {
                    last = format!("{url}: {e}");
                    break;
                }
                Err(_) => {
                    last = format!("{url}: no handshake within {:?}", t.open_timeout);
                    break;
                }
            }
        }
    }
    Err(unavailable.unwrap_or(Error::ConnectFailed { message: last }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            base_url("http://127.0.0.1:80/").unwrap(),
            "ws://127.0.0.1:80"
        );
        assert_eq!(base_url("127.0.0.1:80").unwrap(), "ws://127.0.0.1:80");
        assert!(base_url("wss://x").is_err());
        assert_eq!(
            wait_msg_url("ws://h:1", "n:1 é", Some("10.0.0.1:7000")),
            "ws://h:1/v1/ws/n%3A1%20%C3%A9?address=10.0.0.1%3A7000"
        );
        assert_eq!(
            resolve_location("ws://a:1/v1/ws/n", "http://b:2/v1/ws/n?x=1"),
            "ws://b:2/v1/ws/n?x=1"
        );
        assert_eq!(
            resolve_location("ws://a:1/v1/ws/n", "/v1/ws/m"),
            "ws://a:1/v1/ws/m"
        );
        assert_eq!(origin("ws://a:1/v1/ws/n"), "ws://a:1");
        let cap = Duration::from_secs(30);
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("2")), cap),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("999")), cap),
            Some(cap)
        );
        assert_eq!(retry_after(None, cap), None);
        assert_eq!(
            retry_after_ms(r#"{"error":{},"retry_after_ms":150}"#, cap),
            Some(Duration::from_millis(150))
        );
        assert_eq!(retry_after_ms("election", cap), None);
    }
}
