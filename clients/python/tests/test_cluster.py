"""The client against a three-member cluster (real reaktor processes): it follows the master,
gets fencing tokens, and when the master is killed or stopped mid-run it reconnects to the
new one, registers its ports again in batches and reports the failover (new epoch, new
tokens, nothing lost)."""

import asyncio
import signal
import time
import unittest

import reaktor_client as rc
from switch_server import Cluster

FAST = rc.ClientOptions(backoff_initial=0.02, backoff_max=0.5, max_batch_items=100, open_timeout=1.0)


async def next_of(client, kind, timeout):
    async with asyncio.timeout(timeout):
        while True:
            ev = await client.next_event()
            if isinstance(ev, kind):
                return ev


class ClusterClient(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.cluster = Cluster()

    def tearDown(self):
        self.cluster.close()

    async def test_a_follower_redirects_to_the_master_whose_replies_carry_fencing_tokens(self):
        master, epoch = self.cluster.master()
        follower = next(m for m in (1, 2, 3) if m != master)
        client = await rc.connect(self.cluster.urls[follower - 1], "n1", "tok-n1", options=FAST)
        self.assertEqual(client.url, self.cluster.urls[master - 1])
        reg = await client.register([f"p{i}" for i in range(250)])
        self.assertEqual(len(reg.owned), 250)
        self.assertEqual(reg.epoch, epoch)
        self.assertEqual(client.epoch, epoch)
        tokens = {client.fencing_token(f"p{i}") for i in range(250)}
        self.assertTrue(all(t is not None and t.epoch == epoch for t in tokens), tokens)
        # 250 ports in batches of 100: one sequence per request (or per restore, should a
        # loaded machine make the node's lease run out in between).
        self.assertGreaterEqual(len({t.sequence for t in tokens}), 2)
        # A port registered again gets a newer token (ownership unchanged, token still grows).
        before = client.fencing_token("p0")
        await client.register("p0")
        self.assertGreater(client.fencing_token("p0"), before)
        await client.close()

    async def test_a_killed_master_is_followed_and_the_ports_come_back_with_new_tokens(self):
        master, epoch = self.cluster.master()
        client = await rc.connect(self.cluster.urls, "n2", "tok-n2", options=FAST)
        ports = [f"q{i}" for i in range(1000)]
        await client.register(ports)
        old = {p: client.fencing_token(p) for p in ports}
        killed = time.monotonic()
        self.cluster.kill9(master)
        await next_of(client, rc.Disconnected, 5)
        back = await next_of(client, rc.Reconnected, 10)
        took = time.monotonic() - killed
        self.assertTrue(back.failover, back)
        self.assertGreater(back.epoch, epoch)
        self.assertEqual(back.previous_epoch, epoch)
        self.assertEqual((back.restored, back.lost), (1000, ()))
        self.assertLess(took, 2.0, f"ports back {took:.2f} s after the kill")
        for p in ports:
            self.assertEqual(client.fencing_token(p).epoch, back.epoch)
            self.assertGreater(client.fencing_token(p), old[p])
        owners = await client.query_ports(ports[:5])
        self.assertTrue(all(o.owner == "n2" for o in owners), owners)
        # The killed member comes back as a follower; the client stays with the master.
        self.cluster.start_member(master)
        await client.send("q1", "still here")
        await client.close()

    async def test_a_stopped_master_is_left_and_closes_the_connection_as_not_master_when_resumed(self):
        master, epoch = self.cluster.master()
        n3 = await rc.connect(self.cluster.urls, "n3", "tok-n3", options=FAST)
        await n3.register(["r1", "r2"])
        # A second client connected to the stopped master stays until it resumes.
        self.cluster.signal(master, signal.SIGSTOP)
        try:
            back = await next_of(n3, rc.Reconnected, 10)
            self.assertTrue(back.failover, back)
            self.assertEqual(back.restored, 2)
            new_master, new_epoch = self.cluster.master(other_than=master)
            self.assertEqual(back.epoch, new_epoch)
        finally:
            self.cluster.signal(master, signal.SIGCONT)
        # Resumed, the old master no longer serves: the client is not moved back.
        await asyncio.sleep(0.5)
        self.assertEqual(n3.epoch, new_epoch)
        self.assertEqual((await n3.query_port("r1")).owner, "n3")
        await n3.close()


if __name__ == "__main__":
    unittest.main()
