"""WebSocket client checks against the reaktor's echo endpoint, driven by tests/e2e_ws.rs.

Usage: ws_client.py URL CHECK   (CHECK: basic, large, badutf8, close, many, idle, lease, held)
Prints OK and exits 0 on success; raises (exit 1) with the reason otherwise. `held` prints
READY once connected, then `CLOSED <code> <reason>` when the server closes the connection.
"""

import asyncio
import os
import sys

import websockets
from websockets.exceptions import ConnectionClosed

TIMEOUT = 20


async def basic(url):
    async with websockets.connect(url) as ws:
        await ws.send("hello, wörld")
        assert await ws.recv() == "hello, wörld"
        await ws.send(b"\x00\x01\x02binary")
        assert await ws.recv() == b"\x00\x01\x02binary"
        await ws.send("")
        assert await ws.recv() == ""
        # A fragmented text message, fragments split inside a code point.
        await ws.send(["frag", "mént", "", "s"])
        assert await ws.recv() == "fragménts"
        pong = await ws.ping(b"heartbeat")
        await asyncio.wait_for(pong, TIMEOUT)
    assert ws.close_code == 1000, ws.close_code


async def large(url):
    async with websockets.connect(url, max_size=None) as ws:
        message = os.urandom(1 << 20)
        # 1 MiB as 16 fragments of 64 KiB.
        await ws.send([message[i : i + 65536] for i in range(0, len(message), 65536)])
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
        text = "ab€" * 300000
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def badutf8(url):
    async with websockets.connect(url) as ws:
        await ws.send("fine")
        assert await ws.recv() == "fine"
        await ws.send(b"caf\xc3\x28", text=True)
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            raise AssertionError("invalid UTF-8 was echoed")
        except ConnectionClosed:
            pass
    assert ws.close_code == 1007, (ws.close_code, ws.close_reason)


async def close(url):
    async with websockets.connect(url) as ws:
        await ws.send("bye")
        assert await ws.recv() == "bye"
        await ws.close(code=4321, reason="done")
    # The server echoes the client's close code.
    assert ws.close_code == 4321, ws.close_code


async def many(url):
    async def one(n):
        async with websockets.connect(url) as ws:
            for i in range(50):
                payload = f"{n}:{i}" * (i + 1)
                await ws.send(payload)
                assert await ws.recv() == payload

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(40))), 60)


async def idle(url):
    """With `[ws] idle_timeout_ms = 1000`: a silent connection is closed with 1001 "idle
    timeout" about a second after it opened; one that sends a message every 300 ms stays
    open, and so does one that sends nothing but the library's keepalive pings (every 300 ms,
    each answered by a pong)."""
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, ping_interval=None) as silent, websockets.connect(
        url, ping_interval=None
    ) as busy, websockets.connect(url, ping_interval=0.3, ping_timeout=5) as pinging:
        start = loop.time()
        try:
            await asyncio.wait_for(silent.recv(), 0.8)
            raise AssertionError("the silent connection got a message")
        except asyncio.TimeoutError:
            pass
        while loop.time() - start < 2.5:
            await busy.send("tick")
            assert await busy.recv() == "tick"
            await asyncio.sleep(0.3)
        try:
            await asyncio.wait_for(silent.recv(), TIMEOUT)
            raise AssertionError("the silent connection got a message")
        except ConnectionClosed:
            pass
        assert (silent.close_code, silent.close_reason) == (1001, "idle timeout"), (
            silent.close_code,
            silent.close_reason,
        )
        await busy.send("still here")
        assert await busy.recv() == "still here"
        # Pings alone kept this one open, well past the timeout.
        assert pinging.close_code is None, (pinging.close_code, pinging.close_reason)
        await pinging.send("pinged")
        assert await pinging.recv() == "pinged"
    assert busy.close_code == 1000, busy.close_code
    assert pinging.close_code == 1000, pinging.close_code


async def lease(url):
    """A switch node's silent receiving connection, with `[ws] idle_timeout_ms` shorter than
    `[switch] lease_ms = 3000`: not closed as idle; the lease closes it (4001) after ~3 s."""
    loop = asyncio.get_running_loop()
    async with websockets.connect(url) as ws:
        start = loop.time()
        try:
            while True:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed:
            took = loop.time() - start
    assert ws.close_code == 4001, (ws.close_code, ws.close_reason)
    assert took >= 2.5, f"closed after {took:.2f} s"


async def held(url):
    """Holds a connection open until the server closes it (answering its close)."""
    async with websockets.connect(url) as ws:
        print("READY", flush=True)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    print(f"CLOSED {ws.close_code} {ws.close_reason}", flush=True)


async def main():
    url, check = sys.argv[1], sys.argv[2]
    await asyncio.wait_for(globals()[check](url), 90)
    print("OK")


asyncio.run(main())
