#!/usr/bin/env python3
"""One-connection bulk client for benches/direction_split.sh.

POSTs TOTAL bytes to URL_PATH (the echo nukleus streams them back as they arrive) on ONE
keep-alive connection and reads the echo at the same time, so both directions of the one
exchange carry TOTAL bytes at once. The client is made cheap so the server is the bound:
the body is sent with sendfile(2) from a file (no copy through Python), and the echo is read
with recv_into into one reused 1 MiB buffer. The response is checked: status 200, the
announced length, and a byte-exact sample of the echo (every 4096th byte, compared with the
file). Prints one line of key=value pairs: bytes, seconds, mib_per_s.

usage: bulk_echo.py HOST PORT TOTAL_BYTES [URL_PATH]
"""

import os
import socket
import sys
import tempfile
import threading
import time

CHUNK_FILE = 16 << 20  # the body is this file, sent over and over
SAMPLE = 4096


def main() -> None:
    host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/echo"
    pattern = bytes((i * 2654435761 >> 13) & 0xFF for i in range(CHUNK_FILE))
    with tempfile.TemporaryFile() as body:
        body.write(pattern)
        body.flush()
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {total}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        errors: list[str] = []

        def upload() -> None:
            try:
                sock.sendall(head)
                sent = 0
                while sent < total:
                    offset = sent % CHUNK_FILE
                    n = os.sendfile(
                        sock.fileno(), body.fileno(), offset, min(CHUNK_FILE - offset, total - sent)
                    )
                    if n == 0:
                        raise RuntimeError("sendfile sent nothing")
                    sent += n
            except Exception as e:  # reported by the main thread
                errors.append(f"upload: {e}")

        start = time.perf_counter()
        writer = threading.Thread(target=upload)
        writer.start()
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        # The response head, then exactly `total` body bytes.
        received = b""
        while b"\r\n\r\n" not in received:
            n = sock.recv_into(view)
            if n == 0:
                sys.exit(f"connection closed before the response head: {received!r}")
            received += bytes(view[:n])
        head_end = received.index(b"\r\n\r\n") + 4
        status = received.split(b" ", 2)[1]
        if status != b"200":
            sys.exit(f"status {status!r}: {received[:200]!r}")
        if f"content-length: {total}\r\n".encode() not in received[:head_end].lower():
            sys.exit(f"expected Content-Length: {total}: {received[:head_end]!r}")
        got = 0
        mismatches = 0

        def check(chunk: memoryview, at: int) -> int:
            bad = 0
            first = (-at) % SAMPLE
            for k in range(first, len(chunk), SAMPLE):
                if chunk[k] != pattern[(at + k) % CHUNK_FILE]:
                    bad += 1
            return bad

        leftover = memoryview(received)[head_end:]
        mismatches += check(leftover, 0)
        got += len(leftover)
        while got < total:
            n = sock.recv_into(view)
            if n == 0:
                sys.exit(f"connection closed after {got} of {total} echoed bytes")
            mismatches += check(view[:n], got)
            got += n
        seconds = time.perf_counter() - start
        writer.join()
        if errors:
            sys.exit("; ".join(errors))
        if got != total or mismatches:
            sys.exit(f"echo wrong: {got} bytes of {total}, {mismatches} sampled bytes differ")
        print(f"bytes={total} seconds={seconds:.3f} mib_per_s={total / seconds / (1 << 20):.1f}")


if __name__ == "__main__":
    main()
