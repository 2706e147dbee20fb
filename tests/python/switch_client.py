"""Test tools for the reaktor port switch, used by tests/python/switch_e2e.py: the receiving
connection by WebSocket through the project's Python client (`reaktor_client`, clients/python,
installed into .venv by scripts/setup-test-deps.sh), and the raw protocol where the tests check
the server's exact answers: REST with http.client (statuses, headers, bodies as sent) and
Server-Sent Events on a raw socket.
"""

import asyncio
import http.client
import json
import socket
import urllib.parse

from reaktor_client import Connection


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
    """A node's receiving connection over WebSocket: the Python client's low-level
    `reaktor_client.Connection` (clients/python), which the tests drive op by op. Replies
    resolve the call that sent them; pushes land in `pushes`, one entry per push."""

    def __init__(self, conn, node):
        self.conn, self.node = conn, node
        self.pushes = asyncio.Queue()
        self.frames = 0
        self.closed = conn.closed
        #: The session the connection's first push named.
        self.session = None
        conn.on_pushes = self._on_pushes

    def _on_pushes(self, batch):
        self.frames += 1
        for push in batch:
            if push.get("type") == "session":
                self.session = push["session"]
                continue
            self.pushes.put_nowait(push)

    @classmethod
    async def open(cls, port, node, token, address=None, ping_interval=None, query_token=False, host="127.0.0.1"):
        """Raises `reaktor_client.SwitchError` (with `status`, `message`, `headers`) if the
        switch refuses the handshake."""
        conn = await Connection.open([f"ws://{host}:{port}"], node, token, address=address or f"{node}.example:7000",
                                     query_token=query_token, ping_interval=ping_interval)
        self = cls(conn, node)
        # The first reply proves the receiving connection is registered.
        await self.call("relet")
        return self

    async def send(self, op, **body):
        """Sends a request without waiting; returns the future of its reply."""
        return self.conn.request(op, **body)

    async def call(self, op, **body):
        return await self.conn.call(op, timeout=30, **body)

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
        await self.conn.close()

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        self.conn.abort()


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
        #: The session the stream's first event named (accepted streams only).
        self.session = None
        self._events = self._read_events() if self.status == 200 else iter(())
        if self.status == 200:
            name, data = next(self._events)
            if name != "message" or not data or data[0].get("type") != "session":
                raise AssertionError(f"the first event is not the session: {name} {data}")
            self.session = data[0]["session"]

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
        """Yields (event name, data) pairs until the stream ends (after the session)."""
        return self._events

    def _read_events(self):
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
