"""The high-level client: :func:`connect` returns a :class:`Client` that keeps a node online.

What it does for the application:

* keeps **one receiving connection** (WaitMsg over WebSocket) to the first member of the URL
  list that accepts it, following redirects and waiting out ``503 Retry-After``;
* **renews the lease** by itself (a ``relet`` every quarter lease) and drops a connection
  whose renewal goes unanswered;
* **reconnects** with exponential backoff and jitter, then **re-registers** the ports it held
  (in batches) and tells the application which ones another node took meanwhile
  (:class:`~reaktor_client.types.Reconnected`);
* **follows a cluster's master**: a member that is not the master redirects it (307), one
  in an election says when to retry (503 with ``retry_after_ms``), a master that loses its
  lease closes the connection (4003, :class:`~reaktor_client.errors.MasterLost`); the client
  tracks the master's **epoch** (:attr:`Client.epoch`) and each held port's **fencing
  token** (:meth:`Client.fencing_token`), which a failover renews;
* **batches**: calls made in one event-loop turn go out as one request per run of calls of
  the same kind, split to stay within :class:`ClientOptions` limits;
* delivers pushes and release notifications as an async iterator (:meth:`Client.events`) or
  to a callback, through a **bounded buffer**.

Back-pressure policy: the buffer holds at most ``max_buffered_events`` pushes. When it is
full the client stops reading the connection (the switch's queue for the node grows, and the
switch disconnects the node as a slow consumer past its ``max_queued_bytes``). If the buffer
is still full after ``max_stall`` seconds, the client drops the connection itself with
:class:`~reaktor_client.errors.SlowConsumer`, reconnects and restores its ports: pushes still
queued at the switch are lost then, and the application is told by a
:class:`~reaktor_client.types.Disconnected` event. Nothing is dropped silently and memory
stays bounded. With a callback (``on_event``), the reader awaits the callback, so a slow
callback slows reading the same way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

from . import errors
from .batching import Call, Limits, plan
from .connection import Connection, base_url
from .coordination import Coordination
from .types import (Disconnected, Event, FailedPort, FencingToken, Message, NodeInfo, PortOwner,
                    Push, Reconnected, Registration, Released, SendReport, Unregistration)

log = logging.getLogger("reaktor_client")

#: Errors after which reconnecting cannot help.
TERMINAL = (errors.Unauthorized, errors.Forbidden, errors.BadRequest, errors.Replaced, errors.TokenRevoked)


@dataclass(frozen=True)
class ClientOptions:
    """Tuning of a :class:`Client`. The defaults suit the switch's default limits."""

    #: Most ports / messages / nodes in one request (the switch's ``max_*_per_request``).
    max_batch_items: int = 1000
    #: Most bytes of one request (below the switch's WebSocket message limit).
    max_batch_bytes: int = 1 << 20
    #: Seconds a call waits for its reply (including while the client reconnects).
    call_timeout: float = 30.0
    #: Pushes and release notifications buffered for the application.
    max_buffered_events: int = 65536
    #: Seconds the buffer may stay full before the client drops the connection itself.
    max_stall: float = 5.0
    #: First reconnect delay, and the cap of the exponential backoff (seconds).
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    #: Seconds the first connection may take (retries included) before :func:`connect` fails.
    connect_timeout: float = 30.0
    #: Seconds one opening handshake may take. Short, so that a member that accepts TCP but
    #: does not answer (a stopped process) holds the failover up only this long.
    open_timeout: float = 3.0
    #: Lease renewal interval; ``None``: a quarter of the switch's ``lease_ms``.
    renew_interval: float | None = None
    #: Redirects followed per member, and the longest ``Retry-After`` honoured (seconds).
    max_redirects: int = 5
    max_retry_after: float = 30.0


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential, capped, with
    "equal jitter" (half fixed, half random) so a fleet of nodes does not reconnect in step."""
    d = min(cap, initial * (2 ** min(attempt, 30)))
    return d / 2 + rng.uniform(0, d / 2)


class _EventBuffer:
    """Events for the application: pushes bounded by ``capacity``, connection events always
    admitted (there is at most one pair per reconnect)."""

    def __init__(self, capacity: int) -> None:
        self.q: collections.deque[Event | None] = collections.deque()
        self.capacity = capacity
        self.pushes = 0
        self.readable = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.stalled = False

    def put_control(self, ev: Event | None) -> None:
        self.q.append(ev)
        self.readable.set()

    async def put_pushes(self, evs: list[Event], stall: float) -> None:
        """Append pushes; raises TimeoutError if the buffer stays full longer than ``stall``."""
        free = self.capacity - self.pushes
        if len(evs) <= free:
            self.q.extend(evs)
            self.pushes += len(evs)
            self.readable.set()
            return
        for ev in evs:
            while self.pushes >= self.capacity:
                self.space.clear()
                self.stalled = True
                try:
                    async with asyncio.timeout(stall):
                        await self.space.wait()
                finally:
                    self.stalled = False
            self.q.append(ev)
            self.pushes += 1
            self.readable.set()

    async def get(self) -> Event | None:
        while not self.q:
            self.readable.clear()
            await self.readable.wait()
        ev = self.q.popleft()
        if isinstance(ev, (Push, Released)):
            self.pushes -= 1
            if self.pushes < self.capacity:
                self.space.set()
        if ev is None:
            self.q.appendleft(None)  # end of stream stays the end
        return ev


def _ports(ports: str | Iterable[str]) -> list[str]:
    return [ports] if isinstance(ports, str) else list(ports)


class Client(Coordination):
    """A node's connection to the port switch. Create it with :func:`connect`.

    Methods are coroutines; calls made in the same event-loop turn are batched. Errors are
    :class:`~reaktor_client.errors.SwitchError` subclasses.
    """

    def __init__(self, urls: Sequence[str], node: str, token: str | None, address: str | None,
                 options: ClientOptions, on_event: Callable[[Event], Awaitable[None] | None] | None) -> None:
        if not urls:
            raise ValueError("need at least one member URL")
        #: The member URLs, normalised to ``ws://host:port``.
        self.urls = [base_url(u) for u in urls]
        self.node = node
        self._token = token
        self.address = address
        self.options = options
        self._on_event = on_event
        self._limits = Limits(options.max_batch_items, options.max_batch_bytes)
        self._conn: Connection | None = None
        self._ready = False
        self._closed: errors.SwitchError | None = None
        self._outbox: list[Call] = []
        self._flush_scheduled = False
        #: Held ports and their fencing tokens (None from a switch that runs alone).
        self._held: dict[str, FencingToken | None] = {}
        self._watched: dict[str, None] = {}
        self._epoch: int | None = None
        self._events = _EventBuffer(options.max_buffered_events)
        self._lease_ms: int | None = None
        self._member = 0
        self._rng = random.Random()
        self._connected_once = asyncio.get_running_loop().create_future()
        self._supervisor: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None
        self._watches = {}
        self._refences = set()
        self._next_watch = 1
        self._session = None

    # ---- state -------------------------------------------------------------------------------

    @property
    def held(self) -> frozenset[str]:
        """Ports this node holds (registered and not released); restored after a reconnect."""
        return frozenset(self._held)

    @property
    def watched(self) -> frozenset[str]:
        """Ports asked for with ``subscribe=True`` that another node owned: the client waits
        for their release (and asks for them again after a reconnect)."""
        return frozenset(self._watched)

    @property
    def connected(self) -> bool:
        """Whether the receiving connection is open and restored."""
        return self._ready

    @property
    def url(self) -> str | None:
        """The member the client is connected to (``ws://host:port``), if connected."""
        return self._conn.url if self._conn is not None else None

    @property
    def epoch(self) -> int | None:
        """The epoch of the cluster master this client last heard from (None: the switch runs
        alone). It only grows; a failover raises it."""
        return self._epoch

    def fencing_token(self, port: str) -> FencingToken | None:
        """The fencing token of a held ``port``, to hand to storage with every write it guards
        (None if the port is not held, or the switch runs alone)."""
        return self._held.get(port)

    def _see_epoch(self, epoch: Any) -> None:
        if not isinstance(epoch, int):
            return
        if self._epoch is not None and epoch < self._epoch:
            log.warning("%s: epoch %d after %d: ignored", self.node, epoch, self._epoch)
            return
        if self._epoch is not None and epoch > self._epoch:
            log.info("%s: master epoch %d -> %d", self.node, self._epoch, epoch)
        self._epoch = epoch

    @property
    def lease_ms(self) -> int | None:
        """The switch's lease, learnt from the first renewal."""
        return self._lease_ms

    # ---- calls -------------------------------------------------------------------------------

    async def register(self, ports: str | Iterable[str], *, subscribe: bool = False) -> Registration:
        """RegPort: make this node the owner of ``ports``. Ports owned by other nodes come back
        in ``failed`` with their owner (discovery); with ``subscribe`` the client is told
        (:class:`~reaktor_client.types.Released`) when they are released."""
        return await self._call("regport", _ports(ports), subscribe=subscribe)

    async def unregister(self, ports: str | Iterable[str]) -> Unregistration:
        """UnRegPort: release ``ports`` (only this node's); subscribers are notified. The ports
        also stop being watched."""
        return await self._call("unregport", _ports(ports))

    async def send(self, port: str | Iterable[str], body: str) -> None:
        """SendMsg: send ``body`` to ``port`` (``""`` broadcasts) or to each port of a list.
        Returns once the switch accepted it; unknown ports drop it silently (BYPSS). Use
        :meth:`send_report` for the counts."""
        await self._call("sendmsg", [_message(port, body)])

    async def send_many(self, messages: Iterable[Message]) -> None:
        """SendMsg of several messages, in order (batched with other calls)."""
        await self._call("sendmsg", [m.to_json() for m in messages])

    async def send_report(self, messages: Iterable[Message]) -> SendReport:
        """SendMsg in a request of its own, returning how many pushes were queued and how many
        targets were dropped (unknown port or owner gone)."""
        return await self._call("sendmsg", [m.to_json() for m in messages], exclusive=True)

    async def query_port(self, port: str) -> PortOwner:
        """QueryPort of one port."""
        return (await self.query_ports([port]))[0]

    async def query_ports(self, ports: Iterable[str]) -> tuple[PortOwner, ...]:
        """QueryPort: owner and address of each port, in order."""
        return await self._call("queryport", _ports(ports))

    async def query_node(self, node: str) -> NodeInfo:
        """QueryNode of one node."""
        return (await self.query_nodes([node]))[0]

    async def query_nodes(self, nodes: Iterable[str]) -> tuple[NodeInfo, ...]:
        """QueryNode: state, address and port count of each node, in order."""
        return await self._call("querynode", _ports(nodes))

    async def _call(self, op: str, items: list, *, subscribe: bool = False, exclusive: bool = False) -> Any:
        if self._closed is not None:
            raise self._closed
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            if error is None:
                self._after(op, items, subscribe, result)
            if not fut.done():
                fut.set_exception(error) if error is not None else fut.set_result(result)

        if op == "unregport":
            for p in items:
                self._held.pop(p, None)
                self._watched.pop(p, None)
        self._outbox.append(Call(op, items, subscribe, exclusive, done))
        self._schedule_flush()
        try:
            async with asyncio.timeout(self.options.call_timeout):
                return await fut
        except TimeoutError:
            raise errors.CallTimeout(f"{op}: no reply within {self.options.call_timeout} s "
                                     f"({'connected' if self._ready else 'reconnecting'})") from None

    def _after(self, op: str, items: list, subscribe: bool, result: Any) -> None:
        """Track what the node holds from a successful call's result."""
        if op == "regport":
            for p in result.owned:
                self._held[p] = result.tokens.get(p)
                self._watched.pop(p, None)
            if subscribe:
                for f in result.failed:
                    self._watched[f.port] = None

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._ready:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._ready or not self._outbox or self._conn is None:
            return
        calls, self._outbox = self._outbox, []
        for req in plan(calls, self._limits):
            self._send(self._conn, req)

    def _send(self, conn: Connection, req: Any) -> None:
        rid = conn.next_id()
        fut = conn.expect(rid)
        conn.send_text(req.text(rid))
        fut.add_done_callback(lambda f: self._on_reply(conn, req, f))

    def _on_reply(self, conn: Connection, req: Any, fut: asyncio.Future) -> None:
        if fut.cancelled():
            req.fail(errors.ConnectionLost("call cancelled"))
            return
        if fut.exception() is not None:
            req.fail(fut.exception())
            return
        reply = fut.result()
        self._see_epoch(reply.get("epoch"))
        if req.unmerge(reply) and not conn.closed.done():
            for r in req.unmerged():
                self._send(conn, r)
            return
        req.resolve(reply)

    # ---- events ------------------------------------------------------------------------------

    async def next_event(self) -> Event | None:
        """The next event, or None once the client is closed and every event was read."""
        return await self._events.get()

    async def events(self) -> AsyncIterator[Event]:
        """Pushes, release notifications and connection events, oldest first, until the
        client is closed."""
        while True:
            ev = await self._events.get()
            if ev is None:
                return
            yield ev

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def _emit_control(self, ev: Event) -> None:
        if self._on_event is not None:
            r = self._on_event(ev)
            if r is not None:
                await r
        else:
            self._events.put_control(ev)

    async def _on_pushes(self, conn: Connection, batch: list) -> None:
        evs: list[Event] = []
        ack = 0
        for p in batch:
            kind = p.get("type")
            if kind == "msg":
                evs.append(Push(p["port"], p["body"]))
                ack = max(ack, int(p.get("ack", 0)))
            elif kind == "released":
                self._watched.pop(p["port"], None)
                evs.append(Released(p["port"], p["reason"]))
            elif kind == "epoch":
                self._see_epoch(p.get("epoch"))
            else:
                ev = self._coordination_push(p)
                if ev is not None:
                    evs.append(ev)
                elif kind not in ("session", "epoch", "watch", "missed"):
                    log.warning("%s: unknown push %r", self.node, p)
        if self._on_event is not None:
            for ev in evs:
                r = self._on_event(ev)
                if r is not None:
                    await r
        else:
            try:
                await self._events.put_pushes(evs, self.options.max_stall)
            except TimeoutError:
                conn.abort(errors.SlowConsumer(
                    f"the client's event buffer ({self.options.max_buffered_events} events) stayed full "
                    f"for {self.options.max_stall} s", close_code=None))
                return
        if ack and not conn.closed.done():
            # The application has the batch: acknowledge its acknowledged-delivery pushes.
            conn.request("ack", upto=ack).add_done_callback(_retrieve)

    # ---- connection lifecycle ------------------------------------------------------------------

    async def _start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise())
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await asyncio.shield(self._connected_once)
        except TimeoutError:
            await self.close()
            raise errors.ConnectFailed(f"could not connect to {self.urls} within "
                                       f"{self.options.connect_timeout} s") from None
        except BaseException:
            await self.close()
            raise

    async def _supervise(self) -> None:
        attempt = 0
        first = True
        o = self.options
        while self._closed is None:
            box: list = [None]  # the connection, for its push handler
            try:
                conn = await Connection.open(
                    self.urls, self.node, self._token, address=self.address, open_timeout=o.open_timeout,
                    max_redirects=o.max_redirects, max_retry_after=o.max_retry_after, start=self._member,
                    on_pushes=lambda batch, box=box: self._on_pushes(box[0], batch))
            except TERMINAL as e:
                self._terminate(e, first)
                return
            except errors.SwitchError as e:
                if isinstance(e, errors.Unavailable) and e.retry_after is not None:
                    # The switch said when (an election runs): no need to back off further.
                    delay = e.retry_after * self._rng.uniform(1.0, 1.2)
                else:
                    delay = backoff_delay(attempt, o.backoff_initial, o.backoff_max, self._rng)
                    attempt += 1
                self._member += 1  # try the next member first next time
                log.info("%s: connect failed (%s); retry in %.2f s", self.node, e, delay)
                await asyncio.sleep(delay)
                continue
            box[0] = conn
            self._conn = conn
            self._member = self.urls.index(conn.url) if conn.url in self.urls else self._member
            try:
                await self._restore(conn, first)
            except errors.SwitchError as e:
                log.warning("%s: restoring on %s failed: %s", self.node, conn.url, e)
                conn.abort(e if isinstance(e, errors.ConnectionLost) else errors.ConnectionLost(str(e)))
            else:
                attempt = 0
                if first:
                    first = False
                    if not self._connected_once.done():
                        self._connected_once.set_result(None)
                self._ready = True
                self._schedule_flush()
                self._renewer = asyncio.create_task(self._renew(conn))
            await asyncio.shield(conn.closed)
            self._ready = False
            self._conn = None
            if self._renewer is not None:
                self._renewer.cancel()
            if self._closed is not None:
                return
            err = conn._lost_error()
            if isinstance(err, (errors.Replaced, errors.TokenRevoked)):
                self._terminate(err, False)
                return
            if isinstance(err, errors.ConnectionLost):
                # The member went silent or away (stopped, killed, cut off): it would only hold
                # up the next handshake; another member knows the master.
                self._member += 1
            await self._emit_control(Disconnected(err, held=len(self._held)))
            # While the application's buffer is full there is no point reconnecting: wait for
            # it to read.
            while self._events.pushes >= self._events.capacity:
                self._events.space.clear()
                await self._events.space.wait()
            delay = backoff_delay(attempt, o.backoff_initial, o.backoff_max, self._rng)
            attempt += 1
            log.info("%s: connection lost (%s); reconnecting in %.2f s", self.node, err, delay)
            await asyncio.sleep(delay)

    async def _restore(self, conn: Connection, first: bool) -> None:
        """Learn the lease, then re-register held ports and re-ask for watched ones, before any
        queued application call goes out."""
        t = self.options.call_timeout
        previous_epoch = self._epoch
        relet = await conn.call("relet", timeout=t)
        if "error" in relet:
            raise errors.from_reply(relet["error"])
        self._lease_ms = int(relet["lease_ms"])
        self._see_epoch(relet.get("epoch"))
        held, watched = list(self._held), list(self._watched)
        loop = asyncio.get_running_loop()
        results: dict[str, asyncio.Future] = {}
        calls = []
        for name, ports, sub in (("held", held, False), ("watched", watched, True)):
            fut = loop.create_future()
            results[name] = fut
            calls.append(Call("regport", ports, sub, False,
                              lambda r, e, fut=fut: fut.done() or (fut.set_exception(e) if e else fut.set_result(r))))
        for req in plan(calls, self._limits):
            self._send(conn, req)
        async with asyncio.timeout(t):
            reg_held = await results["held"]
            reg_watched = await results["watched"]
        lost = tuple(reg_held.failed)
        for f in lost:
            self._held.pop(f.port, None)
        for p in reg_held.owned:
            if p in self._held:
                self._held[p] = reg_held.tokens.get(p)
        acquired = tuple(reg_watched.owned)
        for p in acquired:
            self._held[p] = reg_watched.tokens.get(p)
            self._watched.pop(p, None)
        await self._restore_watches(conn)
        if not first:
            await self._emit_control(Reconnected(conn.url, restored=len(reg_held.owned), lost=lost,
                                                 acquired=acquired, epoch=self._epoch,
                                                 previous_epoch=previous_epoch))

    async def _renew(self, conn: Connection) -> None:
        """Relet every ``renew_interval`` (default: a quarter lease), on a fixed schedule
        whatever the replies do. A renewal unanswered for half the lease, with nothing else
        received meanwhile and the reader not held up by a full event buffer, means the
        connection is dead: drop it so the client reconnects."""
        lease = (self._lease_ms or 10000) / 1000
        every = self.options.renew_interval or lease / 4
        pending: collections.deque[tuple[float, asyncio.Future]] = collections.deque()
        while not conn.closed.done():
            await asyncio.sleep(every)
            now = loop_time()
            while pending and pending[0][1].done():
                fut = pending.popleft()[1]
                if not fut.cancelled() and fut.exception() is None and "error" in fut.result():
                    log.warning("%s: renewal refused: %s", self.node, fut.result()["error"])
            if self._events.stalled:
                for k, (_, fut) in enumerate(pending):
                    pending[k] = (now, fut)
            elif pending and now - pending[0][0] > lease / 2 and now - conn.last_received > lease / 2:
                # Unanswered, and nothing else arrived either (a busy connection answers late
                # because the replies queue behind pushes: that is not a dead one).
                conn.abort(errors.ConnectionLost(f"no reply to a lease renewal within {lease / 2:.1f} s"))
                return
            if conn.closed.done():
                return
            fut = conn.request("relet")
            fut.add_done_callback(_retrieve)
            pending.append((now, fut))

    def _terminate(self, err: errors.SwitchError, first: bool) -> None:
        self._closed = err
        if not self._connected_once.done():
            self._connected_once.set_exception(err)
        for call in self._outbox:
            call.done(None, err)
        self._outbox = []
        if not first:
            self._events.put_control(Disconnected(err, held=len(self._held), final=True))
        self._held.clear()
        self._events.put_control(None)

    async def close(self) -> None:
        """Close the receiving connection normally: the switch releases this node's ports.
        Pending calls fail with :class:`~reaktor_client.errors.ClientClosed`."""
        if self._closed is None:
            self._closed = errors.ClientClosed("the client was closed")
        for call in self._outbox:
            call.done(None, self._closed)
        self._outbox = []
        self._ready = False
        if self._renewer is not None:
            self._renewer.cancel()
        conn = self._conn
        if conn is not None:
            conn.abort_error = self._closed
            await conn.close()
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._held.clear()
        self._events.put_control(None)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _retrieve(fut: asyncio.Future) -> None:
    """Mark a renewal's failure as seen (the connection's loss is reported elsewhere)."""
    if not fut.cancelled():
        fut.exception()


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _message(port: str | Iterable[str], body: str) -> dict:
    if isinstance(port, str):
        return {"port": port, "body": body}
    return {"ports": list(port), "body": body}


async def connect(urls: str | Sequence[str], node: str, token: str | None, *, address: str | None = None,
                  options: ClientOptions | None = None,
                  on_event: Callable[[Event], Awaitable[None] | None] | None = None) -> Client:
    """Connect ``node`` to the switch at ``urls`` (one member URL or a list, e.g.
    ``"ws://127.0.0.1:8080"``) with bearer ``token``, announcing ``address`` to nodes whose
    registrations fail. Returns once the receiving connection is open.

    Raises :class:`~reaktor_client.errors.Unauthorized` / ``Forbidden`` / ``BadRequest`` at
    once, and :class:`~reaktor_client.errors.ConnectFailed` if no member accepted within
    ``options.connect_timeout``. With ``on_event`` events go to that callback (awaited if it
    returns an awaitable) instead of :meth:`Client.events`. Read the events (or pass
    ``on_event=lambda e: None``): a client whose buffer nobody empties is disconnected as a
    slow consumer once it is full.
    """
    client = Client([urls] if isinstance(urls, str) else list(urls), node, token, address,
                    options or ClientOptions(), on_event)
    await client._start()
    return client
