"""Starts the real reaktor binary for the client tests, the way tests/support/mod.rs does:
a topology with `{PORT}` on a free loopback port, wait until it accepts, SIGTERM to stop.
The binary comes from $REAKTOR_BIN (the Rust test that runs these sets it to
CARGO_BIN_EXE_reaktor), else target/debug/reaktor under $CARGO_TARGET_DIR or the repo."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: The topology shared with tests/e2e_clients.rs: lease_ms 1500, max_ports_per_request 100,
#: max_port_name_len 64, max_queued_bytes 262144, token `tok-nK` for node nK (K < 16).
TOPOLOGY = ROOT / "tests" / "clients_topology.toml"


def binary() -> str:
    if os.environ.get("REAKTOR_BIN"):
        return os.environ["REAKTOR_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "reaktor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running reaktor on 127.0.0.1:`port`; `restart()` keeps the port."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="reaktor-client-test-")
        self.port = free_port()
        self.path = os.path.join(self.dir, "topology.toml")
        with open(self.path, "w") as f:
            f.write(TOPOLOGY.read_text().replace("{PORT}", str(self.port)))
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        streams = os.path.join(self.dir, "streams")
        os.makedirs(streams, exist_ok=True)
        self.log = open(os.path.join(self.dir, "stderr.log"), "ab")
        env = dict(os.environ, REAKTOR_LOG=os.environ.get("REAKTOR_LOG", "warn"))
        deadline = time.monotonic() + 20
        while True:
            self.proc = subprocess.Popen([binary(), "run", "--topology", self.path, "--stream-dir", streams],
                                         stdout=subprocess.DEVNULL, stderr=self.log, cwd=ROOT, env=env)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.02)
            # A restart may find the port in TIME_WAIT or not yet released: try again.
            if time.monotonic() >= deadline:
                raise RuntimeError(f"reaktor did not start: {self.stderr()}")
            time.sleep(0.1)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        self.log.close()
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def stderr(self) -> str:
        with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc is not None:
            code = self.stop()
            if code != 0:
                raise RuntimeError(f"reaktor exited {code}: {self.stderr()}")
        if "panicked" in self.stderr():
            raise RuntimeError(self.stderr())
        shutil.rmtree(self.dir, ignore_errors=True)
