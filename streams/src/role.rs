//! What a nukleus knows about each peer: which side of it the peer stands on, in the chains
//! and routes the reaktor's plan built, and what the streams between them carry. A nukleus
//! decides how to treat a link from these, never from the peer's kind name, so a new kind
//! between two others needs no edit in either.

/// What the streams of a link carry: the protocol that the kind on the link's network side
/// offers to its application side (each kind declares it; the reaktor puts it on both ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carries {
    /// A connection's bytes. BEGIN extension: `nukleus_tcp::TcpBeginEx` (listener, addresses).
    Connection,
    /// A secured connection's plaintext. BEGIN extension: `nukleus_http::tls_begin_ex::TlsBeginEx`
    /// (listener, SNI, ALPN, the verified client identity).
    SecureConnection,
    /// HTTP exchanges: the request head in the BEGIN extension (`nukleus_http::ext`), the body
    /// as DATA; the response head in the reply's BEGIN extension.
    HttpExchanges,
    /// WebSocket messages (`nukleus_ws::app`): one exchange per WebSocket, one DATA run per
    /// message, its kind in the DATA extension.
    WsMessages,
    /// Records between the instances of one kind (the switch's mesh).
    Mesh,
}

impl Carries {
    /// Whether a kind that accepts `self` on its network side is fed connection bytes (of
    /// either kind) that it must parse itself.
    pub fn is_connection(self) -> bool {
        matches!(self, Carries::Connection | Carries::SecureConnection)
    }
}

/// Where a peer stands, seen from the nukleus that holds the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Nearer the network: the peer opens exchanges with us (tcp for tls, tls for http).
    Network,
    /// Further from the network: we open exchanges with the peer (http for tls, echo for http).
    Application,
    /// Another instance of our own kind.
    Mesh,
}

/// A peer's side and what the link to it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRole {
    pub side: Side,
    pub carries: Carries,
    /// On the application side: the peer is a protocol stage itself, offering a protocol of
    /// its own to kinds further from the network (ws). An HTTP upgrade routed to it may hand
    /// it the connection; one routed to an application may not.
    pub relays: bool,
}

impl PeerRole {
    /// A peer on the network side, offering `carries`.
    pub const fn network(carries: Carries) -> PeerRole {
        PeerRole {
            side: Side::Network,
            carries,
            relays: false,
        }
    }

    /// An application on the application side, to which we offer `carries`.
    pub const fn application(carries: Carries) -> PeerRole {
        PeerRole {
            side: Side::Application,
            carries,
            relays: false,
        }
    }

    /// A protocol stage on the application side (it relays a protocol of its own further
    /// in), to which we offer `carries`.
    pub const fn relay(carries: Carries) -> PeerRole {
        PeerRole {
            side: Side::Application,
            carries,
            relays: true,
        }
    }

    /// Another instance of our own kind.
    pub const MESH: PeerRole = PeerRole {
        side: Side::Mesh,
        carries: Carries::Mesh,
        relays: false,
    };

    pub fn is_network(&self) -> bool {
        self.side == Side::Network
    }

    pub fn is_application(&self) -> bool {
        self.side == Side::Application
    }

    pub fn is_mesh(&self) -> bool {
        self.side == Side::Mesh
    }
}
