#!/usr/bin/env python3
"""The chat demo across a master failover: starts a three-member cluster (the topologies of
examples/cluster on free loopback ports, in a temporary directory), runs two chat processes
against all three members, kills the master with SIGKILL while they run, and checks the story
went on: both processes reconnect to the new master with their users (the failover is
reported with both epochs), and a message sent after it reaches its user.

Usage: failover_demo.py [--reaktor target/release/reaktor]
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SCRIPTS = {
    "chat-1": "login alice; await-reconnect 10; sleep 1.0; send alice bob hello after the failover; sleep 1.5",
    "chat-2": "sleep 0.3; login bob; await-reconnect 10; sleep 3.0",
}

EXPECT = [
    ("chat-1", "logged in alice"),
    ("chat-2", "logged in bob"),
    ("chat-1", "reconnected: 1 users kept (master changed: epoch"),
    ("chat-2", "reconnected: 1 users kept (master changed: epoch"),
    ("chat-2", "deliver to bob: <alice> hello after the failover"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_view(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cluster", timeout=0.5) as r:
            return json.load(r)
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    default = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "reaktor")
    ap.add_argument("--reaktor", default=os.environ.get("REAKTOR_BIN", default))
    ap.add_argument("--token", default="demo-chat")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="chat-failover-")
    apis = {m: free_port() for m in (1, 2, 3)}
    peers = {m: free_port() for m in (1, 2, 3)}
    procs = {}
    try:
        for m in (1, 2, 3):
            text = open(os.path.join(ROOT, "examples", "cluster", f"member-{m}.toml")).read()
            for k in (1, 2, 3):
                text = text.replace(f"127.0.0.1:808{k}", f"127.0.0.1:{apis[k]}")
                text = text.replace(f"127.0.0.1:710{k}", f"127.0.0.1:{peers[k]}")
            path = os.path.join(work, f"member-{m}.toml")
            open(path, "w").write(text)
            log = open(os.path.join(work, f"member-{m}.log"), "wb")
            procs[m] = subprocess.Popen([a.reaktor, "run", "--topology", path, "--stream-dir", work],
                                        stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        master = None
        while master is None:
            if time.monotonic() > deadline:
                sys.exit("failover_demo: no master within 20 s")
            for m in (1, 2, 3):
                view = cluster_view(apis[m])
                if view and view["serving"]:
                    master = m
            time.sleep(0.05)
        servers = ",".join(f"127.0.0.1:{apis[m]}" for m in (1, 2, 3))
        chats = {
            node: subprocess.Popen(
                [sys.executable, os.path.join(HERE, "chat.py"), "--node", node, "--token", a.token,
                 "--server", servers, "--script", script],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for node, script in SCRIPTS.items()
        }
        outputs = {node: [] for node in chats}

        def read(node, pipe):
            for line in pipe:
                outputs[node].append(line.rstrip("\n"))

        readers = [threading.Thread(target=read, args=(n, p.stdout), daemon=True) for n, p in chats.items()]
        for t in readers:
            t.start()
        # The kill comes once both processes have their users (Python may start slowly).
        deadline = time.monotonic() + 30
        while not all(any("logged in" in line for line in outputs[n]) for n in chats):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        # The master may have changed since: kill the one serving now.
        for m in (1, 2, 3):
            view = cluster_view(apis[m])
            if view and view["serving"]:
                master = m
        print(f"failover_demo: killing the master, member {master} (pid {procs[master].pid})", flush=True)
        procs[master].kill()
        procs[master].wait()
        for p in chats.values():
            p.wait(timeout=60)
        for t in readers:
            t.join(timeout=5)
        lines = [line for node in chats for line in outputs[node]]
        for line in lines:
            print(line)
        missing = [f"[{node}] {text}" for node, text in EXPECT
                   if not any(line.startswith(f"[{node}] {text}") for line in lines)]
        if missing:
            print("\nfailover_demo: missing expected lines:\n  " + "\n  ".join(missing), file=sys.stderr)
            if os.environ.get("KEEP"):
                print(f"failover_demo: logs kept in {work}", file=sys.stderr)
                work = None
            sys.exit(1)
        epochs = re.findall(r"epoch (\d+) -> (\d+)", "\n".join(lines))
        print(f"\nfailover_demo: ok (both chat processes followed the master: epochs {sorted(set(epochs))}; "
              "users kept, messages delivered after the failover)")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
