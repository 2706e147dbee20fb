"""The Python client's watcher that is not a node (``reaktor_client.watch``) against the real
reaktor: it follows ports and nodes, is not a node, resumes without a gap after a dropped
connection, and is refused what its token does not grant."""

import asyncio

import reaktor_client as rc
from reaktor_client import errors
from test_client import Live, node


async def events(watcher, n, timeout=10.0):
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            got.append(await watcher.next_event())
    return got


class Watchers(Live):
    async def test_a_watcher_follows_ports_and_nodes_and_resumes_after_a_drop(self):
        w = await rc.watch(self.server.url, "dash", ports="room:", prefix=True)
        nodes = await w.watch(nodes="n", prefix=True)
        a = await node(self.server, "n1")
        [ev] = await events(w, 1)
        self.assertEqual((ev.watch, ev.event, ev.node), (nodes, "online", "n1"))
        await a.register(["room:1", "hall"])
        [ev] = await events(w, 1)
        self.assertEqual((ev.watch, ev.event, ev.port, ev.owner), (1, "acquired", "room:1", "n1"))
        # Not a node: n1 alone is online.
        listed = [n.node async for n in a.list_nodes("")]
        self.assertEqual(listed, ["n1"])
        # The watcher's connection drops; meanwhile room:1 goes and room:2 comes.
        w.abort()
        await a.unregister(["room:1"])
        await a.register(["room:2"])
        got = await events(w, 2)
        self.assertEqual(sorted((e.event, e.port) for e in got), [("acquired", "room:2"), ("released", "room:1")])
        self.assertEqual(w.connections, 2)
        await a.close()
        got = await events(w, 2)
        self.assertEqual(sorted((e.event, e.port or e.node, e.reason) for e in got),
                         [("offline", "n1", "closed"), ("released", "room:2", "node_offline")])
        await w.close()
        with self.assertRaises(errors.ClientClosed):
            await w.next_event()

    async def test_a_watch_the_token_does_not_grant_is_forbidden(self):
        with self.assertRaises(errors.Forbidden):
            await rc.watch(self.server.url, "dash", ports="secret/", prefix=True)
        with self.assertRaises(errors.Forbidden):
            await rc.watch(self.server.url, "tok-n1", nodes="n", prefix=True)
        w = await rc.watch(self.server.url, "dash", nodes="", prefix=True)
        with self.assertRaises(errors.Forbidden):
            await w.watch(ports="hall")
        await w.close()
