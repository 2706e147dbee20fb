"""The coordination calls of :class:`~reaktor_client.Client` (issue 15): watches that
resume where they stopped, listings, handover, compare-and-register, sessions and
acknowledged delivery.

* **Watches** (:meth:`Coordination.watch`): the client numbers its watches, keeps each one's
  cursor (the last sequence number seen per switch instance) and, after a reconnect, starts
  them again *from* that cursor, so the application gets every event exactly once, or a
  :class:`~reaktor_client.types.Missed` naming the range the switch no longer had.
* **Listings** are async iterators that fetch pages of ``page_size`` as they are read.
* **Handover**: ports given to this node are held (and re-registered after a reconnect) from
  the :class:`~reaktor_client.types.HandedOver` push on; ports taken from it by
  compare-and-register stop being held at :class:`~reaktor_client.types.PortMoved`.
* **Acknowledged delivery**: the messages of a received batch pushed with ``ack`` numbers
  are acknowledged, with one ``ack`` per batch, once the batch is in the application's hands:
  the callback returned for each, or the batch is in the client's event buffer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable

from . import errors

log = logging.getLogger("reaktor_client")
from .types import (Acknowledged, FailedPort, FencingToken, Handover, HandedOver, Missed, NodeInfo, PortMoved,
                    PortOwner, Registration, WatchEvent)

#: ``if_owner`` left out: an ordinary registration.
_UNSET: Any = object()


@dataclass
class _Watch:
    kind: str
    key: str
    prefix: bool
    #: The last sequence number seen per switch instance (None until the first reply).
    cursor: list[int] | None = None
    #: Sequence numbers seen before the cursor is known (events may precede the reply).
    early: dict[int, int] | None = None

    @classmethod
    def of(cls, ports: str | None, nodes: str | None, prefix: bool) -> "_Watch":
        """The watch a ``watch(ports=..., nodes=..., prefix=...)`` call asks for."""
        if (ports is None) == (nodes is None):
            raise ValueError("watch ports or nodes, not both")
        if ports is not None:
            return cls("ports", ports, prefix)
        return cls("nodes", nodes, prefix)  # type: ignore[arg-type]

    def advance(self, instance: int, seq: int) -> None:
        if self.cursor is not None and 0 <= instance < len(self.cursor):
            self.cursor[instance] = max(self.cursor[instance], seq)
        else:
            self.early = self.early or {}
            self.early[instance] = max(self.early.get(instance, 0), seq)

    def settle(self, cursor: list[int]) -> None:
        """The switch's cursor for the watch: nothing seen is ever asked for again."""
        merged = list(cursor)
        for i, seq in (self.early or {}).items():
            if 0 <= i < len(merged):
                merged[i] = max(merged[i], seq)
        if self.cursor is not None and len(self.cursor) == len(merged):
            merged = [max(a, b) for a, b in zip(merged, self.cursor)]
        self.cursor, self.early = merged, None


