#!/usr/bin/env python3
"""A presence node: logs a user in (port ``user:<name>``), says hello to another user every
second, prints what arrives, takes the user over when another node lets it go, and keeps all
of that across switch restarts.

    cargo run --release -p reaktor -- run --topology examples/default.toml &
    .venv/bin/python clients/python/examples/presence.py ws://127.0.0.1:8080 chat-1 demo-chat alice bob 10 &
    .venv/bin/python clients/python/examples/presence.py ws://127.0.0.1:8080 chat-2 demo-chat bob alice 10

Arguments: URL[,URL...] NODE TOKEN USER PEER SECONDS.
"""

import asyncio
import sys

import reaktor_client as rc


async def main(urls, node, token, user, peer, seconds):
    me = f"user:{user}"
    client = await rc.connect(urls.split(","), node, token, address=f"{node}.local:9000")
    print(f"[{node}] connected", flush=True)
    async with client:
        reg = await client.register(me, subscribe=True)
        if reg.failed:
            f = reg.failed[0]
            print(f"[{node}] {user} is on {f.owner} ({f.address}); waiting for release", flush=True)
        else:
            print(f"[{node}] logged in {user}", flush=True)

        async def hello():
            while True:
                report = await client.send_report([rc.Message(f"hello from {user}", port=f"user:{peer}")])
                if report.dropped:
                    print(f"[{node}] {peer} is offline", flush=True)
                await asyncio.sleep(1)

        async def listen():
            async for event in client.events():
                if isinstance(event, rc.Push):
                    print(f"[{node}] to {event.port}: {event.body}", flush=True)
                elif isinstance(event, rc.Released):
                    print(f"[{node}] {event.port} released ({event.reason})", flush=True)
                    if event.port == me and not (await client.register(me)).failed:
                        print(f"[{node}] logged in {user}", flush=True)
                elif isinstance(event, rc.Disconnected):
                    print(f"[{node}] disconnected: {event.error}", flush=True)
                elif isinstance(event, rc.Reconnected):
                    print(f"[{node}] reconnected to {event.url}: {event.restored} kept, lost {list(event.lost)}", flush=True)

        tasks = [asyncio.create_task(hello()), asyncio.create_task(listen())]
        await asyncio.sleep(float(seconds))
        for t in tasks:
            t.cancel()


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
