"""End-to-end scenarios of the switch as a coordination service (issue 15), against a running
reaktor (driven by tests/e2e_coordination.rs): watches, listings, handover and
compare-and-register, sessions, acknowledged delivery and token reload.

Usage: coordination_e2e.py <scenario> <port> <topology file> <server pid>

The topology is tests/support switch_topology (tokens `tok-<node>` for n0..n63, `multi` for
all of them, `adm`; lease_ms = 1500) with `watch_history = 16` and `ack_timeout_ms = 1000`.
Each scenario raises on the first violated expectation and prints `ok <scenario>` at the end.
"""

import asyncio
import os
import re
import signal
import sys
import threading
import time

from switch_client import Rest, SseNode, WsNode, q

HISTORY = 16  # [switch.limits] watch_history of the test topology
ACK_TIMEOUT_S = 1.0  # [switch.limits] ack_timeout_ms


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def online(port, node, **kw):
    kw.setdefault("ping_interval", 0.2)  # pings relet the lease
    return await WsNode.open(port, node, f"tok-{node}", address=f"{node}.addr:7000", **kw)


async def events_of(ws, n, timeout=10):
    """The next `n` pushes of `ws`."""
    return [await ws.push(timeout) for _ in range(n)]


def advance(cursor, events):
    """The cursor after `events` (the largest sequence seen per instance)."""
    cursor = list(cursor)
    for e in events:
        cursor[e["instance"]] = max(cursor[e["instance"]], e["seq"])
    return cursor


def port_story(events):
    """(event, port, owner, reason/from) per event, the order per port kept."""
    return [(e["event"], e.get("port"), e.get("owner"), e.get("reason") or e.get("from")) for e in events]


def check_numbered(events):
    """Sequence numbers grow per instance, in the order the pushes came."""
    last = {}
    for e in events:
        check(e["seq"] > last.get(e["instance"], 0), f"sequence not growing at {e}")
        last[e["instance"]] = e["seq"]


def per_port(story):
    out = {}
    for s in story:
        out.setdefault(s[1], []).append(s)
    return out


# ---- watches ----------------------------------------------------------------------------------

