"""Errors of the port switch client.

Every error is a :class:`SwitchError` with the switch's stable ``code`` (when the switch sent
one), the HTTP ``status`` (when there was one), the switch's ``message`` and a ``hint`` that
says what to do. ``str(error)`` shows all of it.
"""

from __future__ import annotations


class SwitchError(Exception):
    """Base of every error the client raises."""

    #: What to do about it (subclasses set it; an instance may override it).
    hint: str = ""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 hint: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.message = message
        #: Response headers of a refused handshake (e.g. ``WWW-Authenticate``), else empty.
        self.headers = dict(headers or {})
        self.code = code
        self.status = status
        if hint is not None:
            self.hint = hint
        text = message
        if status is not None or code is not None:
            text = f"{text} [{' '.join(str(x) for x in (status, code) if x is not None)}]"
        if self.hint:
            text = f"{text}: {self.hint}"
        super().__init__(text)


class Unauthorized(SwitchError):
    """401: the bearer token is missing or unknown to the switch."""

    hint = "pass a token declared in the topology's [[switch.token]] tables"


class Forbidden(SwitchError):
    """403: the token may not act for this node (or is not an admin token)."""

    hint = "use a token whose `nodes` list names this node id"


class BadRequest(SwitchError):
    """400: the switch could not read the request (bad JSON, empty port name, bad node id)."""

    hint = "fix the request; the message names the field"


class LimitExceeded(SwitchError):
    """409/413: a limit of the switch was exceeded (port name length, ports or messages per
    request, body size, ports per node). The whole request was rejected without change."""

    hint = ("the message names the limit: send less (ClientOptions.max_batch_* splits "
            "batches) or raise it in the topology's [switch.limits]")


class RateLimited(SwitchError):
    """429: the switch asked the client to slow down."""

    hint = "retry after the delay the switch named"


class TableFull(SwitchError):
    """507: the switch's port table is full."""

    hint = "release ports or give the switch more memory / instances"


class NotOnline(SwitchError):
    """409 node_not_online: the node has no receiving connection (a REST call before WaitMsg)."""

    hint = "open the node's receiving connection first (the Client does it for you)"


class Misdirected(SwitchError):
    """421: the request reached a switch instance that is not the node's home."""

    hint = "route /v1/nodes/{node}/... by the node segment (http route key_segment)"


class Unavailable(SwitchError):
    """503: no member can serve right now (an election is running, or the switch is busy).
    ``retry_after`` is the delay the switch asked for, in seconds, if it named one."""

    hint = "retry later; the Client retries by itself while it reconnects"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class NotMaster(SwitchError):
    """The member reached is not the master and named none to follow (or redirects looped)."""

    hint = "list every member in the client's URLs; the client follows 307 redirects itself"


class ConnectFailed(SwitchError):
    """No member in the URL list could be reached."""

    hint = "check the URLs and that the reaktor runs; the Client keeps retrying with backoff"


class ConnectionLost(SwitchError):
    """The call was in flight when the receiving connection was lost: whether the switch ran
    it is unknown. Registrations the client held are restored on reconnect; for a send, the
    message may or may not have been delivered (the client never resends, so it is never
    delivered twice)."""

    hint = "retry the call if it is safe to repeat; registrations are restored by the client"


class Closed(SwitchError):
    """The switch closed the receiving connection. ``close_code`` is the WebSocket close code."""

    def __init__(self, message: str, *, close_code: int | None = None, **kw) -> None:
        self.close_code = close_code
        super().__init__(message, **kw)


class Replaced(Closed):
    """4000: another receiving connection for this node id replaced this one; its ports were
    released. The client does not reconnect (two processes would take turns forever)."""

    hint = "run one process per node id; this client is closed"


class LeaseExpired(Closed):
    """4001: the lease ran out before a renewal arrived (the event loop was blocked longer
    than the lease?). The node's ports were released; the Client reconnects and restores
    them."""

    hint = "keep the event loop responsive, or raise lease_ms in the topology"


class SlowConsumer(Closed):
    """4002 (or the client's own event buffer overflowing): pushes were not read fast enough;
    the node's queued pushes were dropped and its ports released. The Client reconnects and
    restores them; the pushes queued at the time are lost."""

    hint = ("read events faster, raise ClientOptions.max_buffered_events or the switch's "
            "max_queued_bytes")


class MasterLost(Closed):
    """4003: the cluster member the client was connected to lost its master lease (a
    partition, a stall, a new election) and dropped its port table. The Client reconnects to
    the new master (following redirects) and registers its ports again; their fencing tokens
    change."""

    hint = "nothing to do: the client follows the master by itself"


class MessageTooBig(Closed):
    """1009: a request was larger than the switch's WebSocket message limit."""

    hint = "lower ClientOptions.max_batch_bytes below the switch's ws max_message_size"


class TokenRevoked(Closed):
    """4004: the token this connection was opened with was removed from the switch's
    topology (or no longer grants the node) and the switch reloaded its tokens."""

    hint = "use a token the switch's topology grants this node"


class SessionReplaced(SwitchError):
    """409 ``session_replaced``: the call named a session that a newer receiving connection
    replaced; it was not applied."""

    hint = "a newer connection of this node exists: act through it, or name its session"


class ClientClosed(SwitchError):
    """The client was closed (by the application, or after a terminal error)."""

    hint = "open a new Client"


class CallTimeout(SwitchError):
    """No reply within the call timeout (the client may be reconnecting)."""

    hint = "raise ClientOptions.call_timeout or check the switch"


_BY_CODE = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "bad_json": BadRequest,
    "bad_request": BadRequest,
    "empty_port": BadRequest,
    "empty_node": BadRequest,
    "not_found": BadRequest,
    "method_not_allowed": BadRequest,
    "limit_exceeded": LimitExceeded,
    "node_not_online": NotOnline,
    "connection_in_use": NotOnline,
    "shard_full": TableFull,
    "misdirected": Misdirected,
    "session_replaced": SessionReplaced,
    "bad_cursor": BadRequest,
    "watch_exists": BadRequest,
    "unknown_watch": BadRequest,
}

_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 409: LimitExceeded,
              413: LimitExceeded, 421: Misdirected, 429: RateLimited, 503: Unavailable,
              507: TableFull}


def from_reply(error: dict, status: int | None = None) -> SwitchError:
    """The error of a reply ``{"error": {"code": ..., "message": ...}}`` (with its HTTP status,
    if it came over REST)."""
    code = error.get("code")
    message = error.get("message", "error without a message")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status or 0) or SwitchError
    return cls(message, code=code, status=status)


def from_status(status: int, body: str, headers: dict[str, str] | None = None,
                retry_after: float | None = None) -> SwitchError:
    """The error of a refused WaitMsg handshake (HTTP status, text body, headers)."""
    text = body.strip() or f"HTTP {status}"
    if status == 503:
        return Unavailable(text, status=status, retry_after=retry_after, headers=headers)
    cls = _BY_STATUS.get(status, SwitchError)
    return cls(text, status=status, headers=headers)


_BY_CLOSE = {4000: Replaced, 4001: LeaseExpired, 4002: SlowConsumer, 4003: MasterLost,
             4004: TokenRevoked,
             1009: MessageTooBig}


def from_close(code: int | None, reason: str) -> SwitchError:
    """The error for a connection closed with WebSocket ``code`` and ``reason``."""
    cls = _BY_CLOSE.get(code or 0)
    if cls is not None:
        return cls(reason or f"closed with {code}", close_code=code)
    return ConnectionLost(f"connection closed ({code} {reason})".strip())