class Coordination:
    """Mixed into :class:`~reaktor_client.Client`; see the module documentation."""

    _watches: dict[int, _Watch]
    _next_watch: int
    _session: int | None
    _ready: bool
    _refences: set[asyncio.Task]

    @property
    def session(self) -> int | None:
        """The session of the current receiving connection (its first push names it). REST
        calls made for this node may name it, so that they fail instead of landing in a
        later connection."""
        return self._session

    @property
    def watches(self) -> dict[int, tuple[str, str, bool, list[int] | None]]:
        """The watches: id -> (``ports``/``nodes``, key, prefix, cursor)."""
        return {i: (w.kind, w.key, w.prefix, w.cursor) for i, w in self._watches.items()}

    # ---- calls outside the batches ---------------------------------------------------------

    async def _direct(self, op: str, **fields: Any) -> dict:
        """Send one request on the current connection (waiting for one) and return its reply;
        errors raise."""
        if self._closed is not None:  # type: ignore[attr-defined]
            raise self._closed  # type: ignore[attr-defined]
        timeout = self.options.call_timeout  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(timeout):
                while not self._ready or self._conn is None:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)
                    if self._closed is not None:  # type: ignore[attr-defined]
                        raise self._closed  # type: ignore[attr-defined]
                reply = await self._conn.request(op, **fields)  # type: ignore[attr-defined]
        except TimeoutError:
            raise errors.CallTimeout(f"{op}: no reply within {timeout} s") from None
        if "error" in reply:
            raise errors.from_reply(reply["error"])
        return reply

    # ---- watches -----------------------------------------------------------------------------

    async def watch(self, *, ports: str | None = None, nodes: str | None = None,
                    prefix: bool = False) -> int:
        """Watch the ports (or nodes) named ``ports`` (``nodes``), or starting with it if
        ``prefix``: their events arrive as :class:`~reaktor_client.types.WatchEvent` among the
        client's events, from now on and across reconnects. Returns the watch's id."""
        w = _Watch.of(ports, nodes, prefix)
        wid = self._next_watch
        self._next_watch += 1
        self._watches[wid] = w
        try:
            reply = await self._direct("watch", watch=wid, **{w.kind: w.key}, prefix=prefix)
        except BaseException:
            self._watches.pop(wid, None)
            raise
        w.settle(reply["cursor"])
        return wid

    async def unwatch(self, watch: int) -> None:
        """End a watch."""
        if self._watches.pop(watch, None) is None:
            raise errors.BadRequest(f"no watch {watch}")
        await self._direct("unwatch", watch=watch)

    async def _restore_watches(self, conn: Any) -> None:
        """After a (re)connect: every watch again, from its cursor."""
        timeout = self.options.call_timeout  # type: ignore[attr-defined]
        for wid, w in list(self._watches.items()):
            fields: dict[str, Any] = {"watch": wid, w.kind: w.key, "prefix": w.prefix}
            if w.cursor is not None:
                fields["from"] = w.cursor
            reply = await conn.call("watch", timeout=timeout, **fields)
            if "error" in reply and reply["error"].get("code") == "bad_cursor":
                # A switch that does not know the cursor (another cluster, other instances):
                # from now on, telling the application that it may have missed anything.
                fields.pop("from")
                w.cursor = None
                reply = await conn.call("watch", timeout=timeout, **fields)
                await self._emit_control(Missed(wid, -1, 0, 0))  # type: ignore[attr-defined]
            if "error" in reply:
                raise errors.from_reply(reply["error"])
            w.settle(reply["cursor"])

    def _watch_push(self, p: dict) -> WatchEvent | Missed | None:
        w = self._watches.get(p.get("watch"))
        if w is None:
            return None
        instance = int(p.get("instance", 0))
        if p["type"] == "missed":
            return Missed(p["watch"], instance, int(p["from"]), int(p["to"]))
        seq = int(p["seq"])
        w.advance(instance, seq)
        return WatchEvent(p["watch"], p["event"], port=p.get("port"), node=p.get("node"),
                          owner=p.get("owner"), address=p.get("address"), reason=p.get("reason"),
                          previous=p.get("from"), seq=seq, instance=instance)

    # ---- listings ----------------------------------------------------------------------------

    async def list_ports(self, prefix: str = "", *, page_size: int | None = None) -> AsyncIterator[PortOwner]:
        """Every port whose name starts with ``prefix``, in name order, a page at a time."""
        after = None
        while True:
            fields: dict[str, Any] = {"prefix": prefix, "after": after}
            if page_size is not None:
                fields["limit"] = page_size
            page = await self._direct("listports", **fields)
            for p in page["ports"]:
                yield PortOwner(p["port"], p["owner"], p.get("address"))
            after = page.get("next")
            if after is None:
                return

    async def list_nodes(self, prefix: str = "", *, page_size: int | None = None) -> AsyncIterator[NodeInfo]:
        """Every online node whose id starts with ``prefix``, in id order."""
        after = None
        while True:
            fields: dict[str, Any] = {"prefix": prefix, "after": after}
            if page_size is not None:
                fields["limit"] = page_size
            page = await self._direct("listnodes", **fields)
            for n in page["nodes"]:
                yield NodeInfo(n["node"], True, n.get("address"), n["ports"])
            after = page.get("next")
            if after is None:
                return

    async def node_ports(self, node: str | None = None, *, page_size: int | None = None) -> AsyncIterator[str]:
        """The ports of ``node`` (default: this one). A port may come twice if the listing had
        to start a part again (a port it stood at left the node meanwhile)."""
        after = None
        while True:
            fields: dict[str, Any] = {"node": node or self.node, "after": after}  # type: ignore[attr-defined]
            if page_size is not None:
                fields["limit"] = page_size
            page = await self._direct("nodeports", **fields)
            for p in page["ports"]:
                yield p
            after = page.get("next")
            if after is None:
                return

    # ---- handover and compare-and-register ---------------------------------------------------

    async def handover(self, to: str, ports: str | Iterable[str]) -> Handover:
        """Move ``ports`` of this node to node ``to`` (online) at once: nobody sees them free,
        watchers see one ``moved`` each, ``to`` is told. The moved ports are no longer held."""
        ports = [ports] if isinstance(ports, str) else list(ports)
        reply = await self._direct("handover", to=to, ports=ports)
        for p in reply["moved"]:
            self._held.pop(p, None)  # type: ignore[attr-defined]
        return Handover(tuple(reply["moved"]), tuple(reply["not_owned"]), tuple(reply["unknown"]))

    async def register_if(self, ports: str | Iterable[str], owner: str | None) -> Registration:
        """Compare-and-register: make this node the owner of each of ``ports`` only if its
        owner is ``owner`` (``None``: nobody). A port of another node moves (this client's
        token must also be granted that node). The others fail with their owner (``None``:
        the port is free)."""
        ports = [ports] if isinstance(ports, str) else list(ports)
        reply = await self._direct("regport", ports=ports, if_owner=owner)
        failed = {f["port"]: FailedPort(f["port"], f["owner"], f.get("address")) for f in reply["failed"]}
        owned = tuple(p for p in ports if p not in failed)
        # From a cluster's master, the reply's stamp is the fencing token of every port won.
        token = None
        if "epoch" in reply and "sequence" in reply:
            token = FencingToken(int(reply["epoch"]), int(reply["sequence"]))
        for p in owned:
            self._held[p] = token  # type: ignore[attr-defined]
        tokens = {p: token for p in owned} if token is not None else {}
        return Registration(owned=owned, failed=tuple(failed.values()), tokens=tokens,
                            epoch=token.epoch if token is not None else None)

    # ---- acknowledged delivery ---------------------------------------------------------------

    async def send_acked(self, port: str | Iterable[str], body: str) -> Acknowledged:
        """SendMsg whose reply waits until the receivers acknowledged the message (their
        clients do once their application has it), or went offline, or a lease passed."""
        msg = {"port": port, "body": body} if isinstance(port, str) else {"ports": list(port), "body": body}
        reply = await self._direct("sendmsg", messages=[msg], ack=True)
        return Acknowledged(int(reply["delivered"]), int(reply["dropped"]),
                            int(reply.get("acknowledged", 0)), int(reply.get("unacknowledged", 0)))

    # ---- pushes ------------------------------------------------------------------------------

    def _spawn_refence(self, port: str) -> None:
        async def refence() -> None:
            try:
                await self.register(port)  # type: ignore[attr-defined]
            except errors.SwitchError as e:
                log.warning("registering handed-over port %r for its fencing token: %s", port, e)
        task = asyncio.get_running_loop().create_task(refence())
        self._refences.add(task)
        task.add_done_callback(self._refences.discard)

    def _coordination_push(self, p: dict) -> Any:
        """The event of a coordination push, or None (consumed here, or unknown)."""
        kind = p.get("type")
        if kind == "session":
            self._session = int(p["session"])
            return None
        if kind == "epoch":
            return None
        if kind in ("watch", "missed"):
            return self._watch_push(p)
        if kind == "handover":
            self._held[p["port"]] = None  # type: ignore[attr-defined]
            if self._epoch is not None:  # type: ignore[attr-defined]
                # From a cluster's master: registering the port again (it is this node's
                # already) gives it a fencing token newer than every one of its previous owner.
                self._spawn_refence(p["port"])
            return HandedOver(p["port"], p["from"], int(p.get("seq", 0)))
        if kind == "moved":
            self._held.pop(p["port"], None)  # type: ignore[attr-defined]
            return PortMoved(p["port"], p["to"], int(p.get("seq", 0)))
        return None
