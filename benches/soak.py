"""Soak driver (run by benches/soak.sh): mixes hostile and normal traffic against a running
reaktor for a bounded time and samples the server's resident memory, descriptors and
connections, so that anything that grows without bound shows.

Usage: soak.py --pid PID --http PORT --https PORT --minutes M [--tsv FILE]

Workloads, each a fixed number of concurrent loops until the deadline:
  normal        keep-alive GET /healthz and POST /echo of 1-64 KiB, reading every answer
  upgrade       requests with an Upgrade header to routes that do not upgrade (h2c to
                /healthz, a switch REST call): each must be answered
  slowloris     connections that send a request head one byte every few seconds
  nonreader     uploads of 8 MiB (the default max_body_bytes) to /echo that never read the
                echo, dropped after 5-15 s
  tls_garbage   random bytes to the TLS listener, read until it closes
  ws_churn      WebSocket /ws/echo: open, echo a few messages, close (or drop)
  switch_churn  nodes: WaitMsg WebSocket, regport, sendmsg, relet, unregport, reconnect
  flood         bursts of 200 connections closed at once (some after a partial head)
  probe         one keep-alive connection: GET /healthz every 20 ms, its latency recorded

Then the process-level faults of issue 12, one after the other, each with its own check in
the summary ("fault phases"):
  descriptors   (defect 3) the server runs under `--nofile`; idle connections use every
                descriptor, --queued clients send a request and wait in the backlog (none
                may be answered yet), the idle ones close: every queued client gets its 200
  stall         (defect 4) SIGSTOP for 1.6 x lease_ms, SIGCONT: --keepers nodes that sent
                relets all through stay online and keep their ports; a silent node gets 4001
  drain         SIGTERM with WebSockets open: each gets close 1001, the process exits within
                drain_timeout_ms (soak.sh checks its exit code is 0)

Samples (every 15 s): VmRSS and RssAnon of the server, its open descriptors, its TCP
connections as the kernel sees them (ESTABLISHED, CLOSE-WAIT and others on the two ports),
reaktor_tcp_connections from /metrics, and the probe's latency over the 15 s before the sample
(p50, p99, max; as the client sees it, so the load generator's own event loop, busy on its
core, is part of it). The verdict compares the end of the run with
its first third and the idle state after the load with the idle state before it.
"""

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import signal
import socket
import ssl
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

HOST = "127.0.0.1"
COUNTS = collections.Counter()
# The probe's request latencies (seconds) since the last sample.
LATENCIES = []


def count(what, n=1):
    COUNTS[what] += n


# ---------------------------------------------------------------- sampling


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def server_sockets(pid, ports):
    """States of the server's own TCP sockets on `ports` (its descriptors' inodes)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states = collections.Counter()
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if fields[9] in inodes and local_port in ports:
                states[TCP_STATES.get(fields[3], fields[3])] += 1
    states.pop("LISTEN", None)
    return states


def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(port):
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode(errors="replace")


def percentiles_ms(latencies):
    """p50, p99 and max of `latencies` (seconds) in milliseconds; None without any."""
    if not latencies:
        return None, None, None
    ordered = sorted(latencies)
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)
    return at(0.50), at(0.99), round(ordered[-1] * 1000, 2)


def sample(pid, ports, label, started):
    status = proc_status(pid)
    p50, p99, worst = percentiles_ms(LATENCIES)
    LATENCIES.clear()
    try:
        gauge = int(metric(scrape(ports[0]), "reaktor_tcp_connections"))
    except OSError:
        gauge = -1
    states = server_sockets(pid, ports)
    return {
        "label": label,
        "t": round(time.monotonic() - started),
        "rss_kib": status.get("VmRSS", 0),
        "anon_kib": status.get("RssAnon", 0),
        "file_kib": status.get("RssFile", 0) + status.get("RssShmem", 0),
        "fds": descriptors(pid),
        "sockets": sum(states.values()),
        "close_wait": states.get("CLOSE_WAIT", 0),
        "tcp_gauge": gauge,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": worst,
    }


# ---------------------------------------------------------------- workloads


async def read_response(reader, timeout=10):
    """Reads one HTTP response (Content-Length or chunked); returns its status."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
    if "content-length" in headers:
        await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await asyncio.wait_for(reader.readline(), timeout)).split(b";")[0], 16)
            await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            if size == 0:
                break
    return status, headers


