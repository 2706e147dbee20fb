"""End-to-end scenarios against a running reaktor port switch (driven by tests/e2e_switch.rs).

Usage: switch_e2e.py <scenario> <port> [<server pid> for `stall`]

The topology (see tests/e2e_switch.rs) declares token `tok-<node>` for nodes n0..n63, a token
`multi` for all of them, `adm` (admin), lease_ms = 1500 and small limits. Each scenario
raises on the first violated expectation and prints `ok <scenario>` at the end.
"""

import asyncio
import os
import random
import signal
import socket
import sys
import threading
import time

from reaktor_client import SwitchError
from switch_client import Rest, SseNode, WsNode

LEASE_S = 1.5


def tok(node):
    return f"tok-{node}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def online(port, node, **kw):
    kw.setdefault("ping_interval", 0.2)  # pings relet the lease
    return await WsNode.open(port, node, tok(node), address=f"{node}.addr:7000", **kw)


async def exclusive(port):
    """Ownership is exclusive under concurrent RegPort from many nodes; a failed RegPort
    names the owner and its address."""
    nodes = [f"n{i}" for i in range(24)]
    ws = await asyncio.gather(*(online(port, n) for n in nodes))
    ports = [f"room:{i:04d}" for i in range(96)]
    rounds = []
    for w in ws:
        mine = ports[:]
        random.shuffle(mine)
        # Several pipelined batches per node, all nodes at once.
        rounds.append([await w.send("regport", ports=mine[k:k + 24]) for k in range(0, 96, 24)])
    owned = {}
    for w, futs in zip(ws, rounds):
        replies = await asyncio.gather(*futs)
        failed = {}
        for r in replies:
            check("error" not in r, f"regport error {r}")
            for f in r["failed"]:
                failed[f["port"]] = (f["owner"], f["address"])
        won = set(ports) - set(failed)
        check(sum(r["registered"] for r in replies) == len(won), f"{w.node}: registered count")
        for p in won:
            check(p not in owned, f"{p} owned by both {owned.get(p)} and {w.node}")
            owned[p] = w.node
        w.failed = failed
    check(set(owned) == set(ports), "every port has exactly one owner")
    for w in ws:
        for p, (owner, address) in w.failed.items():
            check(owned[p] == owner, f"{w.node}: failed {p} names {owner}, owner is {owned[p]}")
            check(address == f"{owner}.addr:7000", f"address of {owner}: {address}")
    # The switch agrees, and a REST RegPort of a taken port names the owner too.
    rest = Rest(port, "multi")
    status, body, _ = rest.queryport(ports)
    check(status == 200, f"queryport {status} {body}")
    check({p["port"]: p["owner"] for p in body["ports"]} == owned, "queryport owners")
    loser = next(w for w in ws if w.failed)
    p = next(iter(loser.failed))
    status, body, _ = rest.regport(loser.node, [p, "fresh:port"])
    check(status == 200 and body["registered"] == 1, f"{body}")
    check(body["failed"] == [{"port": p, "owner": owned[p], "address": f"{owned[p]}.addr:7000"}], f"{body}")
    # Concurrent REST RegPort from threads: still one winner per port.
    results = {}

    def reg(node):
        r = Rest(port, tok(node))
        results[node] = r.regport(node, [f"lock:{k}" for k in range(40)])[1]

    threads = [threading.Thread(target=reg, args=(w.node,)) for w in ws]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check(sum(r["registered"] for r in results.values()) == 40, f"rest winners {results}")
    await asyncio.gather(*(w.close() for w in ws))


