"""The Python client against the real reaktor (tests/switch_server.py starts it)."""

import asyncio
import unittest

import reaktor_client as rc
from reaktor_client import errors
from switch_server import Server

FAST = rc.ClientOptions(max_batch_items=100, backoff_initial=0.05, backoff_max=0.5, call_timeout=15,
                        connect_timeout=15)


def tok(node):
    return f"tok-{node}"


async def node(server, name, options=FAST, **kw):
    return await rc.connect(server.url, name, tok(name), address=f"{name}.addr:7000", options=options, **kw)


async def next_event(client, kind=None, timeout=10.0):
    """The next event (of `kind`, skipping others)."""
    async with asyncio.timeout(timeout):
        while True:
            ev = await client.next_event()
            if kind is None or isinstance(ev, kind):
                return ev


async def owners(client, ports):
    return {p.port: p.owner for p in await client.query_ports(ports)}


class Live(unittest.IsolatedAsyncioTestCase):
    lease_ms = 1500  # tests/clients_topology.toml

    def setUp(self):
        self.server = Server()

    async def asyncSetUp(self):
        asyncio.get_running_loop().set_debug(False)  # unittest turns it on; it slows the loop 3x

    def tearDown(self):
        self.server.close()


class Calls(Live):
    async def test_calls_of_one_turn_go_out_as_one_request(self):
        a = await node(self.server, "n1")
        sent = a._conn.sent
        regs = await asyncio.gather(*(a.register([f"p{i}", f"q{i}"]) for i in range(40)))
        self.assertEqual(a._conn.sent - sent, 1, "80 ports from 40 calls in one request")
        self.assertTrue(all(r.owned == (f"p{i}", f"q{i}") and not r.failed for i, r in enumerate(regs)))
        # Over the batch limit (100 ports): split, results recombined.
        sent = a._conn.sent
        big = await a.register([f"big{i}" for i in range(250)])
        self.assertEqual(len(big.owned), 250)
        self.assertEqual(a._conn.sent - sent, 3)
        self.assertEqual(len(a.held), 330)
        info = await a.query_node("n1")
        self.assertEqual((info.online, info.ports, info.address), (True, 330, "n1.addr:7000"))
        u = await a.unregister(["p0", "nope"])
        self.assertEqual((u.released, u.unknown), (("p0",), ("nope",)))
        self.assertNotIn("p0", a.held)
        await a.close()

    async def test_failed_registration_names_the_owner_and_release_is_notified(self):
        a = await node(self.server, "n1")
        b = await node(self.server, "n2")
        await a.register(["room:1", "room:2"])
        r = await b.register(["room:1", "room:3"], subscribe=True)
        self.assertEqual(r.owned, ("room:3",))
        self.assertEqual(r.failed, (rc.FailedPort("room:1", "n1", "n1.addr:7000"),))
        self.assertEqual(b.watched, {"room:1"})
        await a.unregister("room:1")
        ev = await next_event(b)
        self.assertEqual(ev, rc.Released("room:1", "unregistered"))
        self.assertEqual(b.watched, frozenset())
        self.assertEqual((await b.register("room:1")).owned, ("room:1",))
        # A node that goes away releases its ports: node_offline.
        await b.register("room:2", subscribe=True)
        await a.close()
        self.assertEqual(await next_event(b), rc.Released("room:2", "node_offline"))
        await b.close()

    async def test_messages_arrive_once_in_order_and_counts_come_with_send_report(self):
        rx = await node(self.server, "n1")
        tx = await node(self.server, "n2")
        await rx.register("inbox")
        n = 20000

        got = [0]

        async def sender():
            for k in range(0, n, 500):
                while k - got[0] > 2000:  # a window, as a real sender has: this is no flood test
                    await asyncio.sleep(0.005)
                await asyncio.gather(*(tx.send("inbox", str(i)) for i in range(k, k + 500)))

        task = asyncio.create_task(sender())
        for i in range(n):
            ev = await next_event(rx, timeout=20)
            self.assertEqual(ev, rc.Push("inbox", str(i)))
            got[0] = i + 1
        await task
        rep = await tx.send_report([rc.Message("x", port="inbox"), rc.Message("y", ports=("inbox", "nobody"))])
        self.assertEqual(rep, rc.SendReport(delivered=2, dropped=1))
        self.assertEqual(await next_event(rx), rc.Push("inbox", "x"))
        self.assertEqual(await next_event(rx), rc.Push("inbox", "y"))
        with self.assertRaises(asyncio.TimeoutError):
            await next_event(rx, timeout=0.3)
        await rx.close()
        await tx.close()

    async def test_one_bad_call_in_a_batch_fails_alone(self):
        a = await node(self.server, "n1")
        good, bad = await asyncio.gather(a.register("fine"), a.register("x" * 65), return_exceptions=True)
        self.assertEqual(good.owned, ("fine",))
        self.assertIsInstance(bad, errors.LimitExceeded)
        self.assertIn("64 bytes", str(bad))
        await a.close()

    async def test_auth_errors_are_typed_and_not_retried(self):
        with self.assertRaises(errors.Unauthorized) as e:
            await rc.connect(self.server.url, "n1", "nope", options=FAST)
        self.assertIn("[[switch.token]]", str(e.exception))
        with self.assertRaises(errors.Forbidden) as e:
            await rc.connect(self.server.url, "n1", tok("n2"), options=FAST)
        self.assertIn("n1", str(e.exception))

    async def test_the_lease_is_renewed_without_the_application(self):
        a = await node(self.server, "n1")
        await a.register("keep")
        await asyncio.sleep(self.lease_ms / 1000 * 3)
        self.assertTrue(a.connected)
        self.assertEqual((await a.query_port("keep")).owner, "n1")
        with self.assertRaises(asyncio.TimeoutError):
            await next_event(a, timeout=0.1)  # no Disconnected
        await a.close()

    async def test_a_second_connection_for_the_node_replaces_this_one_for_good(self):
        a = await node(self.server, "n1")
        await a.register("mine")
        b = await node(self.server, "n1")
        ev = await next_event(a, rc.Disconnected)
        self.assertIsInstance(ev.error, errors.Replaced)
        self.assertTrue(ev.final)
        with self.assertRaises(errors.Replaced):
            await a.register("again")
        self.assertIsNone(await a.next_event())  # the stream ends
        self.assertEqual((await b.register("mine")).owned, ("mine",))
        await b.close()