async def normal(port, deadline):
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            for _ in range(random.randint(1, 50)):
                if random.random() < 0.5:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                else:
                    body = os.urandom(random.randint(1, 64)) * 1024
                    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                status, _ = await read_response(reader)
                count("normal ok" if status == 200 else f"normal {status}")
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            count(f"normal error {type(e).__name__}")


async def probe(port, deadline):
    """The latency of a light request under the mix: GET /healthz every 20 ms on one
    keep-alive connection (reconnecting if it drops)."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _ = await read_response(reader)
                LATENCIES.append(time.perf_counter() - sent)
                count("probe ok" if status == 200 else f"probe {status} WRONG")
                await asyncio.sleep(0.02)
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            count(f"probe error {type(e).__name__}")


UPGRADE_REQUESTS = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    b"POST /v1/nodes/soak-n0/relet HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer soak\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\n{}",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\n\r\n",
]


async def upgrade(port, deadline):
    while time.monotonic() < deadline:
        request = random.choice(UPGRADE_REQUESTS)
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            status, _ = await read_response(reader)
            count(f"upgrade answered {status}")
            writer.close()
        except asyncio.TimeoutError:
            count("upgrade NOT ANSWERED within 10 s")
            writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            count(f"upgrade error {type(e).__name__}")


async def slowloris(port, deadline):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(random.uniform(1, 4))
                if reader.at_eof() or time.monotonic() > deadline:
                    break
            data = await asyncio.wait_for(reader.read(4096), 30)
            count("slowloris closed with " + (data.split(b"\r\n")[0].decode() or "EOF"))
            writer.close()
        except ConnectionResetError:
            # The server answered 408 and closed while this client was still writing bytes:
            # the next byte met a reset before the 408 could be read.
            count("slowloris closed (reset on the next byte)")
        except (OSError, asyncio.TimeoutError) as e:
            count(f"slowloris {type(e).__name__}")


async def nonreader(port, deadline):
    while time.monotonic() < deadline:
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n")
            chunk = b"u" * 65536
            hold = time.monotonic() + random.uniform(5, 15)
            sent = 0
            while time.monotonic() < hold and sent < 8 << 20:
                writer.write(chunk)
                sent += len(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 1)
                except asyncio.TimeoutError:
                    pass  # stalled: the server stopped reading, as it should
            while time.monotonic() < hold:
                await asyncio.sleep(0.5)
            count("nonreader held")
            writer.transport.abort()
        except OSError as e:
            count(f"nonreader {type(e).__name__}")
            await asyncio.sleep(1)


async def tls_garbage(port, deadline):
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(random.choice([os.urandom(random.randint(1, 2000)),
                                        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40),
                                        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]))
            await asyncio.wait_for(reader.read(), 15)
            count("tls garbage closed")
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            count(f"tls garbage {type(e).__name__}")


async def tls_normal(port, deadline, context):
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port, ssl=context, server_hostname="localhost")
            for _ in range(random.randint(1, 20)):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _ = await read_response(reader)
                count("tls ok" if status == 200 else f"tls {status}")
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            count(f"tls error {type(e).__name__}")


async def ws_churn(port, deadline):
    while time.monotonic() < deadline:
        try:
            async with connect(f"ws://{HOST}:{port}/ws/echo", max_size=None, open_timeout=10) as ws:
                for _ in range(random.randint(1, 20)):
                    message = os.urandom(random.randint(1, 4096))
                    await ws.send(message)
                    if await asyncio.wait_for(ws.recv(), 10) != message:
                        count("ws echo WRONG")
                if random.random() < 0.3:
                    ws.transport.abort()
                    count("ws dropped")
                    continue
            count("ws closed")
        except (OSError, asyncio.TimeoutError, WebSocketException) as e:
            count(f"ws error {type(e).__name__}")


async def switch_node(port, node, deadline):
    while time.monotonic() < deadline:
        try:
            url = f"ws://{HOST}:{port}/v1/ws/{node}?token=soak&address={node}.soak:1"
            async with connect(url, max_size=None, open_timeout=10) as ws:
                next_id = 0

                async def call(op, **body):
                    nonlocal next_id
                    next_id += 1
                    await ws.send(json.dumps({"op": op, "id": next_id, **body}))
                    while True:  # pushes (arrays) may come first
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if isinstance(reply, dict):
                            return reply
                        count("switch pushes", len(reply))

                for _ in range(random.randint(5, 40)):
                    ports = [f"p{random.randint(0, 5000)}" for _ in range(random.randint(1, 50))]
                    await call("regport", ports=ports, subscribe=random.random() < 0.2)
                    await call("sendmsg", messages=[{"port": random.choice(ports), "body": "m" * random.randint(1, 500)}
                                                    for _ in range(random.randint(1, 20))])
                    await call("relet")
                    if random.random() < 0.5:
                        await call("unregport", ports=ports[: len(ports) // 2])
                    count("switch rounds")
            count("switch reconnects")
        except (OSError, asyncio.TimeoutError, WebSocketException, ValueError) as e:
            count(f"switch error {type(e).__name__}")


async def flood(port, deadline):
    while time.monotonic() < deadline:
        sockets = []
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect((HOST, port))
            except BlockingIOError:
                pass
            except OSError:
                count("flood connect refused")
            sockets.append(s)
        await asyncio.sleep(0.2)
        for s in sockets:
            try:
                if random.random() < 0.3:
                    s.send(b"GET /heal")
            except OSError:
                pass
            s.close()
        count("flood bursts")
        await asyncio.sleep(2)


# ---------------------------------------------------------------- fault phases (after the mix)

# (phase, passed, what it did), printed in the summary and failing the soak if not passed.
PHASES = []


def phase(name, passed, detail):
    PHASES.append((name, passed, detail))
    print(f"phase {name}: {'ok' if passed else 'FAILED'}: {detail}", flush=True)


def log_lines(path, text):
    if not path:
        return 0
    with open(path, errors="replace") as f:
        return sum(text in line for line in f)


async def descriptor_exhaustion(args):
    """Defect 3 of issue 12: the server runs with `--nofile` descriptors (soak.sh starts it
    under prlimit). Idle connections, more than it can hold, use them all up; then clients
    that send a request wait in the listen backlog, unanswered; once the idle connections
    close, every one of them must be answered (the listener retries accepting on a timer,
    `[tcp] accept_retry_ms`, instead of waiting for a new readiness edge)."""
    port, queued = args.http, args.queued
    # This process holds more than the server can: raise its own soft limit if needed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.nofile + 128 + queued + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))
    warned_before = log_lines(args.log, "cannot accept connections")
    holders = []
    for _ in range(args.nofile + 128):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((HOST, port))
        except BlockingIOError:
            pass
        holders.append(s)
    peak = descriptors(args.pid)
    until = time.monotonic() + 15
    while time.monotonic() < until and peak < args.nofile - 2:
        await asyncio.sleep(0.05)
        peak = max(peak, descriptors(args.pid))
    answered = []

    async def queued_client():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _ = await read_response(reader, 30)
            answered.append((time.monotonic(), status))
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            count(f"exhaustion queued client {type(e).__name__}")

    tasks = [asyncio.ensure_future(queued_client()) for _ in range(queued)]
    await asyncio.sleep(2)
    peak = max(peak, descriptors(args.pid))
    while_exhausted = len(answered)
    released = time.monotonic()
    for s in holders:
        s.close()
    await asyncio.wait(tasks, timeout=40)
    served = sum(1 for _, status in answered if status == 200)
    took = max((t for t, _ in answered), default=released) - released
    warned = log_lines(args.log, "cannot accept connections") - warned_before
    passed = peak >= args.nofile - 2 and while_exhausted == 0 and served == queued and (warned > 0 or not args.log)
    phase("descriptors", passed,
          f"limit {args.nofile}, {len(holders)} idle connections held, server peak {peak} descriptors; "
          f"{queued} clients queued, {while_exhausted} answered while exhausted, {served} answered 200 "
          f"within {took:.2f} s of the release; {warned} 'cannot accept connections' log lines")


# The id of the stall phase's queryport (relets count up from 1 and never reach it).
QUERY_ID = 1_000_000


class StallNode:
    """A switch node on its receiving WebSocket, no pings: only its requests relet it."""

    async def start(self, port, node, port_name):
        self.node, self.replies, self.errors, self.query = node, 0, [], None
        url = f"ws://{HOST}:{port}/v1/ws/{node}?token=soak&address={node}.soak:1"
        self.ws = await connect(url, max_size=None, open_timeout=10, ping_interval=None)
        await self.ws.send(json.dumps({"op": "regport", "id": 0, "ports": [port_name]}))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if isinstance(reply, dict):
                break
        if reply.get("registered") != 1:
            raise RuntimeError(f"{node} could not register {port_name}: {reply}")
        self.reader = asyncio.ensure_future(self.read())
        return self

    async def read(self):
        try:
            async for message in self.ws:
                reply = json.loads(message)
                if isinstance(reply, dict):
                    self.replies += 1
                    if "error" in reply:
                        self.errors.append(reply)
                    if reply.get("id") == QUERY_ID:
                        self.query = reply
        except WebSocketException:
            pass

    def closed(self):
        return self.reader.done()


async def stall(args):
    """Defect 4 of issue 12: `kill -STOP` for 1.6 leases, then `kill -CONT`. Nodes that kept
    reletting during the stall (their relets waited in the kernel) must stay online with their
    ports; a node silent since before the stall must still expire (4001)."""
    lease_s = args.lease_ms / 1000
    keepers = [await StallNode().start(args.http, f"soak-k{i}", f"stall:k{i}") for i in range(args.keepers)]
    silent = await StallNode().start(args.http, "soak-quiet", "stall:quiet")
    stopped = resumed = None
    sent_during = 0

    async def reletter(node):
        nonlocal sent_during
        next_id = 1
        while not node.closed():
            await node.ws.send(json.dumps({"op": "relet", "id": next_id}))
            next_id += 1
            if stopped and not resumed:
                sent_during += 1
            await asyncio.sleep(lease_s / 5)

    reletters = [asyncio.ensure_future(reletter(k)) for k in keepers]
    await asyncio.sleep(lease_s / 3)
    stall_s = lease_s * 1.6
    os.kill(args.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await asyncio.sleep(stall_s)
    finally:
        os.kill(args.pid, signal.SIGCONT)
        resumed = time.monotonic()
    replies_at_resume = sum(k.replies for k in keepers)
    try:
        await asyncio.wait_for(asyncio.shield(silent.reader), lease_s * 3)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(lease_s)
    survivors = [k for k in keepers if not k.closed()]
    checked = time.monotonic() - resumed
    replies_after = sum(k.replies for k in keepers) - replies_at_resume
    for r in reletters:
        r.cancel()
    # The owners after the stall: each keeper still owns its port, the silent node's is free.
    owners = None
    if survivors:
        await survivors[0].ws.send(json.dumps({"op": "queryport", "id": QUERY_ID,
                                               "ports": [f"stall:k{i}" for i in range(len(keepers))] + ["stall:quiet"]}))
        until = time.monotonic() + 10
        while survivors[0].query is None and time.monotonic() < until and not survivors[0].closed():
            await asyncio.sleep(0.05)
        if survivors[0].query is not None:
            owners = [p.get("owner") for p in survivors[0].query.get("ports", [])]
    for k in keepers + [silent]:
        await k.ws.close()
    owners_ok = owners == [k.node for k in keepers] + [None]
    silent_code = silent.ws.close_code if silent.reader.done() else None
    passed = (len(survivors) == len(keepers) and replies_after > 0 and sent_during > 0 and owners_ok
              and silent_code == 4001)
    phase("stall", passed,
          f"SIGSTOP {stall_s:.1f} s with lease {lease_s:.1f} s; {sent_during} relets sent during the stall; "
          f"{len(survivors)}/{len(keepers)} reletting nodes still online {checked:.1f} s after SIGCONT "
          f"({replies_after} replies since, errors: {[e for k in keepers for e in k.errors][:3]}); "
          f"ports owned {'as before' if owners_ok else owners}; "
          f"the silent node closed with {silent_code} (4001 expected)")


def process_state(pid):
    """The state letter of /proc/PID/stat ("Z" once it exited and awaits soak.sh's wait)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


async def drain(args):
    """Graceful stop, last: WebSocket clients (echo and switch receivers) open, then SIGTERM.
    Every one must get close 1001 and the process must exit within `[reaktor]
    drain_timeout_ms` (soak.sh then checks its exit code is 0)."""
    sockets = []
    for i in range(args.drain_ws):
        ws = await connect(f"ws://{HOST}:{args.http}/ws/echo", max_size=None, open_timeout=10, ping_interval=None)
        await ws.send(b"before the drain")
        await asyncio.wait_for(ws.recv(), 10)
        sockets.append(ws)
    for i in range(4):
        url = f"ws://{HOST}:{args.http}/v1/ws/soak-n{i}?token=soak&address=soak-n{i}.soak:1"
        sockets.append(await connect(url, max_size=None, open_timeout=10, ping_interval=None))
    await asyncio.sleep(0.5)
    sent = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    limit = args.drain_ms / 1000

    async def close_code(ws):
        try:
            async for _ in ws:
                pass
        except WebSocketException:
            pass
        return ws.close_code

    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in sockets)), limit + 10)
    while process_state(args.pid) not in ("Z", "gone") and time.monotonic() - sent < limit + 10:
        await asyncio.sleep(0.02)
    state = process_state(args.pid)
    took = time.monotonic() - sent
    going_away = sum(code == 1001 for code in codes)
    passed = going_away == len(sockets) and state in ("Z", "gone") and took <= limit
    phase("drain", passed,
          f"SIGTERM with {len(sockets)} WebSockets open ({args.drain_ws} echo, 4 switch receivers): "
          f"{going_away} closed with 1001 (codes {sorted(collections.Counter(codes).items(), key=str)}); "
          f"the process {'exited' if state in ('Z', 'gone') else 'still ran (' + state + ')'} "
          f"{took:.2f} s after the signal (drain_timeout_ms {args.drain_ms}); soak.sh checks the exit code")