async def release(port):
    """Release on UnRegPort, lease expiry, a second receiving connection and abrupt
    disconnect, each notifying subscribers; nobody releases another node's port."""
    sub = await online(port, "n1")
    a = await online(port, "n2")
    check((await a.call("regport", ports=["a:1", "a:2"]))["registered"] == 2, "a registers")
    r = await sub.call("regport", ports=["a:1", "a:2"], subscribe=True)
    check([f["owner"] for f in r["failed"]] == ["n2", "n2"], f"{r}")
    # Another node cannot release a:1 (WS acts for its own node only; REST needs its token).
    r = await sub.call("unregport", ports=["a:1"])
    check(r["not_owned"] == ["a:1"] and r["released"] == [], f"{r}")
    status, body, _ = Rest(port, tok("n1")).unregport("n2", ["a:1"])
    check(status == 403 and body["error"]["code"] == "forbidden", f"{status} {body}")
    # 1. UnRegPort.
    r = await a.call("unregport", ports=["a:1"])
    check(r["released"] == ["a:1"], f"{r}")
    check(await sub.push() == {"type": "released", "port": "a:1", "reason": "unregistered"}, "unreg notification")

    # 2. Lease expiry: no pings, no messages.
    lazy = await online(port, "n3", ping_interval=None)
    await lazy.call("regport", ports=["l:1"])
    await sub.call("regport", ports=["l:1"], subscribe=True)
    t0 = time.monotonic()
    code, reason = await asyncio.wait_for(lazy.closed, 10)
    elapsed = time.monotonic() - t0
    check(code == 4001 and "lease" in reason, f"lease close {code} {reason}")
    check(LEASE_S * 0.5 < elapsed < LEASE_S * 3, f"lease expired after {elapsed:.2f}s")
    check(await sub.push() == {"type": "released", "port": "l:1", "reason": "node_offline"}, "lease notification")

    # 3. A second receiving connection replaces the first.
    first = await online(port, "n4")
    await first.call("regport", ports=["r:1"])
    await sub.call("regport", ports=["r:1"], subscribe=True)
    second = await online(port, "n4")
    code, reason = await asyncio.wait_for(first.closed, 10)
    check(code == 4000 and "replaced" in reason, f"replace close {code} {reason}")
    check(await sub.push() == {"type": "released", "port": "r:1", "reason": "replaced"}, "replace notification")
    r = await second.call("regport", ports=["r:1"])
    check(r["registered"] == 1, f"new connection starts without ports {r}")

    # 4. Abrupt disconnect.
    gone = await online(port, "n5")
    await gone.call("regport", ports=["d:1"])
    await sub.call("regport", ports=["d:1"], subscribe=True)
    gone.abort()
    check(await sub.push() == {"type": "released", "port": "d:1", "reason": "node_offline"}, "disconnect notification")
    status, body, _ = Rest(port, "multi").querynode(["n5"])
    check(body["nodes"][0]["online"] is False, f"{body}")

    # 5. SSE receiving connection: relet by REST keeps it, expiry closes it with an event.
    sse = SseNode(port, "n6", tok("n6"))
    check(sse.status == 200 and "text/event-stream" in sse.head, sse.head)
    rest6 = Rest(port, tok("n6"))
    check(rest6.regport("n6", ["s:1"])[0] == 200, "sse node registers")
    await sub.call("regport", ports=["s:1"], subscribe=True)
    for _ in range(3):
        await asyncio.sleep(LEASE_S / 3)
        status, body, _ = rest6.relet("n6")
        check(status == 200 and body["lease_ms"] == 1500, f"relet {status} {body}")
    check(Rest(port, "multi").querynode(["n6"])[1]["nodes"][0]["online"], "relet kept n6 online")
    events = sse.events()
    name, data = await asyncio.to_thread(next, events)
    check(name == "close" and data["reason"] == "lease_expired", f"{name} {data}")
    check(await asyncio.to_thread(list, events) == [], "stream ends after the close event")
    check(await sub.push() == {"type": "released", "port": "s:1", "reason": "node_offline"}, "sse notification")
    await sub.no_push()
    for w in (sub, a, second):
        await w.close()


