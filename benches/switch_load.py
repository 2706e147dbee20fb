#!/usr/bin/env python3
"""Load generator for the port switch benchmarks (benches/switch_regport.sh).

  switch_load.py regport PORT NODES BATCHES BATCH [DEPTH]
      NODES WebSocket nodes each register BATCHES x BATCH unique 16-byte ports, keeping
      DEPTH requests in flight per node. Prints `ports=N seconds=S ports_per_s=R`.
  switch_load.py sendmsg PORT MESSAGES BATCH
      one sender node pushes MESSAGES 64-byte bodies to one receiving node's port in SendMsg
      batches of BATCH (pipelined 8 deep); prints `messages=N seconds=S msgs_per_s=R` once the
      receiver got them all.
  switch_load.py nats PORT MESSAGES BATCH
      the same against nats-server: one raw-protocol publisher, one subscriber.
  switch_load.py latency PORT RATE SECONDS
      one node sends single-port RegPort requests at RATE per second (each a fresh port) and
      prints p50/p99/p99.9 round-trip latency in microseconds.

Requests are serialized before the clock starts, so the client mostly writes sockets.
Tokens: `bench` must act for nodes b0..b63 (see the topology in switch_regport.sh).
"""

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect


async def open_node(port, node):
    ws = await connect(f"ws://127.0.0.1:{port}/v1/ws/{node}?address={node}:1",
                       additional_headers={"Authorization": "Bearer bench"},
                       max_size=None, ping_interval=None, compression=None)
    await ws.send(json.dumps({"op": "relet", "id": 0}))
    await ws.recv()
    return ws


async def regport(port, nodes, batches, batch, depth=4):
    wss = [await open_node(port, f"b{n}") for n in range(nodes)]
    payloads = []
    for n in range(nodes):
        mine = []
        for b in range(batches):
            ports = [f"{n:02d}{b:05d}{i:09d}" for i in range(batch)]  # 16 bytes
            mine.append(json.dumps({"op": "regport", "id": b + 1, "ports": ports}))
        payloads.append(mine)

    async def run(ws, mine):
        inflight = 0
        got = 0
        for p in mine:
            await ws.send(p)
            inflight += 1
            while inflight >= depth:
                r = await ws.recv()
                inflight -= 1
                got += json.loads(r)["registered"]
        while inflight:
            r = await ws.recv()
            inflight -= 1
            got += json.loads(r)["registered"]
        return got

    t0 = time.perf_counter()
    got = await asyncio.gather(*(run(ws, mine) for ws, mine in zip(wss, payloads)))
    dt = time.perf_counter() - t0
    total = sum(got)
    assert total == nodes * batches * batch, (total, nodes * batches * batch)
    print(f"ports={total} seconds={dt:.3f} ports_per_s={total / dt:.0f}")
    for ws in wss:
        await ws.close()


async def sendmsg(port, messages, batch):
    recv = await open_node(port, "b0")
    await recv.send(json.dumps({"op": "regport", "id": 1, "ports": ["inbox"]}))
    await recv.recv()
    sender = await open_node(port, "b1")
    body = "x" * 64
    payload = json.dumps({"op": "sendmsg", "id": 1,
                          "messages": [{"port": "inbox", "body": body}] * batch})
    count = messages // batch

    async def send():
        inflight = 0
        for _ in range(count):
            await sender.send(payload)
            inflight += 1
            if inflight >= 8:
                await sender.recv()
                inflight -= 1
        for _ in range(inflight):
            await sender.recv()

    async def receive():
        got = frames = 0
        while got < count * batch:
            m = await recv.recv()
            got += m.count('"type":"msg"')
            frames += 1
        return frames

    t0 = time.perf_counter()
    frames, _ = await asyncio.gather(receive(), send())
    dt = time.perf_counter() - t0
    n = count * batch
    print(f"messages={n} seconds={dt:.3f} msgs_per_s={n / dt:.0f} push_frames={frames}")


async def latency(port, rate, seconds):
    ws = await open_node(port, "b0")
    n = int(rate * seconds)
    payloads = [json.dumps({"op": "regport", "id": i + 1, "ports": [f"lat{i:013d}"]}) for i in range(n)]
    sent = {}
    lat = []

    async def reader():
        for _ in range(n):
            r = json.loads(await ws.recv())
            lat.append(time.perf_counter() - sent[r["id"]])

    task = asyncio.create_task(reader())
    t0 = time.perf_counter()
    for i, p in enumerate(payloads):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i + 1] = time.perf_counter()
        await ws.send(p)
    await task
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
    print(f"requests={n} rate={rate}/s p50_us={pct(0.5):.0f} p99_us={pct(0.99):.0f} p999_us={pct(0.999):.0f} max_us={lat[-1] * 1e6:.0f}")


async def nats(port, messages, batch):
    """The NATS peer: one publisher and one subscriber on raw sockets (protocol text), the
    publisher writing `batch` PUBs per socket write, like a pipelined SendMsg batch."""
    async def conn():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readline()  # INFO
        w.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        return r, w

    sr, sw = await conn()
    sw.write(b"SUB inbox 1\r\nPING\r\n")
    await sw.drain()
    while (await sr.readline()) != b"PONG\r\n":
        pass
    pr, pw = await conn()
    chunk = (b"PUB inbox 64\r\n" + b"x" * 64 + b"\r\n") * batch
    count = messages // batch
    # Each MSG is "MSG inbox 1 64\r\n" + 64 bytes + "\r\n".
    per = len(b"MSG inbox 1 64\r\n") + 66
    total = per * count * batch

    async def receive():
        got = 0
        while got < total:
            data = await sr.read(1 << 20)
            if not data:
                raise ConnectionError("nats closed")
            got += len(data)

    async def send():
        for _ in range(count):
            pw.write(chunk)
            await pw.drain()

    t0 = time.perf_counter()
    await asyncio.gather(receive(), send())
    dt = time.perf_counter() - t0
    n = count * batch
    print(f"messages={n} seconds={dt:.3f} msgs_per_s={n / dt:.0f}")


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    args = [int(a) for a in sys.argv[3:]]
    fn = {"regport": regport, "sendmsg": sendmsg, "latency": latency, "nats": nats}[mode]
    asyncio.run(fn(port, *args))


if __name__ == "__main__":
    main()
