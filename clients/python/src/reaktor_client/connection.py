"""One receiving connection of a node (WaitMsg over WebSocket), without policy.

:class:`Connection` opens ``/v1/ws/{node}`` on the first member of a URL list that answers,
following ``307``/``308`` redirects itself (the bearer token goes along: a member the
application listed is trusted to name the master) and reporting ``503`` with its
``Retry-After``. Once open it numbers requests, matches replies (JSON objects) to them by
``id`` and hands pushes (JSON arrays) to a callback. It does not renew the lease, reconnect or
batch: :class:`reaktor_client.Client` does that on top of it. Tests of the switch use it
directly to speak the protocol with exact control.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import errors

log = logging.getLogger("reaktor_client")

PushHandler = Callable[[list], "Awaitable[None] | None"]

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class _NoRedirect(connect):
    """websockets' connect, with redirects left to us (it would drop the token on a
    redirect to another member)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def base_url(url: str) -> str:
    """A member URL as ``ws://host:port[/prefix]`` (``http`` becomes ``ws``, ``https``
    becomes ``wss``), without a trailing slash."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"unsupported URL scheme in {url!r}: use ws://, wss://, http:// or https://")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def wait_msg_url(base: str, node: str | None, params: dict[str, str]) -> str:
    """The WaitMsg WebSocket URL of ``node`` at member ``base`` (``None``: a watcher that is
    not a node, ``/v1/ws/``)."""
    query = urllib.parse.urlencode(params)
    path = "" if node is None else urllib.parse.quote(node, safe="")
    return f"{base}/v1/ws/{path}" + (f"?{query}" if query else "")


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped at ``cap``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - time.time()
    return max(0.0, min(seconds, cap))


def retry_after_ms(body: str, cap: float) -> float | None:
    """The finer wait a cluster member's 503 names in its JSON body (``retry_after_ms``), as
    seconds capped at ``cap``; None if the body has none."""
    try:
        value = json.loads(body).get("retry_after_ms")
    except (ValueError, AttributeError):
        return None
    if not isinstance(value, (int, float)) or value < 0:
        return None
    return min(value / 1000, cap)


def member_of(url: str) -> str:
    """``scheme://host:port`` of a full URL (the member a redirect pointed at)."""
    parts = urllib.parse.urlsplit(url)
    return base_url(urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", "")))


class Connection:
    """An open receiving connection. Create it with :meth:`open`."""

    def __init__(self, ws: ClientConnection, url: str, node: str | None, on_pushes: PushHandler | None) -> None:
        self.ws = ws
        #: The member this connection is open to (after redirects), as ``ws://host:port``.
        self.url = url
        self.node = node
        self.on_pushes = on_pushes
        self._next_id = 1
        #: WebSocket messages (requests) sent so far on this connection.
        self.sent = 0
        #: Loop time of the last message received (a sign that the connection is alive).
        self.last_received = asyncio.get_running_loop().time()
        self._waiting: dict[int, asyncio.Future] = {}
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        #: Resolves to ``(close code, reason)`` once the connection is gone.
        self.closed: asyncio.Future[tuple[int | None, str]] = loop.create_future()
        #: Set by :meth:`abort` callers to say why the client dropped the connection.
        self.abort_error: errors.SwitchError | None = None
        self._reader = asyncio.create_task(self._read())
        self._writer = asyncio.create_task(self._write())

    @classmethod
    async def open(cls, urls: Sequence[str], node: str | None, token: str | None, *,
                   address: str | None = None, query_token: bool = False,
                   ping_interval: float | None = None, open_timeout: float = 10.0,
                   max_redirects: int = 5, max_retry_after: float = 30.0,
                   on_pushes: PushHandler | None = None, max_queue: int = 16,
                   start: int = 0, query: dict[str, str] | None = None) -> "Connection":
        """Open the receiving connection of ``node`` at the first of ``urls`` (from index
        ``start``, round robin) that accepts it. ``node`` ``None`` opens a watcher that is not
        a node (``/v1/ws/``), its first watch in ``query``.

        Raises :class:`~reaktor_client.errors.Unauthorized`, ``Forbidden`` or ``BadRequest``
        at once (retrying cannot help), ``Unavailable`` (with the shortest ``retry_after``)
        if members answered 503, ``NotMaster`` if redirects looped, and ``ConnectFailed``
        if no member could be reached.
        """
        if not urls:
            raise ValueError("need at least one member URL")
        params = dict(query or {})
        if address is not None:
            params["address"] = address
        headers = {}
        if token is not None:
            if query_token:
                params["token"] = token
            else:
                headers["Authorization"] = f"Bearer {token}"
        bases = [base_url(u) for u in urls]
        unavailable: errors.Unavailable | None = None
        last: Exception | None = None
        for k in range(len(bases)):
            member = bases[(start + k) % len(bases)]
            url = wait_msg_url(member, node, params)
            for _ in range(max_redirects + 1):
                try:
                    ws = await _NoRedirect(url, additional_headers=headers, ping_interval=ping_interval,
                                           max_size=None, max_queue=max_queue, open_timeout=open_timeout,
                                           close_timeout=2)
                except InvalidStatus as e:
                    r = e.response
                    location = r.headers.get("Location")
                    if r.status_code in REDIRECT_STATUSES and location:
                        parts = urllib.parse.urlsplit(urllib.parse.urljoin(url, location))
                        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
                        url = urllib.parse.urlunsplit((scheme,) + tuple(parts[1:]))
                        log.info("%s: %d redirect to %s", node, r.status_code, url)
                        member = member_of(url)
                        continue
                    body = r.body.decode(errors="replace") if r.body else ""
                    wait = retry_after_ms(body, max_retry_after)
                    if wait is None:
                        wait = retry_after_seconds(r.headers.get("Retry-After"), max_retry_after)
                    err = errors.from_status(r.status_code, body, dict(r.headers.raw_items()), wait)
                    if isinstance(err, errors.Unavailable):
                        if unavailable is None or (err.retry_after or 0) < (unavailable.retry_after or 0):
                            unavailable = err
                        last = err
                        break
                    raise err
                except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI, EOFError) as e:
                    last = e
                    log.debug("%s: %s: %r", node, member, e)
                    break
                else:
                    return cls(ws, member, node, on_pushes)
            else:
                raise errors.NotMaster(f"more than {max_redirects} redirects from {bases[(start + k) % len(bases)]}")
        if unavailable is not None:
            raise unavailable
        raise errors.ConnectFailed(f"no member of {bases} accepted the connection (last: {last!r})")

    def next_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def expect(self, request_id: int) -> asyncio.Future:
        """The future of the reply to ``request_id`` (a raw dict); it fails with
        :class:`~reaktor_client.errors.ConnectionLost` (or the close's error) if the
        connection goes first."""
        fut = asyncio.get_running_loop().create_future()
        if self.closed.done():
            fut.set_exception(self._lost_error())
        else:
            self._waiting[request_id] = fut
        return fut

    def send_text(self, text: str) -> None:
        """Queue a WebSocket text message (sent in order by the writer task)."""
        self.sent += 1
        self._out.put_nowait(text)

    def request(self, op: str, **fields: Any) -> asyncio.Future:
        """Send ``{"op": op, "id": ..., **fields}`` now; the future of its raw reply."""
        i = self.next_id()
        fut = self.expect(i)
        self.send_text(json.dumps({"op": op, "id": i, **fields}))
        return fut

    async def call(self, op: str, timeout: float = 30.0, **fields: Any) -> dict:
        """Send a request and wait for its raw reply (a dict, possibly ``{"error": ...}``)."""
        async with asyncio.timeout(timeout):
            return await self.request(op, **fields)

    async def _write(self) -> None:
        try:
            while True:
                text = await self._out.get()
                if text is None:
                    return
                await self.ws.send(text)
        except ConnectionClosed:
            pass
        except Exception as e:  # a broken socket: the reader sees the close too
            log.debug("%s: writer: %r", self.node, e)
            self.abort()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if self.abort_error is not None:
                    break  # dropped by the client: frames still buffered are not delivered
                self.last_received = asyncio.get_running_loop().time()
                data = json.loads(message)
                if isinstance(data, list):
                    if self.on_pushes is not None:
                        r = self.on_pushes(data)
                        if r is not None:
                            await r
                elif isinstance(data, dict):
                    fut = self._waiting.pop(data.get("id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
                    elif fut is None:
                        log.warning("%s: reply to no request: %.200s", self.node, message)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            self.ws.transport.abort()
            raise
        except Exception as e:  # bad JSON from the switch, or a push handler that failed
            log.warning("%s: dropping the connection: %r", self.node, e)
            if self.abort_error is None:
                self.abort_error = errors.ConnectionLost(f"dropped by the client: {e!r}")
            self.ws.transport.abort()
        finally:
            self._finish()

    def _close_info(self) -> tuple[int | None, str]:
        code, reason = self.ws.close_code, self.ws.close_reason or ""
        return code, reason

    def _lost_error(self) -> errors.SwitchError:
        if self.abort_error is not None:
            return self.abort_error
        code, reason = self._close_info()
        err = errors.from_close(code, reason)
        if isinstance(err, (errors.Replaced, errors.LeaseExpired, errors.SlowConsumer, errors.MasterLost,
                            errors.TokenRevoked)):
            return err
        return errors.ConnectionLost(f"connection to {self.url} lost ({code} {reason})".strip())

    def _finish(self) -> None:
        info = self._close_info()
        if not self.closed.done():
            self.closed.set_result(info)
        waiting, self._waiting = self._waiting, {}
        err = self._lost_error()
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(err)
        self._out.put_nowait(None)

    async def close(self) -> None:
        """Close normally (code 1000): the switch releases the node's ports."""
        await self.ws.close()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)

    def abort(self, error: errors.SwitchError | None = None) -> None:
        """Drop the TCP connection without a close handshake (the switch sees it as lost)."""
        if error is not None and self.abort_error is None:
            self.abort_error = error
        self.ws.transport.abort()
