#!/usr/bin/env python3
"""client_load: the workloads of benches/peers/switch-load (regport, sendmsg) driven through
the Python client's public API, for benches/clients.sh (side by side with the raw protocol).

  client_load.py regport --port P --pid SERVER_PID [--nodes 4 --batch 1000 --depth 8 --total N]
  client_load.py sendmsg --port P --pid SERVER_PID [--batch 1000 --depth 8 --window 65536
                                                    --size 64 --duration 5 --warmup 1]
  common: --host 127.0.0.1 --token bench --node-prefix b --tag aa

Prints one line of key=value pairs (the same keys as switch-load).
"""

import argparse
import asyncio
import os
import time

import reaktor_client as rc


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    def __init__(self, pid):
        self.pid, self.t0, self.srv0, self.me0 = pid, time.monotonic(), cpu_s(pid), cpu_s(os.getpid())

    def report(self, ops, unit):
        wall = time.monotonic() - self.t0
        srv, me = cpu_s(self.pid) - self.srv0, cpu_s(os.getpid()) - self.me0
        return (f"{unit}={ops} seconds={wall:.3f} {unit}_per_s={ops / wall:.0f} "
                f"server_ns_per_op={srv * 1e9 / max(ops, 1):.0f} server_pct={100 * srv / wall:.0f} "
                f"client_pct={100 * me / wall:.0f} client_ns_per_op={me * 1e9 / max(ops, 1):.0f}")


def options(a):
    return rc.ClientOptions(max_batch_items=max(a.batch, 1000), max_batch_bytes=8 << 20,
                            max_buffered_events=max(a.window * 2, 65536))


async def connect(a, node):
    return await rc.connect(f"ws://{a.host}:{a.port}", node, a.token, address=f"{node}:1", options=options(a))


async def regport(a):
    clients = [await connect(a, f"{a.node_prefix}{i}") for i in range(a.nodes)]
    per_node = a.total // a.nodes
    meter = Meter(a.pid)

    async def worker(i, c, d):
        owned, k = 0, d
        while k * a.batch < per_node:
            start = k * a.batch
            names = [f"{a.tag}{i:03}{n:011}" for n in range(start, min(start + a.batch, per_node))]
            r = await c.register(names)
            assert not r.failed, f"{len(r.failed)} failed"
            owned += len(r.owned)
            k += a.depth
        return owned

    counts = await asyncio.gather(*(worker(i, c, d) for i, c in enumerate(clients) for d in range(a.depth)))
    print(f"mode=regport client=python nodes={a.nodes} batch={a.batch} depth={a.depth} {meter.report(sum(counts), 'ports')}",
          flush=True)
    for c in clients:
        await c.close()


async def sendmsg(a):
    rx = await connect(a, f"{a.node_prefix}0")
    await rx.register("inbox")
    tx = await connect(a, f"{a.node_prefix}1")
    state = {"got": 0}
    progress = asyncio.Event()

    async def receiver():
        nxt = 0
        async for ev in rx.events():
            assert isinstance(ev, rc.Push), ev
            seq = int(ev.body[:16])
            assert seq == nxt, f"out of order: {seq} != {nxt}"
            nxt += 1
            state["got"] = nxt
            progress.set()

    rtask = asyncio.create_task(receiver())
    pad = "x" * max(0, a.size - 16)
    sent, inflight = 0, set()
    meter, base = Meter(a.pid), 0
    t0 = time.monotonic()
    warm, stop = t0 + a.warmup, t0 + a.warmup + a.duration
    while time.monotonic() < stop:
        if warm is not None and time.monotonic() >= warm:
            warm, meter, base = None, Meter(a.pid), state["got"]
        if len(inflight) >= a.depth or sent + a.batch > state["got"] + a.window:
            progress.clear()
            if inflight:
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()
            else:
                await progress.wait()
            continue
        msgs = [rc.Message(f"{s:016}{pad}", port="inbox") for s in range(sent, sent + a.batch)]
        sent += a.batch
        inflight.add(asyncio.ensure_future(tx.send_many(msgs)))
    if inflight:
        await asyncio.gather(*inflight)
    while state["got"] < sent:
        progress.clear()
        await progress.wait()
    report = meter.report(sent - base, "msgs")
    print(f"mode=sendmsg client=python batch={a.batch} window={a.window} size={a.size} {report}", flush=True)
    rtask.cancel()
    await rx.close()
    await tx.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["regport", "sendmsg"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--token", default="bench")
    ap.add_argument("--node-prefix", default="b")
    ap.add_argument("--tag", default="aa")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--total", type=int, default=10_000_000)
    ap.add_argument("--window", type=int, default=65536)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    a = ap.parse_args()
    asyncio.run(regport(a) if a.mode == "regport" else sendmsg(a))


if __name__ == "__main__":
    main()