async def order(port, count=100_000):
    """Per-node ordering and no duplicates over `count` messages from two senders (WebSocket
    pipelining and REST batches); pushes arrive batched."""
    recv = await online(port, "n10")
    await recv.call("regport", ports=["inbox"])
    sender = await online(port, "n11")
    rest = Rest(port, tok("n12"))
    half = count // 2
    batch = 1000

    async def ws_sender():
        futs = []
        for k in range(0, half, batch):
            msgs = [{"port": "inbox", "body": f"w{i}"} for i in range(k, min(k + batch, half))]
            futs.append(await sender.send("sendmsg", messages=msgs))
            if len(futs) > 8:
                r = await futs.pop(0)
                check(r.get("delivered") == batch, f"{r}")
        for f in futs:
            check((await f).get("delivered") == batch, "ws batch delivered")

    def rest_sender():
        for k in range(0, count - half, batch):
            msgs = [{"port": "inbox", "body": f"r{i}"} for i in range(k, min(k + batch, count - half))]
            status, body, _ = rest.sendmsg(msgs)
            check(status == 200 and body["delivered"] == len(msgs), f"{status} {body}")

    t = threading.Thread(target=rest_sender)
    t.start()
    await ws_sender()
    next_w = next_r = 0
    for _ in range(count):
        p = await recv.push(timeout=30)
        check(p["type"] == "msg" and p["port"] == "inbox", f"{p}")
        b = p["body"]
        if b[0] == "w":
            check(int(b[1:]) == next_w, f"ws sender: expected w{next_w}, got {b}")
            next_w += 1
        else:
            check(int(b[1:]) == next_r, f"rest sender: expected r{next_r}, got {b}")
            next_r += 1
    t.join()
    check((next_w, next_r) == (half, count - half), "all delivered")
    await recv.no_push(0.5)
    check(recv.frames < count / 4, f"pushes are batched: {recv.frames} frames for {count} messages")
    print(f"order: {count} messages in {recv.frames} push frames")
    await recv.close()
    await sender.close()


async def cast(port):
    """Unicast, multicast and broadcast reach exactly the intended nodes."""
    ws = {n: await online(port, n) for n in ("n20", "n21", "n22", "n23")}
    for n, w in ws.items():
        await w.call("regport", ports=[f"p:{n}"])
    sse = SseNode(port, "n24", tok("n24"))
    rest = Rest(port, tok("n24"))
    rest.regport("n24", ["p:n24"])
    events = sse.events()
    rest = Rest(port, "multi")
    status, body, _ = rest.sendmsg([{"ports": ["p:n21", "p:n23", "p:n24", "nobody"], "body": "multi"}])
    check(body == {"delivered": 3, "dropped": 1}, f"multicast {body}")
    for n in ("n21", "n23"):
        check(await ws[n].push() == {"type": "msg", "port": f"p:{n}", "body": "multi"}, f"{n} multicast")
    check(await asyncio.to_thread(next, events) == ("message", [{"type": "msg", "port": "p:n24", "body": "multi"}]), "sse multicast")
    for n in ("n20", "n22"):
        await ws[n].no_push()
    status, body, _ = rest.sendmsg([{"port": "", "body": "all"}])
    online_now = Rest(port, "multi").querynode([f"n{i}" for i in range(64)])[1]
    expected = sum(1 for n in online_now["nodes"] if n["online"])
    check(body == {"delivered": expected, "dropped": 0}, f"broadcast {body}, {expected} online")
    for n, w in ws.items():
        check(await w.push() == {"type": "msg", "port": "", "body": "all"}, f"{n} broadcast")
        await w.no_push(0.1)
    check(await asyncio.to_thread(next, events) == ("message", [{"type": "msg", "port": "", "body": "all"}]), "sse broadcast")
    sse.close()
    for w in ws.values():
        await w.close()


