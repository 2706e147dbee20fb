"""The batching core without sockets: calls in, requests out; replies in, results out."""

import json
import random
import unittest

from reaktor_client import backoff_delay, errors
from reaktor_client.batching import Call, Limits, plan
from reaktor_client.connection import retry_after_ms
from reaktor_client.types import FailedPort, FencingToken, Registration, SendReport, Unregistration


def call(op, items, **kw):
    got = {}

    def done(result, error):
        assert "result" not in got and "error" not in got, "completed twice"
        got["result" if error is None else "error"] = error if error is not None else result

    c = Call(op, list(items), done=done, **kw)
    return c, got


class Batching(unittest.TestCase):
    def test_consecutive_calls_of_one_kind_go_out_as_one_request_and_split_back(self):
        a, ga = call("regport", ["a", "b"])
        b, gb = call("regport", ["c", "b"])
        reqs = plan([a, b], Limits())
        self.assertEqual(len(reqs), 1)
        self.assertEqual(json.loads(reqs[0].text(7)), {"op": "regport", "id": 7, "ports": ["a", "b", "c", "b"]})
        reqs[0].resolve({"id": 7, "registered": 2, "failed": [{"port": "c", "owner": "n2", "address": "x:1"}]})
        self.assertEqual(ga["result"], Registration(owned=("a", "b"), failed=()))
        self.assertEqual(ga["result"].tokens, {})
        self.assertEqual(gb["result"], Registration(owned=("b",), failed=(FailedPort("c", "n2", "x:1"),)))

    def test_a_masters_reply_gives_every_owned_port_its_fencing_token(self):
        a, ga = call("regport", ["a", "b"])
        b, gb = call("regport", ["c"])
        reqs = plan([a, b], Limits(max_items=2))
        self.assertEqual([r.items for r in reqs], [["a", "b"], ["c"]])
        reqs[0].resolve({"id": 1, "registered": 1, "failed": [{"port": "b", "owner": "n2", "address": "x"}],
                         "epoch": 4, "sequence": 17})
        reqs[1].resolve({"id": 2, "registered": 1, "failed": [], "epoch": 4, "sequence": 18})
        self.assertEqual(ga["result"].tokens, {"a": FencingToken(4, 17)})
        self.assertEqual(ga["result"].token("b"), None)
        self.assertEqual(ga["result"].epoch, 4)
        self.assertEqual(gb["result"].token("c"), FencingToken(4, 18))
        # Tokens order by epoch first: a later master's token beats any sequence of an older one.
        self.assertLess(FencingToken(4, 900), FencingToken(5, 1))
        # A switch that runs alone stamps nothing.
        c, gc = call("regport", ["d"])
        plan([c], Limits())[0].resolve({"registered": 1, "failed": []})
        self.assertEqual((gc["result"].tokens, gc["result"].epoch), ({}, None))

    def test_a_503_body_may_name_a_finer_wait_than_retry_after(self):
        self.assertEqual(retry_after_ms('{"error":{"code":"no_master"},"retry_after_ms":150}', 30), 0.15)
        self.assertEqual(retry_after_ms('{"retry_after_ms":999999}', 30), 30)
        self.assertIsNone(retry_after_ms("election", 30))
        self.assertIsNone(retry_after_ms('{"retry_after_ms":"soon"}', 30))

    def test_order_across_kinds_is_kept(self):
        calls = [call("regport", ["a"])[0], call("sendmsg", [{"port": "a", "body": "1"}])[0],
                 call("sendmsg", [{"port": "a", "body": "2"}])[0], call("unregport", ["a"])[0],
                 call("regport", ["a"], subscribe=True)[0], call("regport", ["b"])[0]]
        reqs = plan(calls, Limits())
        self.assertEqual([(r.op, r.subscribe, len(r.items)) for r in reqs],
                         [("regport", False, 1), ("sendmsg", False, 2), ("unregport", False, 1),
                          ("regport", True, 1), ("regport", False, 1)])
        self.assertEqual([m["body"] for m in reqs[1].items], ["1", "2"])

    def test_a_call_over_the_item_limit_is_split_and_its_results_recombined(self):
        ports = [f"p{i}" for i in range(250)]
        big, g = call("regport", ports)
        small, gs = call("regport", ["q"])
        reqs = plan([big, small], Limits(max_items=100))
        self.assertEqual([len(r.items) for r in reqs], [100, 100, 51])
        for r in reqs:
            r.resolve({"registered": 0, "failed": [{"port": "p5", "owner": "o", "address": None}]
                       if "p5" in r.items else []})
        self.assertEqual(g["result"].owned, tuple(p for p in ports if p != "p5"))
        self.assertEqual(g["result"].failed, (FailedPort("p5", "o", None),))
        self.assertEqual(gs["result"], Registration(owned=("q",)))

    def test_the_byte_limit_cuts_requests(self):
        msgs = [{"port": "p", "body": "x" * 400} for _ in range(10)]
        c, g = call("sendmsg", msgs)
        reqs = plan([c], Limits(max_bytes=1000))
        self.assertEqual([len(r.items) for r in reqs], [2, 2, 2, 2, 2])
        for r in reqs:
            self.assertLess(len(r.text(1)), 1000)
            r.resolve({"delivered": 2, "dropped": 0})
        self.assertIsNone(g["result"])  # batched sends carry no counts

    def test_exclusive_send_has_its_own_request_and_counts(self):
        a, ga = call("sendmsg", [{"port": "a", "body": "1"}])
        b, gb = call("sendmsg", [{"port": "b", "body": "2"}, {"port": "", "body": "3"}], exclusive=True)
        c, gc = call("sendmsg", [{"port": "c", "body": "4"}])
        reqs = plan([a, b, c], Limits())
        self.assertEqual([len(r.items) for r in reqs], [1, 2, 1])
        for r, n in zip(reqs, ({"delivered": 1, "dropped": 0}, {"delivered": 5, "dropped": 1},
                               {"delivered": 0, "dropped": 1})):
            r.resolve(n)
        self.assertEqual(gb["result"], SendReport(5, 1))
        self.assertIsNone(ga["result"])

    def test_unregister_and_queries_split_by_membership_and_position(self):
        u1, g1 = call("unregport", ["a", "b"])
        u2, g2 = call("unregport", ["c"])
        (r,) = plan([u1, u2], Limits())
        r.resolve({"released": ["a"], "not_owned": ["c"], "unknown": ["b"]})
        self.assertEqual(g1["result"], Unregistration(released=("a",), unknown=("b",)))
        self.assertEqual(g2["result"], Unregistration(not_owned=("c",)))
        q1, h1 = call("queryport", ["x", "y"])
        q2, h2 = call("queryport", ["x"])
        (r,) = plan([q1, q2], Limits())
        r.resolve({"ports": [{"port": "x", "owner": "n1", "address": "a"},
                             {"port": "y", "owner": None, "address": None},
                             {"port": "x", "owner": "n1", "address": "a"}]})
        self.assertEqual([p.owner for p in h1["result"]], ["n1", None])
        self.assertEqual([p.port for p in h2["result"]], ["x"])
        bad, hb = call("querynode", ["n1", "n2"])
        (r,) = plan([bad], Limits())
        r.resolve({"nodes": [{"node": "n1", "online": True, "address": "a", "ports": 1}]})
        self.assertIsInstance(hb["error"], errors.SwitchError)

    def test_a_merged_request_refused_as_a_whole_is_retried_one_call_each(self):
        good, gg = call("regport", ["fine"])
        guilty, gb = call("regport", ["x" * 100])
        (r,) = plan([good, guilty], Limits())
        reply = {"id": 1, "error": {"code": "limit_exceeded", "message": "port name longer than 64 bytes"}}
        self.assertTrue(r.unmerge(reply))
        one, two = r.unmerged()
        one.resolve({"registered": 1, "failed": []})
        two.resolve(reply)
        self.assertEqual(gg["result"].owned, ("fine",))
        self.assertIsInstance(gb["error"], errors.LimitExceeded)
        self.assertIn("64 bytes", str(gb["error"]))
        self.assertIn("[switch.limits]", str(gb["error"]))  # says what to do
        # A lone call gets the error as it is.
        (r,) = plan([call("regport", ["x" * 100])[0]], Limits())
        self.assertFalse(r.unmerge(reply))

    def test_empty_calls_complete_without_a_request(self):
        c, g = call("regport", [])
        self.assertEqual(plan([c], Limits()), [])
        self.assertEqual(g["result"], Registration())

    def test_backoff_grows_is_capped_and_jittered(self):
        rng = random.Random(1)
        ds = [backoff_delay(a, 0.1, 2.0, rng) for a in range(12)]
        for a, d in enumerate(ds):
            full = min(2.0, 0.1 * 2 ** a)
            self.assertTrue(full / 2 <= d <= full, (a, d))
        self.assertGreater(len({round(backoff_delay(5, 0.1, 2.0, rng), 6) for _ in range(20)}), 10)


class Errors(unittest.TestCase):
    def test_errors_name_the_problem_and_what_to_do(self):
        e = errors.from_reply({"code": "forbidden", "message": "token may not act for n2"}, 403)
        self.assertIsInstance(e, errors.Forbidden)
        self.assertIn("n2", str(e))
        self.assertIn("nodes", str(e))
        self.assertIsInstance(errors.from_status(401, "missing bearer token"), errors.Unauthorized)
        u = errors.from_status(503, "", retry_after=2.0)
        self.assertIsInstance(u, errors.Unavailable)
        self.assertEqual(u.retry_after, 2.0)
        self.assertIsInstance(errors.from_close(4000, "replaced"), errors.Replaced)
        self.assertIsInstance(errors.from_close(4001, "lease expired"), errors.LeaseExpired)
        self.assertIsInstance(errors.from_close(4002, "slow consumer"), errors.SlowConsumer)
        self.assertIsInstance(errors.from_close(1006, ""), errors.ConnectionLost)


if __name__ == "__main__":
    unittest.main()