async def watches(port, topology, pid):
    """Ports by prefix and nodes by id: one event per change, numbered; a watcher that drops
    resumes from its cursor with exactly the events it did not see; one that fell further
    behind than the history is told exactly which numbers it missed; SSE carries them too."""
    w = await online(port, "n10")
    r = await w.call("watch", ports="room:", prefix=True)
    wid, cursor = r["watch"], r["cursor"]
    check(wid == r["watch"] and isinstance(cursor, list) and cursor, f"watch reply {r}")
    rn = await w.call("watch", nodes="n1")
    a = await online(port, "n1")
    b = await online(port, "n2")
    await a.call("regport", ports=["room:1", "room:2", "other"])
    r = await b.call("regport", ports=["room:1", "room:3"])
    check([f["port"] for f in r["failed"]] == ["room:1"], f"room:1 is n1's: {r}")
    await a.call("unregport", ports=["room:2"])
    got = await events_of(w, 5)
    await w.no_push()
    nodes = [e for e in got if e["watch"] == rn["watch"]]
    ports = [e for e in got if e["watch"] == wid]
    check([(e["event"], e["node"]) for e in nodes] == [("online", "n1")], f"node events {nodes}")
    check(nodes[0]["address"] == "n1.addr:7000", f"{nodes}")
    check_numbered(ports)
    check(per_port(port_story(ports)) == {
        "room:1": [("acquired", "room:1", "n1", None)],
        "room:2": [("acquired", "room:2", "n1", None), ("released", "room:2", "n1", "unregistered")],
        "room:3": [("acquired", "room:3", "n2", None)],
    }, f"port events {ports}")
    cursor = advance(cursor, ports)

    # The watcher drops; what happens meanwhile comes after it resumes, nothing twice.
    w.abort()
    await a.call("unregport", ports=["room:1"])
    b.abort()  # room:3 goes with its node
    w = await online(port, "n10")
    r = await w.call("watch", ports="room:", prefix=True, **{"from": cursor})
    got = await events_of(w, 2)
    await w.no_push(0.5)
    check(per_port(port_story(got)) == {
        "room:1": [("released", "room:1", "n1", "unregistered")],
        "room:3": [("released", "room:3", "n2", "node_offline")],
    }, f"resumed {got}")
    cursor = advance([max(x, y) for x, y in zip(cursor, r["cursor"])], got)

    # Nodes: a second connection of n1 replaces the first, then it goes.
    rn = await w.call("watch", nodes="n1")
    a2 = await online(port, "n1")
    code, _ = await asyncio.wait_for(a.closed, 10)
    check(code == 4000, f"the replaced connection closed with {code}")
    await a2.close()
    got = await events_of(w, 2)
    check([(e["event"], e.get("reason")) for e in got] == [("replaced", None), ("offline", "closed")],
          f"node events {got}")

    # Further behind than the history: told exactly what was missed, then the rest.
    w.abort()
    c = await online(port, "n3")
    names = [f"room:x{i:02d}" for i in range(3 * HISTORY)]
    await c.call("regport", ports=names)
    await c.call("unregport", ports=names)
    w = await online(port, "n10")
    r = await w.call("watch", ports="room:", prefix=True, **{"from": cursor})
    pushes = []
    while True:
        try:
            pushes.append(await w.push(1.0))
        except asyncio.TimeoutError:
            break
    missed = [p for p in pushes if p["type"] == "missed"]
    replayed = [p for p in pushes if p["type"] == "watch"]
    check(missed, f"nothing reported missed after {2 * len(names)} events with a history of {HISTORY}")
    for m in missed:
        check(m["from"] == cursor[m["instance"]] + 1 and m["to"] >= m["from"], f"missed {m} after {cursor}")
        later = [p["seq"] for p in replayed if p["instance"] == m["instance"]]
        check(all(s > m["to"] for s in later), f"replayed {later} inside the missed range {m}")
    check(0 < len(replayed) < 2 * len(names), f"{len(replayed)} replayed")
    story = per_port(port_story(replayed))
    for p, evs in story.items():
        full = [("acquired", p, "n3", None), ("released", p, "n3", "unregistered")]
        check(evs == full[len(full) - len(evs):], f"{p}: not the end of its story: {evs}")

    # Over SSE: a node's watch events arrive on its event stream.
    sse = await asyncio.to_thread(SseNode, port, "n11", "tok-n11")
    rest = Rest(port, "tok-n11")
    st, body, _ = rest.call("POST", "/v1/nodes/n11/watches", {"ports": "room:s"})
    check(st == 200 and "watch" in body and "cursor" in body, f"{st} {body}")
    await c.call("regport", ports=["room:s", "room:sx"])
    stream = sse.events()
    name, data = await asyncio.to_thread(next, stream)
    check(name == "message" and [(e["event"], e["port"]) for e in data] == [("acquired", "room:s")],
          f"SSE {name} {data}")
    st, body, _ = rest.call("DELETE", f"/v1/nodes/n11/watches/{body['watch']}")
    check(st == 200, f"{st} {body}")
    st, body, _ = rest.call("DELETE", "/v1/nodes/n11/watches/999")
    check(st == 404 and body["error"]["code"] == "unknown_watch", f"{st} {body}")
    st, body, _ = rest.call("POST", "/v1/nodes/n11/watches", {"ports": "room:", "from": [1, 2, 3, 4, 5]})
    check(st == 400 and body["error"]["code"] == "bad_cursor", f"{st} {body}")
    sse.close()
    for x in (w, c, a2):
        await x.close()


# ---- listings ---------------------------------------------------------------------------------

