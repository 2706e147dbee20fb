#!/usr/bin/env python3
"""A chat server process that uses the reaktor port switch for presence and routing, through
the project's Python client (clients/python, `reaktor_client`).

Each process is a *node*. A user connected to a process is a *port* `user:<name>` owned by
that node: logging a user in is a RegPort. If another process already owns the user, the
failed RegPort names it (discovery) and this process subscribes to the user's release; when
the owner lets go (logout, crash, lease expiry), the notification arrives and this process
takes the user over if it still wants it. Messages to a user are SendMsg to its port: the
switch pushes them to whichever process owns the user right now. The client keeps the lease,
reconnects if the switch goes away, logs the users back in and says which ones another
process took meanwhile.

Usage:
  chat.py --node chat-1 --token demo-chat                  # commands from stdin
  chat.py --node chat-1 --token demo-chat --script "login alice; send alice bob hi; sleep 1"

Commands: login USER | logout USER | send FROM TO TEXT... | who USER... | sleep SECONDS |
          await-reconnect [SECONDS] | quit
          watch-users: print every login, logout and move of any user, on any process (a
            watch of the ports `user:*`; it survives reconnects without losing an event)
          users: list every user online and where (a paginated listing of `user:*`)
          handover USER PROCESS: move a user of this process to another one at once (it is
            never offline in between; the other process is told)

With a cluster, give every member (`--server 127.0.0.1:8081,127.0.0.1:8082,...`): the client
follows the master, and when the master changes (a failover) it reconnects, logs the users
back in and says so with the old and the new epoch.

Needs Python 3.11+ and the client: pip install -e clients/python (scripts/setup-test-deps.sh
does it for .venv).
"""

import argparse
import asyncio
import json
import sys
import time

import reaktor_client as rc


class Chat:
    def __init__(self, node, client):
        self.node, self.client = node, client
        self.wanted = set()  # users this process wants but another process owns
        self.reconnects = asyncio.Queue()  # for `await-reconnect`

    def say(self, text):
        print(f"[{self.node}] {text}", flush=True)

    async def receive(self):
        """Pushes are messages and presence changes; connection events are reported."""
        async for event in self.client.events():
            if isinstance(event, rc.Push):
                m = json.loads(event.body)
                self.say(f"deliver to {event.port.removeprefix('user:')}: <{m['from']}> {m['text']}")
            elif isinstance(event, rc.Released):
                user = event.port.removeprefix("user:")
                self.say(f"{user} went offline elsewhere ({event.reason})")
                if user in self.wanted:
                    asyncio.create_task(self.run(f"login {user}"))
            elif isinstance(event, rc.Disconnected):
                self.say(f"switch connection lost ({event.error.message}); "
                         + ("giving up" if event.final else "reconnecting"))
            elif isinstance(event, rc.WatchEvent):
                self.presence(event)
            elif isinstance(event, rc.Missed):
                self.say("presence: changes were missed while away; listing the users again")
                asyncio.create_task(self.run("users"))
            elif isinstance(event, rc.HandedOver):
                self.say(f"took over {event.port.removeprefix('user:')} from {event.previous} (handover)")
            elif isinstance(event, rc.PortMoved):
                self.say(f"{event.port.removeprefix('user:')} moved to {event.to}")
            elif isinstance(event, rc.Reconnected):
                lost = ", ".join(f"{f.port.removeprefix('user:')} (now on {f.owner})" for f in event.lost)
                failover = (f" (master changed: epoch {event.previous_epoch} -> {event.epoch})"
                            if event.failover else "")
                self.say(f"reconnected: {event.restored} users kept{failover}" + (f"; lost {lost}" if lost else ""))
                self.reconnects.put_nowait(event)

    def presence(self, e):
        user = (e.port or "").removeprefix("user:")
        if e.event == "acquired":
            self.say(f"presence: {user} online on {e.owner}")
        elif e.event == "released":
            self.say(f"presence: {user} offline ({e.reason})")
        elif e.event == "moved":
            self.say(f"presence: {user} moved to {e.owner} (from {e.previous})")

    async def users(self):
        found = [f"{p.port.removeprefix('user:')} on {p.owner}" async for p in self.client.list_ports("user:")]
        self.say("users: " + (", ".join(found) if found else "none"))

    async def handover(self, user, to):
        reply = await self.client.handover(to, f"user:{user}")
        self.say(f"handed {user} over to {to}" if reply.moved else f"{user} is not on this process")

    async def login(self, user):
        reply = await self.client.register(f"user:{user}", subscribe=True)
        if reply.failed:
            f = reply.failed[0]
            self.wanted.add(user)
            self.say(f"{user} is on {f.owner} (at {f.address}); watching for release")
        else:
            self.wanted.discard(user)
            self.say(f"logged in {user}")

    async def logout(self, user):
        self.wanted.discard(user)
        reply = await self.client.unregister(f"user:{user}")
        self.say(f"logged out {user}: {'released' if reply.released else 'was not here'}")

    async def send(self, sender, to, text):
        body = json.dumps({"from": sender, "text": text})
        report = await self.client.send_report([rc.Message(body, port=f"user:{to}")])
        if report.dropped:
            self.say(f"{to} is offline: message dropped")

    async def who(self, users):
        for p in await self.client.query_ports([f"user:{u}" for u in users]):
            where = f"on {p.owner} (at {p.address})" if p.owner else "offline"
            self.say(f"who {p.port.removeprefix('user:')}: {where}")

    async def run(self, command):
        words = command.split()
        if not words:
            return True
        cmd, args = words[0], words[1:]
        try:
            if cmd == "login":
                await self.login(args[0])
            elif cmd == "logout":
                await self.logout(args[0])
            elif cmd == "send":
                await self.send(args[0], args[1], " ".join(args[2:]))
            elif cmd == "who":
                await self.who(args)
            elif cmd == "watch-users":
                await self.client.watch(ports="user:", prefix=True)
            elif cmd == "users":
                await self.users()
            elif cmd == "handover":
                await self.handover(args[0], args[1])
            elif cmd == "sleep":
                await asyncio.sleep(float(args[0]))
            elif cmd == "await-reconnect":
                try:
                    async with asyncio.timeout(float(args[0]) if args else 10.0):
                        await self.reconnects.get()
                except TimeoutError:
                    self.say("no reconnect in time")
            elif cmd == "quit":
                return False
            else:
                self.say(f"unknown command {cmd!r}")
        except (IndexError, ValueError):
            self.say(f"usage error: {command!r}")
        except rc.SwitchError as e:
            self.say(f"error: {e}")
        return True


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--server", default="127.0.0.1:8080", help="switch member(s), comma-separated")
    ap.add_argument("--address", help="address announced to other nodes (default: <node>.local:9000)")
    ap.add_argument("--script", help="commands separated by ';' instead of stdin")
    ap.add_argument("--start-at", type=float,
                    help="run the script from this Unix time on (so several processes' scripts line up)")
    a = ap.parse_args()
    members = [f"ws://{m}" if "://" not in m else m for m in a.server.split(",")]
    client = await rc.connect(members, a.node, a.token, address=a.address or f"{a.node}.local:9000")
    async with client:
        chat = Chat(a.node, client)
        reader = asyncio.create_task(chat.receive())
        chat.say(f"connected to {client.url} (epoch {client.epoch})")
        if a.script:
            if a.start_at is not None:
                await asyncio.sleep(max(0.0, a.start_at - time.time()))
            for c in a.script.split(";"):
                if not await chat.run(c.strip()):
                    break
        else:
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or not await chat.run(line.strip()):
                    break
        reader.cancel()


if __name__ == "__main__":
    asyncio.run(main())