# ---------------------------------------------------------------- run


async def run(args):
    started = time.monotonic()
    ports = (args.http, args.https)
    samples = [sample(args.pid, ports, "idle before", started)]
    print_sample(samples[-1], header=True)
    deadline = started + args.minutes * 60
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    loops = (
        [normal(args.http, deadline) for _ in range(8)]
        + [upgrade(args.http, deadline) for _ in range(4)]
        + [slowloris(args.http, deadline) for _ in range(50)]
        + [nonreader(args.http, deadline) for _ in range(10)]
        + [tls_garbage(args.https, deadline) for _ in range(4)]
        + ([tls_normal(args.https, deadline, context) for _ in range(2)] if context else [])
        + [ws_churn(args.http, deadline) for _ in range(8)]
        + [switch_node(args.http, f"soak-n{i}", deadline) for i in range(16)]
        + [flood(args.http, deadline)]
        + [probe(args.http, deadline)]
    )
    tasks = [asyncio.ensure_future(loop) for loop in loops]

    async def sampler():
        while time.monotonic() < deadline:
            await asyncio.sleep(min(15, max(0, deadline - time.monotonic())))
            samples.append(sample(args.pid, ports, "load", started))
            print_sample(samples[-1])

    await asyncio.gather(sampler(), *tasks)
    samples[-1]["label"] = "end of load"
    # The process-level faults, one after the other, each sampled after it; the idle sample
    # after them covers what they left behind too. The drain ends the process: last.
    await asyncio.sleep(5)
    await descriptor_exhaustion(args)
    samples.append(sample(args.pid, ports, "after fds", started))
    print_sample(samples[-1])
    await stall(args)
    samples.append(sample(args.pid, ports, "after stall", started))
    print_sample(samples[-1])
    await asyncio.sleep(args.settle)
    samples.append(sample(args.pid, ports, "idle after", started))
    print_sample(samples[-1])
    await drain(args)
    return samples


