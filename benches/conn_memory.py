#!/usr/bin/env python3
"""Memory per connection of a running server under uploads whose client never reads.

Opens CONNS connections to HOST:PORT, on each starts `POST /echo` with a Content-Length of
BODY bytes and writes until the socket takes no more (the server echoes the body back, and
the client never reads the echo, so every buffer on the way fills up to its bound). Then
reads the server's memory (RssAnon: private resident memory, excluding the shared stream
files) before, at the peak, and after every connection closed.

Usage: conn_memory.py PID HOST PORT [--conns N] [--body BYTES] [--settle S]
Prints one JSON object: rss_kib before/peak/after, per-connection KiB at the peak and left
after close, connections that got stuck or reset, seconds taken.
"""
import argparse
import errno
import json
import socket
import time


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("pid", type=int)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--body", type=int, default=8 << 20)
    p.add_argument("--settle", type=float, default=3.0)
    a = p.parse_args()

    started = time.monotonic()
    before = rss_anon_kib(a.pid)
    socks = []
    head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {a.body}\r\n\r\n".encode()
    for _ in range(a.conns):
        s = socket.create_connection((a.host, a.port))
        # Small client buffers: the bytes held are the server's, not the client kernel's.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(head)
        s.setblocking(False)
        socks.append([s, 0])
    chunk = b"q" * 65536
    # Write round-robin until no socket took a byte for `settle` seconds.
    reset = 0
    last_progress = time.monotonic()
    while time.monotonic() - last_progress < a.settle:
        progress = False
        for entry in socks:
            s, sent = entry
            if s is None or sent >= a.body:
                continue
            try:
                n = s.send(chunk[: min(len(chunk), a.body - sent)])
                entry[1] += n
                progress = progress or n > 0
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    reset += 1
                    s.close()
                    entry[0] = None
                else:
                    raise
        if progress:
            last_progress = time.monotonic()
        else:
            time.sleep(0.05)
    peak = rss_anon_kib(a.pid)
    uploaded = sum(sent for _, sent in socks)
    for s, _ in socks:
        if s is not None:
            s.close()
    time.sleep(a.settle)
    after = rss_anon_kib(a.pid)
    n = a.conns
    print(json.dumps({
        "conns": n,
        "rss_kib_before": before,
        "rss_kib_peak": peak,
        "rss_kib_after_close": after,
        "kib_per_conn_at_peak": round((peak - before) / n, 1),
        "kib_per_conn_left_after_close": round((after - before) / n, 1),
        "uploaded_mib": round(uploaded / (1 << 20), 1),
        "reset_by_server": reset,
        "seconds": round(time.monotonic() - started, 1),
    }))


if __name__ == "__main__":
    main()
