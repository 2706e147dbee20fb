#!/usr/bin/env python3
"""A chat server process that uses the reaktor port switch for presence and routing.

Each process is a *node*. A user connected to a process is a *port* `user:<name>` owned by
that node: logging a user in is a RegPort. If another process already owns the user, the
failed RegPort names it (discovery) and this process subscribes to the user's release; when
the owner lets go (logout, crash, lease expiry), the notification arrives and this process
takes the user over if it still wants it. Messages to a user are SendMsg to its port: the
switch pushes them to whichever process owns the user right now.

Usage:
  chat.py --node chat-1 --token demo-chat                  # commands from stdin
  chat.py --node chat-1 --token demo-chat --script "login alice; send alice bob hi; sleep 1"

Commands: login USER | logout USER | send FROM TO TEXT... | who USER... | sleep SECONDS | quit

Needs Python 3.10+ and the `websockets` package (pip install websockets).
"""

import argparse
import asyncio
import json
import sys
import urllib.parse

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


class Chat:
    def __init__(self, node, ws):
        self.node, self.ws = node, ws
        self.next_id = 1
        self.waiting = {}
        self.local = set()  # users this process owns
        self.wanted = set()  # users this process wants but another process owns

    def say(self, text):
        print(f"[{self.node}] {text}", flush=True)

    async def call(self, op, **body):
        i = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[i] = fut
        await self.ws.send(json.dumps({"op": op, "id": i, **body}))
        reply = await asyncio.wait_for(fut, 10)
        if "error" in reply:
            raise RuntimeError(f"{op}: {reply['error']['message']}")
        return reply

    async def receive(self):
        """Replies resolve calls; pushes (JSON arrays) are messages and presence changes."""
        try:
            async for message in self.ws:
                data = json.loads(message)
                if isinstance(data, dict):
                    fut = self.waiting.pop(data.get("id"), None)
                    if fut and not fut.done():
                        fut.set_result(data)
                    continue
                for push in data:
                    await self.on_push(push)
        except ConnectionClosed as e:
            self.say(f"switch closed the connection: {e.rcvd.code if e.rcvd else ''} {e.rcvd.reason if e.rcvd else ''}")

    async def on_push(self, push):
        user = push["port"].removeprefix("user:")
        if push["type"] == "msg":
            m = json.loads(push["body"])
            self.say(f"deliver to {user}: <{m['from']}> {m['text']}")
        elif push["type"] == "released":
            self.say(f"{user} went offline elsewhere ({push['reason']})")
            if user in self.wanted:
                asyncio.create_task(self.login(user))

    async def login(self, user):
        reply = await self.call("regport", ports=[f"user:{user}"], subscribe=True)
        if reply["failed"]:
            f = reply["failed"][0]
            self.wanted.add(user)
            self.say(f"{user} is on {f['owner']} (at {f['address']}); watching for release")
        else:
            self.wanted.discard(user)
            self.local.add(user)
            self.say(f"logged in {user}")

    async def logout(self, user):
        self.wanted.discard(user)
        reply = await self.call("unregport", ports=[f"user:{user}"])
        self.local.discard(user)
        self.say(f"logged out {user}: {'released' if reply['released'] else 'was not here'}")

    async def send(self, sender, to, text):
        body = json.dumps({"from": sender, "text": text})
        reply = await self.call("sendmsg", messages=[{"port": f"user:{to}", "body": body}])
        if reply["dropped"]:
            self.say(f"{to} is offline: message dropped")

    async def who(self, users):
        reply = await self.call("queryport", ports=[f"user:{u}" for u in users])
        for p in reply["ports"]:
            where = f"on {p['owner']} (at {p['address']})" if p["owner"] else "offline"
            self.say(f"who {p['port'].removeprefix('user:')}: {where}")

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
            elif cmd == "sleep":
                await asyncio.sleep(float(args[0]))
            elif cmd == "quit":
                return False
            else:
                self.say(f"unknown command {cmd!r}")
        except (IndexError, ValueError):
            self.say(f"usage error: {command!r}")
        except RuntimeError as e:
            self.say(f"error: {e}")
        return True


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--server", default="127.0.0.1:8080")
    ap.add_argument("--address", help="address announced to other nodes (default: <node>.local:9000)")
    ap.add_argument("--script", help="commands separated by ';' instead of stdin")
    a = ap.parse_args()
    query = urllib.parse.urlencode({"address": a.address or f"{a.node}.local:9000"})
    url = f"ws://{a.server}/v1/ws/{urllib.parse.quote(a.node, safe='')}?{query}"
    # Pings every 2 s keep the lease (10 s in examples/default.toml) alive while idle.
    async with connect(url, additional_headers={"Authorization": f"Bearer {a.token}"}, ping_interval=2) as ws:
        chat = Chat(a.node, ws)
        reader = asyncio.create_task(chat.receive())
        chat.say("connected")
        if a.script:
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