def print_sample(s, header=False):
    if header:
        print(f"{'sample':<12} {'t/s':>5} {'VmRSS KiB':>10} {'RssAnon KiB':>11} {'rings KiB':>10} "
              f"{'fds':>6} {'sockets':>8} {'CLOSE-WAIT':>10} {'tcp gauge':>9} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    print(f"{s['label']:<12} {s['t']:>5} {s['rss_kib']:>10} {s['anon_kib']:>11} {s['file_kib']:>10} "
          f"{s['fds']:>6} {s['sockets']:>8} {s['close_wait']:>10} {s['tcp_gauge']:>9} "
          f"{str(s['p50_ms']):>7} {str(s['p99_ms']):>7} {str(s['max_ms']):>7}", flush=True)


def verdict(samples):
    """What must hold: idle after as idle before (descriptors and connections back), no
    CLOSE-WAIT left, and private memory at the end of the load within 25% + 16 MiB of what it
    was a third of the way in (the working set of a steady mix, not a leak)."""
    before, after = samples[0], samples[-1]
    load = [s for s in samples if s["label"] in ("load", "end of load")]
    third = load[len(load) // 3] if load else before
    end = load[-1] if load else after
    problems = []
    if after["fds"] > before["fds"] + 8:
        problems.append(f"descriptors {before['fds']} idle before, {after['fds']} idle after")
    if after["sockets"] > before["sockets"] + 4:
        problems.append(f"sockets {before['sockets']} idle before, {after['sockets']} idle after")
    if after["close_wait"] > 0:
        problems.append(f"{after['close_wait']} sockets left in CLOSE-WAIT")
    if after["tcp_gauge"] > before["tcp_gauge"] + 4:
        problems.append(f"reaktor_tcp_connections {before['tcp_gauge']} -> {after['tcp_gauge']}")
    if end["anon_kib"] > third["anon_kib"] * 1.25 + 16384:
        problems.append(f"RssAnon {third['anon_kib']} KiB at t={third['t']}s, {end['anon_kib']} KiB at t={end['t']}s")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--https", type=int, required=True)
    parser.add_argument("--ca")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--settle", type=float, default=20, help="idle seconds before the last sample")
    parser.add_argument("--tsv")
    parser.add_argument("--log", help="the server's log (counts its 'cannot accept connections' lines)")
    parser.add_argument("--nofile", type=int, required=True, help="the server's descriptor limit")
    parser.add_argument("--queued", type=int, default=50, help="clients queued while descriptors are exhausted")
    parser.add_argument("--lease-ms", type=int, required=True, help="[switch] lease_ms")
    parser.add_argument("--keepers", type=int, default=8, help="nodes that relet through the stall")
    parser.add_argument("--drain-ms", type=int, required=True, help="[reaktor] drain_timeout_ms")
    parser.add_argument("--drain-ws", type=int, default=16, help="echo WebSockets open at SIGTERM")
    args = parser.parse_args()
    samples = asyncio.run(run(args))
    print("\nworkload counts:")
    for what, n in sorted(COUNTS.items()):
        print(f"  {what:<45} {n}")
    print("\nfault phases:")
    for name, passed, detail in PHASES:
        print(f"  {name:<12} {'ok    ' if passed else 'FAILED'} {detail}")
    problems = verdict(samples)
    problems += [f"phase {name} failed: {detail}" for name, passed, detail in PHASES if not passed]
    if args.tsv:
        with open(args.tsv, "a") as f:
            for s in samples:
                f.write("\t".join(str(s[k]) for k in ("label", "t", "rss_kib", "anon_kib", "file_kib", "fds",
                                                       "sockets", "close_wait", "tcp_gauge", "p50_ms", "p99_ms",
                                                       "max_ms")) + "\n")
    unanswered = sum(n for what, n in COUNTS.items() if "NOT ANSWERED" in what or "WRONG" in what)
    if unanswered:
        problems.append(f"{unanswered} requests unanswered or wrong")
    if problems:
        print("\nsoak: FAILED (growth, leak or a fault phase):\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("\nsoak: bounded (descriptors, sockets and connections back to idle; memory flat); "
          "every fault phase passed")


if __name__ == "__main__":
    main()
