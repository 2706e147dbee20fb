"""HTTPS client for tests/e2e_tls.rs, using only Python's ssl module.

    tls_client.py PORT CAFILE [CERTFILE KEYFILE]

Connects to 127.0.0.1:PORT with server name "localhost", verifying against CAFILE (and
presenting CERTFILE/KEYFILE if given), sends two keep-alive requests (GET / and POST /echo) on
one connection, and prints one JSON object: TLS version, ALPN protocol, and per request the
status and body. Exits non-zero with the error on stderr if the TLS connection fails.
"""

import json
import socket
import ssl
import sys


def read_response(sock_file):
    status_line = sock_file.readline().decode("latin-1")
    status = int(status_line.split(" ", 2)[1])
    length, chunked = None, False
    while True:
        line = sock_file.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        if name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int(sock_file.readline().strip(), 16)
            if size == 0:
                sock_file.readline()
                break
            body += sock_file.read(size)
            sock_file.readline()
    else:
        body = sock_file.read(length or 0)
    return status, body.decode()


def main():
    port, cafile = int(sys.argv[1]), sys.argv[2]
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    if len(sys.argv) >= 5:
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                out = {"version": tls.version(), "alpn": tls.selected_alpn_protocol(), "responses": []}
                f = tls.makefile("rb")
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                out["responses"].append(read_response(f))
                body = b"python ssl says hi"
                tls.sendall(
                    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                out["responses"].append(read_response(f))
    except (ssl.SSLError, OSError, ValueError, IndexError) as e:
        print(f"TLS client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
