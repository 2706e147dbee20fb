//! Bearer-token authorization for the switch API.
//!
//! Tokens come from the topology file: each is bound to the node ids it may act for, and/or
//! marked `admin` (metrics). Any valid token may send messages and query ports and nodes; only
//! a token bound to a node may open that node's receiving connection, relet it, or register and
//! release its ports. A watcher that is not a node (`/v1/watch`) may watch only the names its
//! token's `watch_ports` / `watch_nodes` prefixes cover (an admin token: every name), as an
//! etcd watch needs read permission on its key range. Missing or unknown token: 401; valid
//! token without the right: 403.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::{HashMap, HashSet};

use crate::watch::WatchKind;

/// A token as declared in the topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenGrant {
    /// The secret, as sent in `Authorization: Bearer <token>`.
    pub token: String,
    /// Node ids the token may act for.
    pub nodes: Vec<String>,
    /// Admin: may read metrics (and watch every port and node without being a node).
    pub admin: bool,
    /// Prefixes of the port names a node-less watcher with this token may watch (`""`: all).
    pub watch_ports: Vec<String>,
    /// Prefixes of the node ids a node-less watcher with this token may watch (`""`: all).
    pub watch_nodes: Vec<String>,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any valid token (SendMsg, QueryPort, QueryNode).
    Any,
    /// A token bound to this node (WaitMsg, Relet, RegPort, UnRegPort).
    Node(&'a str),
    /// An admin token (metrics).
    Admin,
    /// A token that may watch the names starting with this key (a node-less watcher's watch
    /// of ports or nodes, by exact name or by prefix: either way every name it can match
    /// starts with the key).
    Watch(WatchKind, &'a str),
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The token is not declared.
    #[error("unknown bearer token")]
    Unknown,
    /// The token is valid but not bound to the node.
    #[error("token is not allowed to act for node {0:?}")]
    NotForNode(String),
    /// The token is valid but not an admin token.
    #[error("this call needs an admin token")]
    NotAdmin,
    /// The token may not watch these names.
    #[error("token may not watch {} {key:?}: grant it a prefix of that name in `watch_{}` of its [[switch.token]] (or use an admin token)", kind.as_str(), kind.as_str())]
    NotForWatch {
        /// Ports or nodes.
        kind: WatchKind,
        /// The name or prefix asked for.
        key: String,
    },
}

impl AuthError {
    /// HTTP status: 401 for missing/unknown tokens, 403 for tokens without the right.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Unknown => 401,
            AuthError::NotForNode(_) | AuthError::NotAdmin | AuthError::NotForWatch { .. } => 403,
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Unknown => "unauthorized",
            AuthError::NotForNode(_) | AuthError::NotAdmin | AuthError::NotForWatch { .. } => {
                "forbidden"
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Rights {
    nodes: HashSet<String>,
    admin: bool,
    /// Per [`WatchKind`] code: the prefixes a node-less watcher may watch.
    watch: [Vec<String>; 2],
}

/// The declared tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    grants: HashMap<String, Rights>,
}

impl Tokens {
    /// Tokens from their declarations (a token declared twice gets the union of its rights).
    pub fn new(grants: &[TokenGrant]) -> Tokens {
        let mut map: HashMap<String, Rights> = HashMap::new();
        for g in grants {
            let entry = map.entry(g.token.clone()).or_default();
            entry.nodes.extend(g.nodes.iter().cloned());
            entry.admin |= g.admin;
            entry.watch[WatchKind::Ports.code() as usize].extend(g.watch_ports.iter().cloned());
            entry.watch[WatchKind::Nodes.code() as usize].extend(g.watch_nodes.iter().cloned());
        }
        Tokens { grants: map }
    }

    /// Number of declared tokens.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// True if no token is declared (then every call is refused).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Checks `token` (None: absent) for `need`.
    pub fn check(&self, token: Option<&str>, need: Need<'_>) -> Result<(), AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let grant = self.grants.get(token).ok_or(AuthError::Unknown)?;
        match need {
            Need::Any => Ok(()),
            Need::Node(node) if grant.nodes.contains(node) => Ok(()),
            Need::Node(node) => Err(AuthError::NotForNode(node.to_string())),
            Need::Admin if grant.admin => Ok(()),
            Need::Admin => Err(AuthError::NotAdmin),
            Need::Watch(_, _) if grant.admin => Ok(()),
            Need::Watch(kind, key) => {
                let granted = &grant.watch[kind.code() as usize];
                if granted
                    .iter()
                    .any(|prefix| key.starts_with(prefix.as_str()))
                {
                    Ok(())
                } else {
                    Err(AuthError::NotForWatch {
                        kind,
                        key: key.to_string(),
                    })
                }
            }
        }
    }
}

/// Whom a call's credentials may act for, beyond the node the call names (a
/// compare-and-register that takes ports from another node needs that node's authority too).
pub trait Grant {
    /// Whether the credentials may act for `node`.
    fn may_act_for(&self, node: &str) -> bool;
}

/// A token checked against the declared tokens.
pub struct TokenGrantOf<'a> {
    /// The declared tokens.
    pub tokens: &'a Tokens,
    /// The caller's token.
    pub token: Option<&'a str>,
}

impl Grant for TokenGrantOf<'_> {
    fn may_act_for(&self, node: &str) -> bool {
        self.tokens.check(self.token, Need::Node(node)).is_ok()
    }
}

