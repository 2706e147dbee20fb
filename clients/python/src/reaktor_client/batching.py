"""Batching without I/O: calls in, request texts out; replies in, per-call results out.

Calls made in one event-loop turn are queued; :func:`plan` merges runs of consecutive calls of
the same kind into as few requests as the limits allow (a call larger than a limit is split
over several requests), keeping the order of the calls: the switch runs the requests of one
connection in order. :meth:`Request.resolve` splits a reply back into each call's result.
A merged request that the switch refuses as a whole for a reason one call can cause (a bad or
too long port name, a per-request limit) is re-planned with one request per call, so only the
guilty call fails (:meth:`Request.unmerge`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from . import errors
from .types import (FailedPort, FencingToken, NodeInfo, PortOwner, Registration, SendReport,
                    Unregistration)

#: Error codes one call of a merged request can cause for the whole request.
UNMERGE_CODES = frozenset({"bad_json", "bad_request", "empty_port", "empty_node", "limit_exceeded"})

#: Ops whose items are ports / messages / nodes, by the request field that carries them.
ITEM_FIELD = {"regport": "ports", "unregport": "ports", "queryport": "ports",
              "querynode": "nodes", "sendmsg": "messages"}


@dataclass(frozen=True)
class Limits:
    """Most items and bytes per request (keep them at or below the switch's
    ``max_ports_per_request``, ``max_messages_per_request``, ``max_nodes_per_request`` and
    WebSocket message size)."""

    max_items: int = 1000
    max_bytes: int = 1 << 20


@dataclass(eq=False)
class Call:
    """One application call: ``op``, its items and a completion callback ``done(result,
    error)`` called exactly once. ``exclusive`` calls get a request of their own (their reply
    is theirs alone, e.g. a SendMsg whose counts the caller wants)."""

    op: str
    items: list = field(default_factory=list)
    subscribe: bool = False
    exclusive: bool = False
    done: Callable[[Any, BaseException | None], None] = lambda r, e: None
    parts: int = 0
    acc: Any = None
    failed: bool = False

    def key(self) -> tuple:
        return (self.op, self.subscribe)

    def finish_part(self, result: Any = None, error: BaseException | None = None) -> None:
        """One request carrying part of this call completed."""
        if self.failed:
            return
        if error is not None:
            self.failed = True
            self.done(None, error)
            return
        self.acc = merge(self.op, self.acc, result)
        self.parts -= 1
        if self.parts == 0:
            self.done(finish(self.op, self.acc), None)


def merge(op: str, acc: Any, part: Any) -> Any:
    if acc is None:
        return part
    if op in ("regport", "unregport", "queryport", "querynode"):
        return tuple(a + b for a, b in zip(acc, part))
    if op == "sendmsg" and part is not None:
        return (acc[0] + part[0], acc[1] + part[1])
    return part


def finish(op: str, acc: Any) -> Any:
    if op == "regport":
        tokens = dict(acc[2])
        epoch = max((t.epoch for t in tokens.values()), default=None)
        return Registration(owned=acc[0], failed=acc[1], tokens=tokens, epoch=epoch)
    if op == "unregport":
        return Unregistration(released=acc[0], not_owned=acc[1], unknown=acc[2])
    if op in ("queryport", "querynode"):
        return acc[0]
    if op == "sendmsg":
        return SendReport(delivered=acc[0], dropped=acc[1]) if acc is not None else None
    return acc


@dataclass(eq=False)
class Part:
    call: Call
    start: int
    end: int


@dataclass(eq=False)
class Request:
    """One request to the switch: its op, items and the calls (parts) it carries."""

    op: str
    subscribe: bool = False
    items: list = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    size: int = 0

    def text(self, request_id: int) -> str:
        """The WebSocket message of this request."""
        body: dict[str, Any] = {"op": self.op, "id": request_id}
        if self.op in ITEM_FIELD:
            body[ITEM_FIELD[self.op]] = self.items
        if self.op == "regport" and self.subscribe:
            body["subscribe"] = True
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    def calls(self) -> list[Call]:
        seen: list[Call] = []
        for p in self.parts:
            if not seen or seen[-1] is not p.call:
                seen.append(p.call)
        return seen

    def unmerge(self, reply: dict) -> bool:
        """Whether an error ``reply`` should be retried with one request per call."""
        err = reply.get("error")
        return err is not None and err.get("code") in UNMERGE_CODES and len(self.parts) > 1

    def unmerged(self) -> list["Request"]:
        """One request per part, for a merged request the switch refused as a whole."""
        out = []
        for p in self.parts:
            items = self.items[p.start:p.end]
            out.append(Request(self.op, self.subscribe, items=items, parts=[Part(p.call, 0, len(items))]))
        return out

    def resolve(self, reply: dict) -> None:
        """Hand each call its part of ``reply`` (or the error it carries)."""
        err = reply.get("error")
        if err is not None:
            e = errors.from_reply(err)
            for call in self.calls():
                call.finish_part(error=e)
            return
        try:
            results = self._split(reply)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            bad = errors.SwitchError(f"unexpected reply to {self.op}: {e!r} in {reply!r}",
                                     hint="client and switch disagree on the API version")
            for call in self.calls():
                call.finish_part(error=bad)
            return
        for part, result in zip(self.parts, results):
            part.call.finish_part(result)

    def fail(self, error: BaseException) -> None:
        for call in self.calls():
            call.finish_part(error=error)

    def _split(self, reply: dict) -> list:
        op = self.op
        if op == "regport":
            failed = {f["port"]: FailedPort(f["port"], f["owner"], f.get("address")) for f in reply["failed"]}
            # A cluster's master stamps the reply: every port of it not in `failed` has the
            # fencing token (epoch, sequence).
            token = None
            if "epoch" in reply and "sequence" in reply:
                token = FencingToken(int(reply["epoch"]), int(reply["sequence"]))
            out = []
            for p in self.parts:
                ports = self.items[p.start:p.end]
                owned = tuple(x for x in ports if x not in failed)
                out.append((owned,
                            tuple(failed[x] for x in dict.fromkeys(ports) if x in failed),
                            tuple((x, token) for x in owned) if token is not None else ()))
            return out
        if op == "unregport":
            released, not_owned = set(reply["released"]), set(reply["not_owned"])
            out = []
            for p in self.parts:
                ports = self.items[p.start:p.end]
                out.append((tuple(x for x in ports if x in released),
                            tuple(x for x in ports if x in not_owned),
                            tuple(x for x in ports if x not in released and x not in not_owned)))
            return out
        if op == "queryport":
            infos = [PortOwner(x["port"], x.get("owner"), x.get("address")) for x in reply["ports"]]
            if len(infos) != len(self.items):
                raise ValueError("queryport reply has another length than the request")
            return [(tuple(infos[p.start:p.end]),) for p in self.parts]
        if op == "querynode":
            infos = [NodeInfo(x["node"], x["online"], x.get("address"), x["ports"]) for x in reply["nodes"]]
            if len(infos) != len(self.items):
                raise ValueError("querynode reply has another length than the request")
            return [(tuple(infos[p.start:p.end]),) for p in self.parts]
        if op == "sendmsg":
            counts = (int(reply["delivered"]), int(reply["dropped"]))
            # Counts are per request: only an exclusive call can have them.
            return [counts if p.call.exclusive else None for p in self.parts]
        return [reply for _ in self.parts]


def item_size(op: str, item: Any) -> int:
    """Bytes an item adds to a request (an estimate that errs high, escapes aside)."""
    if op == "sendmsg":
        ports = item.get("ports")
        n = len(item.get("port") or "") if ports is None else sum(len(p) + 3 for p in ports)
        return len(item["body"]) + n + 24
    return len(item) + 3


def plan(calls: list[Call], limits: Limits) -> list[Request]:
    """Merge ``calls`` (in order) into requests within ``limits``. Calls without items
    complete at once with an empty result and need no request."""
    requests: list[Request] = []
    cur: Request | None = None
    for call in calls:
        if call.op not in ITEM_FIELD:
            requests.append(Request(call.op, parts=[Part(call, 0, 0)]))
            call.parts = 1
            cur = None
            continue
        if not call.items:
            call.parts = 1
            call.finish_part(empty(call.op, call.exclusive))
            continue
        if call.exclusive:
            cur = None
        i, n = 0, len(call.items)
        while i < n:
            if (cur is None or (cur.op, cur.subscribe) != call.key() or len(cur.items) >= limits.max_items
                    or cur.size >= limits.max_bytes):
                cur = Request(call.op, call.subscribe)
                requests.append(cur)
            start = len(cur.items)
            while i < n and len(cur.items) < limits.max_items:
                size = item_size(call.op, call.items[i])
                if cur.items and cur.size + size > limits.max_bytes:
                    break
                cur.items.append(call.items[i])
                cur.size += size
                i += 1
            cur.parts.append(Part(call, start, len(cur.items)))
            call.parts += 1
            if i < n:
                cur = None
        if call.exclusive:
            cur = None
    return requests


def empty(op: str, exclusive: bool) -> Any:
    return {"regport": ((), (), ()), "unregport": ((), (), ()), "queryport": ((),), "querynode": ((),),
            "sendmsg": (0, 0) if exclusive else None}.get(op)