class Reconnect(Live):
    async def assert_held_is_true(self, client, observer, ports):
        """Every port the client says it holds is its own at the switch, and every port the
        switch gives it, it knows of: no ownership lost without being told."""
        o = await owners(observer, ports)
        self.assertEqual({p for p, n in o.items() if n == client.node}, set(client.held))

    async def test_a_dropped_connection_is_restored_and_lost_ports_are_reported(self):
        slow = rc.ClientOptions(max_batch_items=100, backoff_initial=1.0, backoff_max=1.0, connect_timeout=15)
        a = await node(self.server, "n1", options=slow)
        b = await node(self.server, "n2")
        ports = [f"p{i}" for i in range(350)]
        await a.register(ports)
        await b.register(["p0", "p1"], subscribe=True)
        a._conn.abort()  # the network drops it
        self.assertIsInstance((await next_event(a, rc.Disconnected)).error, errors.ConnectionLost)
        # While a waits to reconnect, b takes two of its ports.
        for _ in range(50):
            if (await b.query_node("n1")).online is False:
                break
            await asyncio.sleep(0.02)
        released = {await next_event(b, rc.Released), await next_event(b, rc.Released)}
        self.assertEqual(released, {rc.Released("p0", "node_offline"), rc.Released("p1", "node_offline")})
        self.assertEqual((await b.register(["p0", "p1", "p2"])).owned, ("p0", "p1", "p2"))
        ev = await next_event(a, rc.Reconnected)
        self.assertEqual(ev.restored, 347)
        self.assertEqual({f.port: f.owner for f in ev.lost}, {"p0": "n2", "p1": "n2", "p2": "n2"})
        self.assertEqual(len(a.held), 347)
        await self.assert_held_is_true(a, b, ports)
        await a.close()
        await b.close()

    async def test_registration_is_restored_after_a_server_restart(self):
        a = await node(self.server, "n1")
        b = await node(self.server, "n2")
        await a.register([f"r{i}" for i in range(1000)])
        await b.register(["r0", "w0"], subscribe=True)
        self.assertEqual(b.watched, {"r0"})
        self.server.restart()
        ea = await next_event(a, rc.Reconnected, timeout=20)
        eb = await next_event(b, rc.Reconnected, timeout=20)
        # Both raced for r0 after the restart: exactly one of them has it, and knows it.
        self.assertEqual(ea.restored + len(eb.acquired), 1000)
        self.assertEqual(ea.restored + len(ea.lost), 1000)
        self.assertEqual(eb.restored, 1)  # w0
        await self.assert_held_is_true(a, b, [f"r{i}" for i in range(1000)] + ["w0"])
        await self.assert_held_is_true(b, a, [f"r{i}" for i in range(1000)] + ["w0"])
        # And the connection works: messages flow again.
        await b.send("r5", "after restart")
        self.assertEqual(await next_event(a, rc.Push), rc.Push("r5", "after restart"))
        await a.close()
        await b.close()

    async def test_a_reader_that_does_not_keep_up_is_cut_off_and_restored(self):
        opts = rc.ClientOptions(max_batch_items=100, max_buffered_events=100, max_stall=0.5,
                                backoff_initial=0.05, backoff_max=0.2)
        slow = await node(self.server, "n1", options=opts)
        tx = await node(self.server, "n2")
        await slow.register("flood")
        # 400 small pushes: four times the buffer, far below the switch's queue limit, so the
        # client's own stall limit is what cuts the connection.
        for _ in range(4):
            await tx.send_many([rc.Message("m" * 100, port="flood")] * 100)
        await asyncio.sleep(0.8)
        self.assertFalse((await tx.query_node("n1")).online, "cut off")
        # Read what was buffered: then the connection events.
        pushes = 0
        while True:
            ev = await next_event(slow, timeout=10)
            if isinstance(ev, rc.Push):
                pushes += 1
                continue
            self.assertIsInstance(ev, rc.Disconnected)
            self.assertIsInstance(ev.error, errors.SlowConsumer)
            break
        self.assertEqual(pushes, 100)  # exactly what the buffer holds
        # It reconnected only once the application read: no flapping meanwhile.
        ev = await next_event(slow)
        self.assertIsInstance(ev, rc.Reconnected)
        self.assertEqual(ev.restored, 1)
        self.assertEqual((await tx.query_port("flood")).owner, "n1")
        with self.assertRaises(asyncio.TimeoutError):  # the pushes queued at the switch were dropped
            await next_event(slow, timeout=0.3)
        await slow.close()
        await tx.close()


class Example(Live):
    def test_the_presence_example_runs(self):
        import subprocess
        import sys
        from pathlib import Path
        script = Path(__file__).resolve().parents[1] / "examples" / "presence.py"
        procs = [subprocess.Popen([sys.executable, str(script), self.server.url, n, tok(n), me, peer, "2.5"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for n, me, peer in (("n1", "alice", "bob"), ("n2", "bob", "alice"))]
        out = [p.communicate(timeout=30)[0] for p in procs]
        self.assertTrue(all(p.returncode == 0 for p in procs), out)
        self.assertIn("[n1] logged in alice", out[0])
        self.assertIn("[n2] to user:bob: hello from alice", out[1])
        self.assertIn("[n1] to user:alice: hello from bob", out[0])


if __name__ == "__main__":
    unittest.main()