/// Credentials that may act for every node (tests, embedders without tokens).
pub struct AnyNode;

impl Grant for AnyNode {
    fn may_act_for(&self, _node: &str) -> bool {
        true
    }
}

/// The tokens of the topology as they are reloaded while the server runs (SIGHUP, or
/// `POST /v1/admin/reload`): the reaktor publishes, every switch instance looks at the
/// generation once per poll and applies a new list.
#[derive(Debug, Default)]
pub struct TokenUpdates {
    generation: AtomicU64,
    grants: Mutex<Arc<Vec<TokenGrant>>>,
}

impl TokenUpdates {
    /// Publishes a new list of tokens.
    pub fn publish(&self, grants: Vec<TokenGrant>) {
        if let Ok(mut g) = self.grants.lock() {
            *g = Arc::new(grants);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many lists were published (one relaxed load: cheap enough for every poll).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The last list published.
    pub fn latest(&self) -> Arc<Vec<TokenGrant>> {
        self.grants.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// How the switch asks for a reload of the tokens (`POST /v1/admin/reload`): the reaktor
/// reads the topology file again and publishes its tokens to every switch instance; the
/// number of tokens, or why the file was refused.
pub type ReloadTrigger = Arc<dyn Fn() -> Result<usize, String> + Send + Sync>;

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The percent-decoded value of `name` in a query string (`a=1&b=2`); `+` is a space.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))?
    })
}

/// Percent-decodes `s` (`+` as space); `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            TokenGrant {
                token: "t1".into(),
                nodes: vec!["n1".into(), "n2".into()],
                ..TokenGrant::default()
            },
            TokenGrant {
                token: "adm".into(),
                admin: true,
                ..TokenGrant::default()
            },
            TokenGrant {
                token: "dash".into(),
                watch_ports: vec!["leader/".into()],
                watch_nodes: vec!["".into()],
                ..TokenGrant::default()
            },
        ])
    }

    #[test]
    fn node_tokens_act_only_for_their_nodes() {
        let t = tokens();
        assert_eq!(t.check(Some("t1"), Need::Node("n2")), Ok(()));
        assert_eq!(
            t.check(Some("t1"), Need::Node("n3")),
            Err(AuthError::NotForNode("n3".into()))
        );
        assert_eq!(t.check(Some("t1"), Need::Any), Ok(()));
        assert_eq!(t.check(Some("t1"), Need::Admin), Err(AuthError::NotAdmin));
        assert_eq!(
            t.check(Some("adm"), Need::Node("n1")).unwrap_err().status(),
            403
        );
        assert_eq!(t.check(Some("adm"), Need::Admin), Ok(()));
    }

    #[test]
    fn watchers_watch_only_inside_their_granted_prefixes() {
        let t = tokens();
        let ports = |key| Need::Watch(WatchKind::Ports, key);
        assert_eq!(t.check(Some("dash"), ports("leader/")), Ok(()));
        assert_eq!(t.check(Some("dash"), ports("leader/db")), Ok(()));
        let refused = t.check(Some("dash"), ports("leader")).unwrap_err();
        assert_eq!((refused.status(), refused.code()), (403, "forbidden"));
        assert!(refused.to_string().contains("watch_ports"), "{refused}");
        assert!(
            t.check(Some("dash"), ports("")).is_err(),
            "everything is not granted"
        );
        assert_eq!(
            t.check(Some("dash"), Need::Watch(WatchKind::Nodes, "")),
            Ok(())
        );
        assert!(
            t.check(Some("t1"), ports("leader/")).is_err(),
            "a node's token"
        );
        assert_eq!(t.check(Some("adm"), ports("")), Ok(()));
        assert_eq!(t.check(Some("nope"), ports("x")), Err(AuthError::Unknown));
    }

    #[test]
    fn missing_and_unknown_tokens_are_401() {
        let t = tokens();
        assert_eq!(t.check(None, Need::Any), Err(AuthError::Missing));
        assert_eq!(t.check(Some(""), Need::Any), Err(AuthError::Missing));
        assert_eq!(t.check(Some("nope"), Need::Any), Err(AuthError::Unknown));
        assert_eq!(AuthError::Unknown.status(), 401);
        assert!(Tokens::new(&[]).check(Some("t1"), Need::Any).is_err());
    }

    #[test]
    fn bearer_headers_and_query_tokens() {
        assert_eq!(bearer(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some(b"Basic abc")), None);
        assert_eq!(bearer(Some(b"Bearer")), None);
        assert_eq!(bearer(None), None);
        assert_eq!(
            query_param(Some("a=1&token=x%2By+z"), "token"),
            Some("x+y z".into())
        );
        assert_eq!(query_param(Some("token=%zz"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
    }
}
