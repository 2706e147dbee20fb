"""Starts the real reaktor binary for the client tests, the way tests/support/mod.rs does:
a topology with `{PORT}` on a free loopback port, wait until it accepts, SIGTERM to stop.
The binary comes from $REAKTOR_BIN (the Rust test that runs these sets it to
CARGO_BIN_EXE_reaktor), else target/debug/reaktor under $CARGO_TARGET_DIR or the repo."""

from __future__ import annotations

import fcntl
import json
import os
import random
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


#: Lock files of the ports this process handed out, held (locked) until it exits.
_HELD_PORTS: list = []


def reserved_port_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range, or above it if it starts low (as
    tests/support/mod.rs `reserved_port_range`)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (10_000, low - 1) if low > 12_000 else (min(high + 1, 65_000), 65_535)


def free_port() -> int:
    """A loopback port for a server a test starts, chosen as tests/support/mod.rs `free_port`
    chooses (and under the same lock files, so Rust and Python tests running at once never
    share one): outside the ephemeral range, and locked for this process until it exits.
    `bind(0)` could give one port twice in a row (two members of one cluster listed with one
    peer address), and gives ports any outgoing connection may take meanwhile."""
    first, last = reserved_port_range()
    lock_dir = Path(tempfile.gettempdir()) / "reaktor-test-ports"
    lock_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(10_000):
        port = rng.randint(first, last)
        f = open(lock_dir / str(port), "a")
        try:
            # Held by another test process, or already by this one (a lock is per open file).
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            continue
        _HELD_PORTS.append(f)
        return port
    raise RuntimeError(f"no free port in {first}..={last}")


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


class Cluster:
    """Three (or `n`) reaktor members of one [cluster] on loopback, each with the client test
    topology; `kill9`, `stop`/`cont` (SIGSTOP/SIGCONT) and `start_member` (same state
    directory) act on one member; `master()` waits for the serving one."""

    def __init__(self, n: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="reaktor-client-cluster-")
        self.ports = [free_port() for _ in range(n)]
        peers = [free_port() for _ in range(n)]
        members = "".join(
            f'\n[[cluster.member]]\nid = {k + 1}\npeer = "127.0.0.1:{peers[k]}"\napi = "http://127.0.0.1:{self.ports[k]}"\n'
            for k in range(n))
        status = ('\n[[core]]\nnuklei = ["cluster"]\n\n[[http.route]]\npath = "/v1/cluster"\nto = "cluster"\n')
        self.paths = []
        for k in range(n):
            path = os.path.join(self.dir, f"member-{k + 1}.toml")
            with open(path, "w") as f:
                f.write(TOPOLOGY.read_text().replace("{PORT}", str(self.ports[k])) + status
                        + f'\n[cluster]\nid = {k + 1}\nstate_dir = "state-{k + 1}"\ntick_ms = 5\n'
                          f'heartbeat_ms = 20\nelection_timeout_ms = 150\n' + members)
            self.paths.append(path)
        self.procs: list[subprocess.Popen | None] = [None] * n
        for k in range(n):
            self.start_member(k + 1)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}" for p in self.ports]

    def start_member(self, member: int) -> None:
        k = member - 1
        streams = os.path.join(self.dir, f"streams-{member}")
        os.makedirs(streams, exist_ok=True)
        log = open(os.path.join(self.dir, f"member-{member}.log"), "ab")
        env = dict(os.environ, REAKTOR_LOG=os.environ.get("REAKTOR_LOG", "warn"))
        self.procs[k] = subprocess.Popen([binary(), "run", "--topology", self.paths[k], "--stream-dir", streams],
                                         stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.ports[k]), timeout=1).close()
                return
            except OSError:
                if self.procs[k].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"member {member} did not start: {self.log(member)}")
                time.sleep(0.02)

    def status(self, member: int) -> dict | None:
        """Member `member`'s GET /v1/cluster, if it answers within half a second."""
        try:
            with socket.create_connection(("127.0.0.1", self.ports[member - 1]), timeout=0.5) as s:
                s.settimeout(0.5)
                s.sendall(b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        return json.loads(body) if head.startswith(b"HTTP/1.1 200") else None

    def master(self, timeout: float = 10.0, other_than: int | None = None) -> tuple[int, int]:
        """(member, epoch) of the serving master once exactly one serves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            serving = []
            for m in range(1, len(self.ports) + 1):
                if self.procs[m - 1] is None:
                    continue
                st = self.status(m)
                if st is not None and st["serving"] and m != other_than:
                    serving.append((m, st["epoch"]))
            if len(serving) == 1:
                return serving[0]
            time.sleep(0.01)
        raise RuntimeError(f"no single master within {timeout} s")

    def kill9(self, member: int) -> None:
        p = self.procs[member - 1]
        assert p is not None
        p.kill()
        p.wait()
        self.procs[member - 1] = None

    def signal(self, member: int, sig: int) -> None:
        p = self.procs[member - 1]
        assert p is not None
        p.send_signal(sig)

    def log(self, member: int) -> str:
        try:
            with open(os.path.join(self.dir, f"member-{member}.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        for k, p in enumerate(self.procs):
            if p is None:
                continue
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
