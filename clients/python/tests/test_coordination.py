"""The Python client's coordination calls against the real reaktor: watches that resume
without a gap after a dropped connection, listings, handover, compare-and-register, the
session, acknowledged delivery."""

import asyncio
import unittest

import reaktor_client as rc
from reaktor_client import errors
from switch_server import Cluster, Server
from test_client import FAST, Live, next_event, node


async def events_until(client, want, kind=rc.WatchEvent, timeout=10.0, until=None):
    """Events of `kind` until `want` of them came (and one of type `until`, if given)."""
    got = []
    seen_until = until is None
    async with asyncio.timeout(timeout):
        while len(got) < want or not seen_until:
            ev = await client.next_event()
            if isinstance(ev, kind):
                got.append(ev)
            elif until is not None and isinstance(ev, until):
                seen_until = True
    return got


class Watches(Live):
    async def test_a_watch_sees_each_event_once_across_a_dropped_connection(self):
        w = await node(self.server, "n1")
        b = await node(self.server, "n2")
        wid = await w.watch(ports="room:", prefix=True)
        await b.register(["room:1", "other"])
        [ev] = await events_until(w, 1)
        self.assertEqual((ev.watch, ev.event, ev.port, ev.owner), (wid, "acquired", "room:1", "n2"))
        # The watcher's connection drops; meanwhile room:1 goes and room:2 comes.
        w._conn.abort(errors.ConnectionLost("test"))
        await next_event(w, rc.Disconnected)
        await b.register(["room:2"])
        await b.unregister(["room:1"])
        # What happened meanwhile comes as the watch resumes, before Reconnected.
        got = await events_until(w, 2, until=rc.Reconnected)
        self.assertEqual(sorted((e.event, e.port) for e in got),
                         [("acquired", "room:2"), ("released", "room:1")])
        self.assertEqual(got[[e.port for e in got].index("room:1")].reason, "unregistered")
        # Nothing more: no event twice.
        await b.register(["room:3"])
        [ev] = await events_until(w, 1)
        self.assertEqual(ev.port, "room:3")
        await w.unwatch(wid)
        await b.register(["room:4"])
        await w.register(["sync"])  # a round trip: room:4's event would have come before
        self.assertEqual([e for e in list(w._events.q) if isinstance(e, rc.WatchEvent)], [])
        await asyncio.gather(w.close(), b.close())

    async def test_node_watches_see_online_and_offline(self):
        w = await node(self.server, "n3")
        await w.watch(nodes="n4")
        b = await node(self.server, "n4")
        [ev] = await events_until(w, 1)
        self.assertEqual((ev.event, ev.node, ev.address), ("online", "n4", "n4.addr:7000"))
        await b.close()
        [ev] = await events_until(w, 1)
        self.assertEqual((ev.event, ev.reason), ("offline", "closed"))
        await w.close()


class Listings(Live):
    async def test_ports_nodes_and_a_nodes_ports_are_listed_page_by_page(self):
        a = await node(self.server, "n5")
        b = await node(self.server, "n6")
        names = [f"lp:{i:02}" for i in range(25)]
        await a.register(names)
        await b.register(["lp:zz", "elsewhere"])
        listed = [p async for p in b.list_ports("lp:", page_size=7)]
        self.assertEqual([p.port for p in listed], names + ["lp:zz"])
        self.assertEqual({p.owner for p in listed[:25]}, {"n5"})
        nodes = [n.node async for n in a.list_nodes("n", page_size=1)]
        self.assertEqual(nodes, ["n5", "n6"])
        mine = [p async for p in b.node_ports("n5", page_size=4)]
        self.assertEqual(sorted(mine), names)
        await asyncio.gather(a.close(), b.close())


