"""A watcher that is not a node: a dashboard, an operator's tool, a service that only wants to
know who holds ``leader/*``. It holds no ports and has no lease; its token must be granted the
names it watches (``watch_ports`` / ``watch_nodes`` in the switch's topology, or admin).

::

    watcher = await reaktor_client.watch("ws://127.0.0.1:8080", "demo-dash",
                                         ports="leader/", prefix=True)
    async for event in watcher:          # WatchEvent or Missed
        ...

The switch side is ``/v1/ws/`` (docs/openapi.yaml). The watcher keeps each watch's cursor
(the last sequence number seen per switch instance); when its connection is lost it connects
again (exponential backoff with jitter) and resumes every watch from its cursor, so each
event arrives once, or a :class:`~reaktor_client.types.Missed` names what the switch no longer
had (``instance`` -1: a switch that did not know the cursor at all). Events wait in a bounded
buffer: a reader that falls behind stops reading the socket, the switch closes the connection
as a slow consumer, and the watcher resumes from its cursor. A revoked or refused token ends
it: iterating raises the error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Sequence

from . import errors
from .client import backoff_delay
from .connection import Connection
from .coordination import _Watch
from .types import Missed, WatchEvent

log = logging.getLogger("reaktor_client")

#: Errors after which connecting again cannot help.
_FINAL = (errors.Unauthorized, errors.Forbidden, errors.BadRequest, errors.TokenRevoked)


class Watcher:
    """A node-less watcher; open it with :func:`watch`."""

    def __init__(self, urls: Sequence[str], token: str, *, max_events: int, reconnect: bool,
                 initial_backoff: float, max_backoff: float) -> None:
        self.urls, self.token = list(urls), token
        self.reconnect = reconnect
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self._watches: dict[int, _Watch] = {}
        self._next_watch = 1
        self._events: asyncio.Queue[WatchEvent | Missed | BaseException] = asyncio.Queue(max_events)
        self._conn: Connection | None = None
        self._connected: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task | None = None
        self._closing = False
        #: The session the current connection's first push named.
        self.session: int | None = None
        #: Connections opened so far (1 + reconnects).
        self.connections = 0
        self._rng = random.Random()

    @property
    def watches(self) -> dict[int, tuple[str, str, bool, list[int] | None]]:
        """The watches: id -> (``ports``/``nodes``, key, prefix, cursor)."""
        return {i: (w.kind, w.key, w.prefix, w.cursor) for i, w in self._watches.items()}

    # ---- pushes --------------------------------------------------------------------------------

    async def _on_pushes(self, batch: list) -> None:
        for p in batch:
            kind = p.get("type")
            if kind == "session":
                self.session = p.get("session")
            elif kind == "watching":
                w = self._watches.get(p.get("watch"))
                if w is not None:
                    w.settle(p["cursor"])
                if self._connected is not None and not self._connected.done():
                    self._connected.set_result(None)
            elif kind in ("watch", "missed"):
                w = self._watches.get(p.get("watch"))
                if w is None:
                    continue
                instance = int(p.get("instance", 0))
                if kind == "missed":
                    event: WatchEvent | Missed = Missed(p["watch"], instance, int(p["from"]), int(p["to"]))
                else:
                    seq = int(p["seq"])
                    w.advance(instance, seq)
                    event = WatchEvent(p["watch"], p["event"], port=p.get("port"), node=p.get("node"),
                                       owner=p.get("owner"), address=p.get("address"),
                                       reason=p.get("reason"), previous=p.get("from"), seq=seq,
                                       instance=instance)
                # A full buffer holds the socket's reader here (back-pressure to the switch).
                await self._events.put(event)

    # ---- connecting ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Opens a connection with the first watch in its query and the others by op, each
        from its cursor."""
        first_id = min(self._watches)
        first = self._watches[first_id]
        query = {first.kind: first.key, "prefix": "true" if first.prefix else "false", "watch": str(first_id)}
        if first.cursor is not None:
            query["from"] = ",".join(str(c) for c in first.cursor)
        self._connected = asyncio.get_running_loop().create_future()
        conn = await Connection.open(self.urls, None, self.token, query=query, on_pushes=self._on_pushes)
        self._conn = conn
        self.connections += 1
        done, _ = await asyncio.wait([self._connected, conn.closed], timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._connected not in done:
            code, reason = conn.closed.result() if conn.closed.done() else (None, "no watching push")
            if code == 4005 and "bad_cursor" in reason:
                # A switch that does not know the cursor (restarted elsewhere, other instances):
                # from now on, telling the application that it may have missed anything.
                first.cursor = None
                await self._events.put(Missed(first_id, -1, 0, 0))
            raise errors.from_close(code, reason)
        for wid, w in sorted(self._watches.items()):
            if wid != first_id:
                await self._start(conn, wid, w)

    async def _start(self, conn: Connection, wid: int, w: _Watch) -> None:
        fields: dict[str, Any] = {"watch": wid, w.kind: w.key, "prefix": w.prefix}
        if w.cursor is not None:
            fields["from"] = w.cursor
        reply = await conn.call("watch", **fields)
        if "error" in reply and reply["error"].get("code") == "bad_cursor":
            fields.pop("from")
            w.cursor = None
            reply = await conn.call("watch", **fields)
            await self._events.put(Missed(wid, -1, 0, 0))
        if "error" in reply:
            raise errors.from_reply(reply["error"])
        w.settle(reply["cursor"])

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            conn = self._conn
            if conn is not None:
                await conn.closed
                if self._closing:
                    return
                err = conn._lost_error()
                log.info("watcher: connection lost: %s", err)
                if isinstance(err, _FINAL) or not self.reconnect:
                    await self._events.put(err)
                    return
            self._conn = None
            await asyncio.sleep(backoff_delay(attempt, self.initial_backoff, self.max_backoff, self._rng))
            attempt += 1
            try:
                await self._connect()
                attempt = 0
            except _FINAL as e:
                await self._events.put(e)
                return
            except (errors.SwitchError, OSError) as e:
                log.info("watcher: reconnect failed: %s", e)
                if self._conn is not None and not self._conn.closed.done():
                    self._conn.abort()

    # ---- the application's calls ---------------------------------------------------------------

    async def watch(self, *, ports: str | None = None, nodes: str | None = None, prefix: bool = False) -> int:
        """One more watch on this connection (and after every reconnect); its id."""
        w = _Watch.of(ports, nodes, prefix)
        wid = self._next_watch
        self._next_watch += 1
        self._watches[wid] = w
        if self._conn is None:
            raise errors.ConnectionLost("the watcher is reconnecting: try again")
        try:
            await self._start(self._conn, wid, w)
        except BaseException:
            self._watches.pop(wid, None)
            raise
        return wid

    async def unwatch(self, watch: int) -> None:
        """Ends a watch."""
        if self._watches.pop(watch, None) is None:
            raise errors.BadRequest(f"no watch {watch}")
        if self._conn is not None:
            reply = await self._conn.call("unwatch", watch=watch)
            if "error" in reply:
                raise errors.from_reply(reply["error"])

    async def next_event(self) -> WatchEvent | Missed:
        """The next event; raises the error that ended the watcher."""
        event = await self._events.get()
        if isinstance(event, BaseException):
            self._events.put_nowait(event)  # every later call raises it too
            raise event
        return event

    def __aiter__(self) -> "Watcher":
        return self

    async def __anext__(self) -> WatchEvent | Missed:
        try:
            return await self.next_event()
        except errors.ClientClosed:
            raise StopAsyncIteration from None

    def abort(self) -> None:
        """Drops the current connection (the watcher reconnects and resumes; for tests)."""
        if self._conn is not None:
            self._conn.abort(errors.ConnectionLost("dropped by the application"))

    async def close(self) -> None:
        """Closes the connection; iterating ends."""
        self._closing = True
        if self._conn is not None:
            await self._conn.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        while self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(errors.ClientClosed("the watcher was closed"))


async def watch(urls: str | Sequence[str], token: str, *, ports: str | None = None, nodes: str | None = None,
                prefix: bool = False, max_events: int = 10_000, reconnect: bool = True,
                initial_backoff: float = 0.1, max_backoff: float = 5.0) -> Watcher:
    """Opens a watcher that is not a node at the first of ``urls`` that accepts it, watching
    the ports (or nodes) named ``ports`` (``nodes``), or starting with it if ``prefix``. More
    watches with :meth:`Watcher.watch`. Raises ``Forbidden`` if the token may not watch the
    names, ``RateLimited`` / ``Unavailable`` beyond the switch's watcher limits."""
    first = _Watch.of(ports, nodes, prefix)
    w = Watcher([urls] if isinstance(urls, str) else urls, token, max_events=max_events,
                reconnect=reconnect, initial_backoff=initial_backoff, max_backoff=max_backoff)
    w._watches[1] = first
    w._next_watch = 2
    await w._connect()
    w._supervisor = asyncio.create_task(w._supervise())
    return w