def pages(rest, path, key, limit, **query):
    """Every entry of a paginated listing; checks each page's size."""
    out, after, n = [], None, 0
    while True:
        qs = "&".join(f"{k}={q(str(v))}" for k, v in {**query, "limit": limit, "after": after}.items()
                      if v is not None)
        st, body, _ = rest.call("GET", f"{path}?{qs}")
        check(st == 200, f"{path}: {st} {body}")
        check(len(body[key]) <= limit, f"a page of {len(body[key])} > {limit}")
        out += body[key]
        n += 1
        after = body["next"]
        if after is None:
            return out, n
        check(n < 10000, "the listing does not end")


async def listings(port, topology, pid):
    """Ports by prefix in name order, online nodes, a node's ports: paginated, bounded, every
    entry once, also while ports come and go."""
    rest = Rest(port, "multi")
    nodes = ["n20", "n21", "n22"]
    sses = [await asyncio.to_thread(SseNode, port, n, f"tok-{n}") for n in nodes]
    every = []
    for n in nodes:
        mine = [f"list:{n}:{i:03d}" for i in range(120)]
        for k in range(0, 120, 60):
            st, body, _ = rest.regport(n, mine[k:k + 60])
            check(st == 200 and body["registered"] == 60, f"{st} {body}")
        every += mine
    rest.regport("n20", ["other:1"])
    got, n = pages(rest, "/v1/ports", "ports", 7, prefix="list:")
    names = [p["port"] for p in got]
    check(names == sorted(every), "the listing is not every port once in name order")
    check(n == -(-len(every) // 7), f"{n} pages")
    check(all(p["owner"] == p["port"].split(":")[1] and p["address"] == f"{p['owner']}.example:7000"
              for p in got), "owners")
    # The page size is cut to the switch's max_page (1000 by default) and at least 1.
    st, body, _ = rest.call("GET", "/v1/ports?prefix=list:&limit=100000")
    check(st == 200 and len(body["ports"]) == len(every) and body["next"] is None, f"{st}")
    st, body, _ = rest.call("GET", "/v1/ports?prefix=list:&limit=0")
    check(st == 200 and len(body["ports"]) == 1, f"{st} {body}")
    # Online nodes by prefix, with their port counts.
    got, _ = pages(rest, "/v1/nodes", "nodes", 2, prefix="n2")
    check([(x["node"], x["ports"]) for x in got] == [("n20", 121), ("n21", 120), ("n22", 120)], f"{got}")
    # A node's ports (in the switch's order, each once).
    got, _ = pages(rest, "/v1/nodes/n21/ports", "ports", 50)
    check(sorted(got) == sorted(every[120:240]) and len(set(got)) == 120, f"{len(got)} node ports")
    st, body, _ = rest.call("GET", "/v1/nodes/n21/ports?after=zz")
    check(st == 400 and body["error"]["code"] == "bad_cursor", f"{st} {body}")
    # Listings read, as queries do: any token may, none may not.
    st, body, _ = rest.call("GET", "/v1/nodes/n21/ports", token="tok-n20")
    check(st == 200, f"{st} {body}")
    st, body, _ = rest.call("GET", "/v1/ports", token=None)
    check(st == 401, f"{st} {body}")
    # While the table changes, a port there from start to end is listed exactly once.
    stay = set(every[::2])
    gone = [p for p in every if p not in stay]
    listed, after = [], None
    for i in range(1000):
        st, body, _ = rest.call("GET", f"/v1/ports?prefix=list:&limit=20" + (f"&after={q(after)}" if after else ""))
        listed += [p["port"] for p in body["ports"]]
        if i < len(nodes):
            node = nodes[i]
            rest.unregport(node, [p for p in gone if p.startswith(f"list:{node}:")])
        after = body["next"]
        if after is None:
            break
    check(len(listed) == len(set(listed)), "a port listed twice")
    check(stay <= set(listed), "a port there all along is missing")
    for s in sses:
        s.close()


# ---- handover and compare-and-register --------------------------------------------------------

async def handover(port, topology, pid):
    """Ports move A→B at once: nobody sees them free, watchers see one `moved` per port, B is
    told; authorised by A; compare-and-register moves a port only from the owner named."""
    w = await online(port, "n10")
    wr = await w.call("watch", ports="h:", prefix=True)
    a = await online(port, "n1")
    b = await online(port, "n2")
    ports = [f"h:{i}" for i in range(10)]
    await a.call("regport", ports=ports)
    stop = threading.Event()
    seen_free = []

    def query_loop():
        rest = Rest(port, "multi")
        while not stop.is_set():
            st, body, _ = rest.queryport(ports)
            seen_free.extend(p["port"] for p in body["ports"] if p["owner"] is None)
        rest.close()

    checker = threading.Thread(target=query_loop)
    checker.start()
    rounds = 20
    try:
        for i in range(rounds):
            src, dst = (a, b) if i % 2 == 0 else (b, a)
            r = await src.call("handover", to=dst.node, ports=ports + ["h:none"])
            check(r["moved"] == ports and r["unknown"] == ["h:none"] and r["not_owned"] == [], f"{r}")
            told = await events_of(dst, len(ports))
            check([(p["type"], p["port"], p["from"]) for p in told] == [("handover", p, src.node) for p in ports],
                  f"{dst.node} told {told}")
    finally:
        stop.set()
        checker.join()
    check(not seen_free, f"ports seen free during handovers: {seen_free[:5]}")
    got = await events_of(w, len(ports) * (rounds + 1))
    await w.no_push()
    story = per_port(port_story(got))
    for p in ports:
        moves = [("moved", p, "n2" if i % 2 == 0 else "n1", "n1" if i % 2 == 0 else "n2") for i in range(rounds)]
        check(story[p] == [("acquired", p, "n1", None)] + moves, f"{p}: {story[p]}")
    # Authorised by A: n2 cannot give n1's ports away, through REST with its token or WS.
    rest = Rest(port, "tok-n2")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/handover", {"to": "n2", "ports": ports})
    check(st == 403, f"{st} {body}")
    r = await b.call("handover", to="n3", ports=ports)
    check(r.get("error", {}).get("code") == "node_not_online", f"{r}")
    r = await b.call("handover", to="n1", ports=ports)
    check(r["moved"] == [] and r["not_owned"] == ports, f"{r}")
    r = await a.call("handover", to="n1", ports=ports)
    check(r.get("error", {}).get("code") == "bad_request", f"{r}")
    # Over REST, as A.
    rest_a = Rest(port, "tok-n1")
    st, body, _ = rest_a.call("POST", "/v1/nodes/n1/handover", {"to": "n2", "ports": ports[:2]})
    check(st == 200 and body["moved"] == ports[:2], f"{st} {body}")
    await events_of(b, 2)
    await events_of(w, 2)

    # Compare-and-register: only from the owner named, with its authority.
    c = await online(port, "n3")
    r = await c.call("regport", ports=["h:5"], if_owner="n1")
    check(r.get("error", {}).get("code") == "forbidden", f"without n1's authority: {r}")
    multi = Rest(port, "multi")
    st, body, _ = multi.call("POST", "/v1/nodes/n3/ports", {"ports": ["h:5", "h:0"], "if_owner": "n1"})
    check(st == 200 and body["registered"] == 1, f"{st} {body}")
    check([(f["port"], f["owner"]) for f in body["failed"]] == [("h:0", "n2")], f"{body}")
    moved = await a.push()
    check((moved["type"], moved["port"], moved["to"]) == ("moved", "h:5", "n3"), f"{moved}")
    ev = await w.push()
    check((ev["event"], ev["port"], ev["owner"], ev["from"]) == ("moved", "h:5", "n3", "n1"), f"{ev}")
    r = await c.call("regport", ports=["h:new", "h:1"], if_owner=None)
    check(r["registered"] == 1 and [f["port"] for f in r["failed"]] == ["h:1"], f"{r}")
    ev = await w.push()
    check((ev["event"], ev["port"]) == ("acquired", "h:new"), f"{ev}")
    await w.no_push()
    for x in (w, a, b, c):
        await x.close()


# ---- sessions -----------------------------------------------------------------------------------

async def sessions(port, topology, pid):
    """WaitMsg names its session; a REST call naming a replaced session gets 409."""
    rest = Rest(port, "tok-n1")
    a = await online(port, "n1")
    s1 = a.session
    check(isinstance(s1, int), f"no session push: {s1}")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/ports", {"ports": ["s:1"], "session": s1})
    check(st == 200 and body["registered"] == 1, f"{st} {body}")
    a2 = await online(port, "n1")
    s2 = a2.session
    check(s2 != s1, "a new connection, a new session")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/ports", {"ports": ["s:2"], "session": s1})
    check(st == 409 and body["error"]["code"] == "session_replaced", f"{st} {body}")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/relet", {"session": s1})
    check(st == 409 and body["error"]["code"] == "session_replaced", f"relet {st} {body}")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/ports", {"ports": ["s:2"], "session": s2})
    check(st == 200 and body["registered"] == 1, f"{st} {body}")
    st, body, _ = rest.call("POST", "/v1/nodes/n1/ports", {"ports": ["s:3"]})
    check(st == 200, f"without a session: {st} {body}")
    r = await a2.call("regport", ports=["s:4"], session=s1)
    check(r.get("error", {}).get("code") == "session_replaced", f"WebSocket {r}")
    # SSE: the stream's first event names it.
    sse = await asyncio.to_thread(SseNode, port, "n4", "tok-n4")
    check(isinstance(sse.session, int) and sse.session not in (s1, s2), f"{sse.session}")
    st, body, _ = Rest(port, "tok-n4").call("POST", "/v1/nodes/n4/ports", {"ports": ["s:5"], "session": sse.session})
    check(st == 200, f"{st} {body}")
    sse.close()
    await a2.close()


# ---- acknowledged delivery ------------------------------------------------------------------------

async def acked(port, topology, pid):
    """`delivered` = queued to the owner's connection; with `ack`, the reply also waits for the
    receiver's acknowledgement (or its absence: offline, or ack_timeout_ms)."""
    a = await online(port, "n1")
    await a.call("regport", ports=["p:1"])
    rest = Rest(port, "multi")
    st, body, _ = rest.sendmsg([{"port": "p:1", "body": "plain"}])
    check(st == 200 and body == {"delivered": 1, "dropped": 0}, f"{st} {body}")
    p = await a.push()
    check(p == {"type": "msg", "port": "p:1", "body": "plain"}, f"{p}")

    def send_acked(body="x", ports=("p:1",)):
        msgs = [{"port": x, "body": body} for x in ports]
        t0 = time.monotonic()
        st, reply, _ = Rest(port, "multi").call("POST", "/v1/messages", {"messages": msgs, "ack": True})
        return st, reply, time.monotonic() - t0

    # Acknowledged by the receiver.
    pending = asyncio.create_task(asyncio.to_thread(send_acked, "y", ("p:1", "p:none")))
    p = await a.push()
    check(p["body"] == "y" and isinstance(p.get("ack"), int), f"{p}")
    r = await a.call("ack", upto=p["ack"])
    check(r.get("acknowledged") == 1, f"{r}")
    st, reply, _ = await pending
    check(st == 200 and reply == {"delivered": 1, "dropped": 1, "acknowledged": 1, "unacknowledged": 0},
          f"{st} {reply}")
    # Not acknowledged: reported after ack_timeout_ms.
    st, reply, took = await asyncio.to_thread(send_acked, "z")
    check(reply.get("unacknowledged") == 1 and reply.get("acknowledged") == 0, f"{reply}")
    check(ACK_TIMEOUT_S * 0.8 < took < ACK_TIMEOUT_S * 3, f"unacknowledged after {took:.2f} s")
    await a.push()
    # The receiver goes offline before it acknowledges: reported at once.
    pending = asyncio.create_task(asyncio.to_thread(send_acked, "w"))
    await a.push()
    a.abort()
    st, reply, took = await pending
    check(reply.get("unacknowledged") == 1, f"{reply}")
    # SSE: acknowledged through REST.
    sse = await asyncio.to_thread(SseNode, port, "n5", "tok-n5")
    Rest(port, "tok-n5").regport("n5", ["p:5"])
    pending = asyncio.create_task(asyncio.to_thread(send_acked, "v", ("p:5",)))
    name, data = await asyncio.to_thread(next, sse.events())
    check(data[0]["body"] == "v", f"{data}")
    st, body, _ = Rest(port, "tok-n5").call("POST", "/v1/nodes/n5/ack", {"upto": data[0]["ack"]})
    check(st == 200 and body == {"acknowledged": 1}, f"{st} {body}")
    st, reply, _ = await pending
    check(reply.get("acknowledged") == 1, f"{reply}")
    sse.close()


# ---- token reload -----------------------------------------------------------------------------------

def without_tokens(text, tokens):
    """`text` (a topology) without the `[[switch.token]]` tables of `tokens`."""
    head, *tables = text.split("\n[[switch.token]]\n")
    kept = [t for t in tables if not any(t.startswith(f'token = "{x}"\n') for x in tokens)]
    return "\n[[switch.token]]\n".join([head] + kept)


async def reload(port, topology, pid):
    """Tokens change without a restart (SIGHUP, POST /v1/admin/reload): a removed token fails
    new requests with 401 and its receiving connections close with 4004 / token_revoked."""
    pid = int(pid)
    original = open(topology).read()
    a = await online(port, "n5")
    keep = await online(port, "n7")
    sse = await asyncio.to_thread(SseNode, port, "n6", "tok-n6")
    await a.call("regport", ports=["r:5"])
    changed = without_tokens(original, ["tok-n5", "tok-n6"])
    check('"tok-n5"' not in changed and '"tok-n6"' not in changed and '"tok-n7"' in changed,
          "the topology edit")
    changed += '\n[[switch.token]]\ntoken = "tok-new5"\nnodes = ["n5"]\n'
    open(topology, "w").write(changed)
    os.kill(pid, signal.SIGHUP)
    code, reason = await asyncio.wait_for(a.closed, 10)
    check(code == 4004, f"closed with {code} {reason}")
    name, data = await asyncio.to_thread(next, sse.events())
    check(name == "close" and data["reason"] == "token_revoked", f"SSE {name} {data}")
    rest = Rest(port)
    st, body, _ = rest.call("POST", "/v1/nodes/n5/relet", token="tok-n5")
    check(st == 401, f"a removed token: {st} {body}")
    st, body, _ = rest.queryport(["r:5"], token="tok-new5")
    check(st == 200 and body["ports"][0]["owner"] is None, f"n5's port was released: {st} {body}")
    r = await keep.call("relet")
    check("lease_ms" in r, f"another token's connection stays: {r}")
    n5 = await WsNode.open(port, "n5", "tok-new5")
    await n5.close()
    # The admin endpoint: the file again, as it was.
    open(topology, "w").write(original)
    st, body, _ = rest.call("POST", "/v1/admin/reload", token="tok-n7")
    check(st == 403, f"not an admin: {st} {body}")
    st, body, _ = rest.call("POST", "/v1/admin/reload", token="adm")
    check(st == 200 and body["reloaded"] is True, f"{st} {body}")
    st, body, _ = rest.queryport(["r:5"], token="tok-n5")
    check(st == 200, f"the token is back: {st} {body}")
    st, body, _ = rest.queryport(["r:5"], token="tok-new5")
    check(st == 401, f"and the new one gone: {st} {body}")
    # A broken file is refused; the tokens stay as they are.
    open(topology, "w").write(original + "\n[[switch.token]]\ntoken = \n")
    st, body, _ = rest.call("POST", "/v1/admin/reload", token="adm")
    check(st == 400 and body["error"]["code"] == "reload_failed" and body["error"]["message"], f"{st} {body}")
    st, body, _ = rest.queryport(["r:5"], token="tok-n5")
    check(st == 200, f"{st} {body}")
    open(topology, "w").write(original)
    await keep.close()
    sse.close()


# ---- node-less watchers -------------------------------------------------------------------------

async def watchers(port, topology, pid):
    """A watcher that is no node (a dashboard): a WebSocket at /v1/ws/ with its watch in the
    query, token `dash` (granted ports under `leader/` and every node; tests/e2e_watchers.rs
    adds it). It sees nodes come and go, adds a watch by op, is refused what its token does
    not grant, is not listed as a node, and is closed with 4004 when its token is removed."""
    import json
    import websockets

    pid = int(pid)
    url = f"ws://127.0.0.1:{port}/v1/ws/?nodes=n&prefix=true"
    try:
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer tok-n1"}):
            check(False, "a node's token opened a watcher it was not granted")
    except websockets.exceptions.InvalidStatus as e:
        check(e.response.status_code == 403, f"refused with {e.response.status_code}")
        check(b"watch_nodes" in e.response.body, f"the message names the grant: {e.response.body}")
    ws = await websockets.connect(url, additional_headers={"Authorization": "Bearer dash"})

    async def recv():
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    greeting = await recv()
    check(greeting[0]["type"] == "session" and greeting[0]["watcher"] is True, f"{greeting}")
    watching = await recv()
    check(watching[0]["type"] == "watching" and watching[0]["watch"] == 1, f"{watching}")

    async def pushes(n):
        got = []
        while len(got) < n:
            message = await recv()
            check(isinstance(message, list), f"a push batch, not {message}")
            got.extend(message)
        return got

    n4 = await online(port, "n4")
    [online_event] = await pushes(1)
    check((online_event["event"], online_event["node"], online_event["address"])
          == ("online", "n4", "n4.addr:7000"), f"{online_event}")
    # A second watch by op on the same connection; ops a watcher may not send are refused.
    await ws.send(json.dumps({"op": "watch", "id": 7, "ports": "leader/", "prefix": True}))
    reply = await recv()
    check(reply["id"] == 7 and reply["watch"] == 7 and len(reply["cursor"]) >= 1, f"{reply}")
    await ws.send(json.dumps({"op": "watch", "id": 8, "ports": "secret/", "prefix": True}))
    reply = await recv()
    check(reply["id"] == 8 and reply["error"]["code"] == "forbidden", f"{reply}")
    await ws.send(json.dumps({"op": "regport", "id": 9, "ports": ["x"]}))
    reply = await recv()
    check(reply["id"] == 9 and reply["error"]["code"] == "bad_request", f"{reply}")
    await n4.call("regport", ports=["leader/a", "secret/b"])
    [acquired] = await pushes(1)
    check((acquired["watch"], acquired["event"], acquired["port"], acquired["owner"])
          == (7, "acquired", "leader/a", "n4"), f"{acquired}")
    # Not a node: the online nodes are n4 alone.
    st, body, _ = Rest(port).call("GET", "/v1/nodes?prefix=", token="multi")
    check(st == 200 and [n["node"] for n in body["nodes"]] == ["n4"], f"{st} {body}")
    await n4.close()
    story = await pushes(2)
    check(sorted((e["watch"], e["event"], e.get("reason")) for e in story)
          == [(1, "offline", "closed"), (7, "released", "node_offline")], f"{story}")
    # The token is removed (SIGHUP): the watcher closes with 4004.
    original = open(topology).read()
    open(topology, "w").write(without_tokens(original, ["dash"]))
    os.kill(pid, signal.SIGHUP)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.exceptions.ConnectionClosed as e:
        check(e.rcvd is not None and e.rcvd.code == 4004, f"closed with {e.rcvd}")
    open(topology, "w").write(original)


SCENARIOS = {f.__name__: f for f in (watches, listings, handover, sessions, acked, reload, watchers)}


def main():
    name, port, topology, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    asyncio.run(asyncio.wait_for(SCENARIOS[name](port, topology, pid), 120))
    print(f"ok {name}")


if __name__ == "__main__":
    main()
