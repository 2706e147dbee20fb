"""A small client of the reaktor port switch: REST with http.client (stdlib), the receiving
connection by WebSocket (the `websockets` package) or Server-Sent Events (stdlib socket).

Used by the end-to-end tests (tests/python/switch_e2e.py) and the chat example.
"""

import asyncio
import http.client
import json
import socket
import urllib.parse

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


class Rest:
    """REST calls on one keep-alive connection."""

    def __init__(self, port, token=None, host="127.0.0.1"):
        self.host, self.port, self.token = host, port, token
        self.conn = None

    def call(self, method, path, body=None, token=..., raw=None, headers=None):
        """Returns (status, parsed JSON body or text, response headers)."""
        token = self.token if token is ... else token
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                payload = r.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        ctype = r.getheader("Content-Type", "")
        parsed = json.loads(payload) if payload and "json" in ctype else payload.decode()
        return r.status, parsed, dict(r.getheaders())

    def regport(self, node, ports, subscribe=False, **kw):
        return self.call("POST", f"/v1/nodes/{q(node)}/ports", {"ports": ports, "subscribe": subscribe}, **kw)

    def unregport(self, node, ports, **kw):
        return self.call("DELETE", f"/v1/nodes/{q(node)}/ports", {"ports": ports}, **kw)

    def relet(self, node, **kw):
        return self.call("POST", f"/v1/nodes/{q(node)}/relet", **kw)

    def sendmsg(self, messages, **kw):
        return self.call("POST", "/v1/messages", {"messages": messages}, **kw)

    def queryport(self, ports, **kw):
        return self.call("POST", "/v1/ports/query", {"ports": ports}, **kw)

    def querynode(self, nodes, **kw):
        return self.call("POST", "/v1/nodes/query", {"nodes": nodes}, **kw)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def q(s):
    return urllib.parse.quote(s, safe="")


class WsNode:
    """A node's receiving connection over WebSocket. Replies (JSON objects) resolve the call
    that sent them; pushes (JSON arrays) land in `pushes`, one entry per push."""

    def __init__(self, ws, node):
        self.ws, self.node = ws, node
        self.pushes = asyncio.Queue()
        self.frames = 0
        self.waiting = {}
        self.next_id = 1
        self.closed = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port, node, token, address=None, ping_interval=None, query_token=False, host="127.0.0.1"):
        params = {"address": address or f"{node}.example:7000"}
        headers = {}
        if query_token:
            params["token"] = token
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = f"ws://{host}:{port}/v1/ws/{q(node)}?{urllib.parse.urlencode(params)}"
        ws = await connect(url, additional_headers=headers, ping_interval=ping_interval, max_size=None, close_timeout=2)
        self = cls(ws, node)
        # The first reply proves the receiving connection is registered.
        await self.call("relet")
        return self

    async def _read(self):
        try:
            async for message in self.ws:
                data = json.loads(message)
                if isinstance(data, list):
                    self.frames += 1
                    for push in data:
                        self.pushes.put_nowait(push)
                else:
                    fut = self.waiting.pop(data.get("id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.close_code, self.ws.close_reason
            if not self.closed.done():
                self.closed.set_result(rcvd)
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"closed {rcvd}"))

    async def send(self, op, **body):
        """Sends a request without waiting; returns the future of its reply."""
        i = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[i] = fut
        await self.ws.send(json.dumps({"op": op, "id": i, **body}))
        return fut

    async def call(self, op, **body):
        return await asyncio.wait_for(await self.send(op, **body), 30)

    async def push(self, timeout=10):
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def no_push(self, wait=0.3):
        """Asserts that no push arrives within `wait` seconds."""
        try:
            p = await asyncio.wait_for(self.pushes.get(), wait)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{self.node}: unexpected push {p}")

    async def close(self):
        await self.ws.close()
        self.reader.cancel()

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        self.ws.transport.abort()


class SseNode:
    """A node's receiving connection over Server-Sent Events, on a raw socket (stdlib)."""

    def __init__(self, port, node, token, address=None, host="127.0.0.1", read=True):
        self.node = node
        self.sock = socket.create_connection((host, port), timeout=30)
        addr = urllib.parse.quote(address or f"{node}.example:7000")
        self.sock.sendall(
            (f"GET /v1/nodes/{q(node)}/messages?address={addr} HTTP/1.1\r\nHost: x\r\n"
             f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head.decode()

    def _until(self, sep):
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _chunk(self):
        size = int(self._until(b"\r\n"), 16)
        if size == 0:
            raise EOFError("stream ended")
        while len(self.buf) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        return data

    def events(self):
        """Yields (event name, data) pairs until the stream ends."""
        pending = b""
        while True:
            try:
                pending += self._chunk()
            except EOFError:
                return
            while b"\n\n" in pending:
                block, pending = pending.split(b"\n\n", 1)
                name, data = "message", []
                for line in block.decode().split("\n"):
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                if data:
                    yield name, json.loads("\n".join(data))

    def close(self):
        self.sock.close()
