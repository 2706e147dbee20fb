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
    await asyncio.sleep(args.settle)
    samples.append(sample(args.pid, ports, "idle after", started))
    print_sample(samples[-1])
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
    args = parser.parse_args()
    samples = asyncio.run(run(args))
    print("\nworkload counts:")
    for what, n in sorted(COUNTS.items()):
        print(f"  {what:<45} {n}")
    problems = verdict(samples)
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
        print("\nsoak: GROWTH OR LEAK:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("\nsoak: bounded (descriptors, sockets and connections back to idle; memory flat)")


if __name__ == "__main__":
    main()
