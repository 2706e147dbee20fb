#!/usr/bin/env python3
"""Runs three chat processes against a running reaktor (examples/default.toml) with scripted
commands, prints what each one says, and checks the story came out right:

* chat-1 logs in alice; chat-2 logs in bob and then tries alice: the failed RegPort tells it
  alice is on chat-1 (discovery), and it watches for her release;
* chat-3 asks who is where, and carol (on chat-3) writes to bob: the message is routed to
  chat-2, which owns bob; alice (chat-1) writes to bob too;
* chat-1 logs alice out: chat-2 is notified and takes alice over; a message to alice now
  lands on chat-2;
* chat-3 watches every user from the start (presence: who logs in, out, or moves where);
* chat-2 hands alice over to chat-3 (she is never offline in between); chat-1 lists the users
  and its message to alice lands on chat-3.

Usage: demo.py [--server 127.0.0.1:8080] [--token demo-chat]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPTS = {
    "chat-1": "login alice; sleep 1.0; send alice bob hi bob, alice here; sleep 0.5; logout alice; sleep 2; "
              "users; send erin alice are you on chat-3?; sleep 1",
    "chat-2": "sleep 0.3; login bob; login alice; sleep 2.2; handover alice chat-3; sleep 2",
    "chat-3": "watch-users; sleep 0.6; who alice bob carol; login carol; send carol bob hello from carol; sleep 1.5; "
              "send carol alice where are you now?; sleep 2.5",
}

EXPECT = [
    ("chat-1", "logged in alice"),
    ("chat-2", "logged in bob"),
    ("chat-2", "alice is on chat-1 (at chat-1.local:9000); watching for release"),
    ("chat-3", "who alice: on chat-1 (at chat-1.local:9000)"),
    ("chat-3", "who carol: offline"),
    ("chat-2", "deliver to bob: <carol> hello from carol"),
    ("chat-2", "deliver to bob: <alice> hi bob, alice here"),
    ("chat-1", "logged out alice: released"),
    ("chat-2", "alice went offline elsewhere (unregistered)"),
    ("chat-2", "logged in alice"),
    ("chat-2", "deliver to alice: <carol> where are you now?"),
    # chat-3 watches every user: logins, logouts and moves anywhere.
    ("chat-3", "presence: bob online on chat-2"),
    ("chat-3", "presence: carol online on chat-3"),
    ("chat-3", "presence: alice offline (unregistered)"),
    ("chat-3", "presence: alice online on chat-2"),
    # chat-2 hands alice over to chat-3: she is never offline in between.
    ("chat-2", "handed alice over to chat-3"),
    ("chat-3", "took over alice from chat-2 (handover)"),
    ("chat-3", "presence: alice moved to chat-3 (from chat-2)"),
    ("chat-1", "users: alice on chat-3, bob on chat-2, carol on chat-3"),
    ("chat-3", "deliver to alice: <erin> are you on chat-3?"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:8080")
    ap.add_argument("--token", default="demo-chat")
    a = ap.parse_args()
    # The scripts' sleeps order the story; they start together, once every process had time
    # to start and connect (Python takes a while on a loaded machine).
    start_at = time.time() + 4.0
    procs = {
        node: subprocess.Popen(
            [sys.executable, os.path.join(HERE, "chat.py"), "--node", node, "--token", a.token,
             "--server", a.server, "--script", script, "--start-at", str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node, script in SCRIPTS.items()
    }
    lines = []
    for node, p in procs.items():
        out, _ = p.communicate(timeout=30)
        lines += out.splitlines()
    for line in lines:
        print(line)
    missing = [f"[{node}] {text}" for node, text in EXPECT if f"[{node}] {text}" not in lines]
    if missing:
        print("\ndemo: missing expected lines:\n  " + "\n  ".join(missing), file=sys.stderr)
        sys.exit(1)
    print("\ndemo: ok (ownership, discovery by failed RegPort, routing by SendMsg, takeover on release, "
          "presence by a watch, a handover, a listing)")


if __name__ == "__main__":
    main()