def http_raw(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out.decode(errors="replace")
        out += chunk


async def auth_limits(port):
    """401/403 with reasons, tokens in the WaitMsg URL, and limit errors."""
    anon = Rest(port, None)
    status, body, headers = anon.regport("n30", ["x"])
    check(status == 401 and body["error"]["code"] == "unauthorized" and "missing" in body["error"]["message"], f"{status} {body}")
    check(headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{headers}")
    status, body, _ = anon.sendmsg([{"port": "x", "body": "y"}], token="wrong")
    check(status == 401 and "unknown" in body["error"]["message"], f"{status} {body}")
    status, body, _ = anon.queryport(["x"], token="wrong")
    check(status == 401, f"{status}")
    status, body, _ = anon.regport("n31", ["x"], token=tok("n30"))
    check(status == 403 and "n31" in body["error"]["message"], f"{status} {body}")
    status, body, _ = anon.call("GET", "/v1/metrics", token=tok("n30"))
    check(status == 403, f"metrics needs admin: {status}")
    status, body, _ = anon.call("GET", "/v1/metrics", token="adm")
    check(status == 200 and "switch_ports" in body, f"{status}")
    # WaitMsg: no token, wrong node, token in the query string.
    # A refused WaitMsg is an HTTP error at the handshake, never a 101 then a close.
    for token, status, reason in ((None, 401, "missing"), ("nope", 401, "unknown"), (tok("n31"), 403, "n30")):
        try:
            w = await WsNode.open(port, "n30", token)
            raise AssertionError(f"WaitMsg with {token} accepted")
        except SwitchError as e:
            body = e.message
            check(e.status == status and reason in body, f"WaitMsg with {token}: {e.status} {body!r}")
            if status == 401:
                check(e.headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{e.headers}")
    sse = SseNode(port, "n30", "nope")
    check(sse.status == 401, f"sse without a valid token: {sse.status}")
    w = await WsNode.open(port, "n30", tok("n30"), query_token=True, ping_interval=0.2)
    rest = Rest(port, tok("n30"))
    # Limits (topology: max_port_name_len 64, max_ports_per_request 100, max_ports_per_node 150,
    # max_body_len 1024, max_queued_bytes 262144).
    status, body, _ = rest.regport("n30", ["x" * 65])
    check(status == 413 and "64 bytes" in body["error"]["message"], f"{status} {body}")
    status, body, _ = rest.regport("n30", [f"q{i}" for i in range(101)])
    check(status == 413 and "100 ports per request" in body["error"]["message"], f"{status} {body}")
    check(rest.regport("n30", [f"q{i}" for i in range(100)])[0] == 200, "100 ports fit")
    status, body, _ = rest.regport("n30", [f"z{i}" for i in range(60)])
    check(status == 409 and "150 ports per node" in body["error"]["message"], f"{status} {body}")
    status, body, _ = rest.sendmsg([{"port": "q1", "body": "b" * 1025}])
    check(status == 413 and "1024 bytes" in body["error"]["message"], f"{status} {body}")
    status, body, _ = rest.call("POST", "/v1/messages", raw=b"{not json")
    check(status == 400 and body["error"]["code"] == "bad_json", f"{status} {body}")
    status, body, _ = rest.call("GET", "/v1/messages")
    check(status == 405, f"{status}")
    status, body, _ = rest.call("POST", "/v1/nope", body={})
    check(status == 404, f"{status}")
    r = await w.call("regport", ports=["y" * 65])
    check(r["error"]["code"] == "limit_exceeded", f"ws limit {r}")
    # Slow consumer: a WebSocket that never reads is disconnected once its queue passes the
    # limit; the sender is never blocked and memory stays bounded.
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /v1/ws/n32?token=tok-n32 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    check(b" 101 " in head, f"{head}")
    status, body, _ = rest.call("POST", "/v1/nodes/query", {"nodes": ["n32"]})
    deadline = time.monotonic() + 10
    while not body["nodes"][0]["online"] and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body, _ = rest.querynode(["n32"])
    check(Rest(port, tok("n32")).regport("n32", ["slow"])[0] == 200, "slow registers")
    sent = 0
    while time.monotonic() < deadline:
        # A WebSocket ping (masked, empty) keeps n32's lease: on a loaded machine this loop can
        # outlast the 1.5 s lease, and the lease must not end n32 before its queue does.
        s.sendall(b"\x89\x80\x00\x00\x00\x00")
        status, body, _ = rest.sendmsg([{"port": "slow", "body": "s" * 1000} for _ in range(50)])
        check(status == 200, f"{status} {body}")
        sent += 50
        if body["dropped"]:
            break
    check(not rest.querynode(["n32"])[1]["nodes"][0]["online"], f"slow consumer still online after {sent}")
    metrics = anon.call("GET", "/v1/metrics", token="adm")[1]
    check("switch_slow_consumer_disconnects_total 1" in metrics, metrics)
    check(sent * 1000 < 64 << 20, "disconnected long before unbounded growth")
    s.close()
    await w.close()


async def stall(port, pid):
    """A stall of the whole server (SIGSTOP for longer than the lease, then SIGCONT) releases
    no node that kept reletting during it: its relets waited in the kernel, and the server
    reads them before it looks at leases. A node silent since before the stall still expires."""
    pingers = [await online(port, f"n{i}") for i in range(4)]  # relet by WebSocket ping
    talker = await online(port, "n4", ping_interval=None)  # relet by requests
    sse = SseNode(port, "n5", tok("n5"))
    check(sse.status == 200 and "text/event-stream" in sse.head, sse.head)
    rest5 = Rest(port, tok("n5"))  # relet by REST
    check(rest5.regport("n5", ["p:5"])[0] == 200, "sse node registers")
    keepers = pingers + [talker]
    for i, w in enumerate(keepers):
        check((await w.call("regport", ports=[f"p:{i}"]))["registered"] == 1, f"{w.node} registers")
    stop = threading.Event()
    sse_failures = []

    def relet_sse():
        while not stop.is_set():
            status, body, _ = rest5.relet("n5")
            if status != 200:
                sse_failures.append((status, body))
            stop.wait(LEASE_S / 6)

    sse_reletter = threading.Thread(target=relet_sse, daemon=True)
    sse_reletter.start()

    async def relet_ws():
        while True:
            await talker.send("relet")
            await asyncio.sleep(LEASE_S / 6)

    ws_reletter = asyncio.create_task(relet_ws())
    try:
        silent = await online(port, "n6", ping_interval=None)
        check((await silent.call("regport", ports=["p:6"]))["registered"] == 1, "silent registers")
        await asyncio.sleep(LEASE_S / 3)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(LEASE_S * 2.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        code, reason = await asyncio.wait_for(silent.closed, LEASE_S * 3)
        check(code == 4001 and "lease" in reason, f"silent node closed with {code} {reason}")
        await asyncio.sleep(LEASE_S)
        for w in keepers:
            check(not w.closed.done(), f"{w.node} closed after the stall: {w.closed.result() if w.closed.done() else ''}")
    finally:
        stop.set()
        ws_reletter.cancel()
    await asyncio.to_thread(sse_reletter.join)
    check(sse_failures == [], f"sse relets failed: {sse_failures}")
    status, body, _ = Rest(port, "multi").queryport([f"p:{i}" for i in range(7)])
    owners = [p["owner"] for p in body["ports"]]
    check(owners == [f"n{i}" for i in range(6)] + [None], f"owners after the stall: {owners}")
    status, body, _ = Rest(port, "multi").querynode(["n5"])
    check(body["nodes"][0]["online"] is True, f"sse node after the stall: {body}")
    sse.close()
    for w in keepers:
        await w.close()


def main():
    scenario, port, extra = sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]]
    fn = {"exclusive": exclusive, "release": release, "order": order, "cast": cast,
          "auth_limits": auth_limits, "stall": stall}[scenario]
    asyncio.run(fn(port, *extra))
    print(f"ok {scenario}")


if __name__ == "__main__":
    main()