class Handovers(Live):
    async def test_a_handover_moves_ports_and_the_receiver_holds_them_across_a_reconnect(self):
        a = await node(self.server, "n7")
        b = await node(self.server, "n8")
        await a.register(["h:1", "h:2", "h:3"])
        r = await a.handover("n8", ["h:1", "h:2", "nobody"])
        self.assertEqual((r.moved, r.unknown), (("h:1", "h:2"), ("nobody",)))
        self.assertEqual(a.held, frozenset({"h:3"}))
        got = await events_until(b, 2, rc.HandedOver)
        self.assertEqual(sorted(e.port for e in got), ["h:1", "h:2"])
        self.assertTrue(all(e.previous == "n7" and e.seq > 0 for e in got))
        self.assertEqual(b.held, frozenset({"h:1", "h:2"}))
        # b's connection drops: the handed-over ports are restored with the rest.
        b._conn.abort(errors.ConnectionLost("test"))
        ev = await next_event(b, rc.Reconnected)
        self.assertEqual(ev.restored, 2)
        owners = {p.port: p.owner for p in await a.query_ports(["h:1", "h:2", "h:3"])}
        self.assertEqual(owners, {"h:1": "n8", "h:2": "n8", "h:3": "n7"})
        await asyncio.gather(a.close(), b.close())

    async def test_compare_and_register_takes_a_port_only_from_the_expected_owner(self):
        giver = await node(self.server, "n14")
        taker = await rc.connect(self.server.url, "n13", "tok-pair", options=FAST)
        await giver.register(["cas:1", "cas:2"])
        r = await taker.register_if(["cas:1", "cas:free"], None)
        self.assertEqual(r.owned, ("cas:free",))
        self.assertEqual((r.failed[0].port, r.failed[0].owner), ("cas:1", "n14"))
        r = await taker.register_if(["cas:1"], "n14")
        self.assertEqual(r.owned, ("cas:1",))
        ev = await next_event(giver, rc.PortMoved)
        self.assertEqual((ev.port, ev.to), ("cas:1", "n13"))
        self.assertEqual(giver.held, frozenset({"cas:2"}))
        # Without the giver's authority: refused.
        with self.assertRaises(errors.Forbidden):
            await giver.register_if(["cas:1"], "n13")
        await asyncio.gather(giver.close(), taker.close())


class ClusterFencing(unittest.IsolatedAsyncioTestCase):
    """With a cluster's master, ports that change owner get newer fencing tokens."""

    def setUp(self):
        self.cluster = Cluster()

    def tearDown(self):
        self.cluster.close()

    async def test_a_moved_port_gets_a_newer_fencing_token_at_its_new_owner(self):
        master, epoch = self.cluster.master()
        url = self.cluster.urls[master - 1]
        a = await rc.connect(url, "n14", "tok-n14", options=FAST)
        b = await rc.connect(url, "n8", "tok-n8", options=FAST)
        taker = await rc.connect(url, "n13", "tok-pair", options=FAST)
        await a.register(["f:1", "f:2"])
        before = a.fencing_token("f:1")
        self.assertEqual(before.epoch, epoch)
        await a.handover("n8", ["f:1"])
        self.assertIsNone(a.fencing_token("f:1"))
        await events_until(b, 1, rc.HandedOver)
        async with asyncio.timeout(5):
            # The client registers a handed-over port again for its token.
            while b.fencing_token("f:1") is None:
                await asyncio.sleep(0.01)
        self.assertGreater(b.fencing_token("f:1"), before)
        # Compare-and-register: the reply's stamp is the token, newer than the giver's.
        held = a.fencing_token("f:2")
        r = await taker.register_if(["f:2"], "n14")
        self.assertEqual(r.owned, ("f:2",))
        self.assertGreater(r.token("f:2"), held)
        self.assertEqual(taker.fencing_token("f:2"), r.token("f:2"))
        await asyncio.gather(a.close(), b.close(), taker.close())


class Sessions(Live):
    async def test_the_session_is_known_and_changes_with_the_connection(self):
        a = await node(self.server, "n9")
        first = a.session
        self.assertIsNotNone(first)
        a._conn.abort(errors.ConnectionLost("test"))
        await next_event(a, rc.Reconnected)
        self.assertNotEqual(a.session, first)
        await a.close()


class Acknowledged(Live):
    async def test_an_acknowledged_send_returns_once_the_receiver_has_it(self):
        sender = await node(self.server, "n10")
        receiver = await node(self.server, "n11")
        await receiver.register(["inbox"])
        report = await sender.send_acked("inbox", "hello")
        self.assertEqual(report, rc.Acknowledged(1, 0, 1, 0))
        ev = await next_event(receiver, rc.Push)
        self.assertEqual(ev.body, "hello")
        report = await sender.send_acked("nobody", "x")
        self.assertEqual(report, rc.Acknowledged(0, 1, 0, 0))
        await asyncio.gather(sender.close(), receiver.close())


if __name__ == "__main__":
    unittest.main()
