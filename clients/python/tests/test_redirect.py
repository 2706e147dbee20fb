"""Redirects and 503 Retry-After, generically: a tiny HTTP server plays a member that is not
the master (307 to the real reaktor) or is in an election (503 Retry-After)."""

import asyncio
import time
import unittest

import reaktor_client as rc
from reaktor_client import errors
from switch_server import Server, free_port


class FakeMember:
    """Answers each WaitMsg handshake with the next of `answers` (then the last again) and
    keeps the request heads it saw."""

    def __init__(self, answers):
        self.answers = answers
        self.seen = []

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        self.seen.append(head.decode())
        answer = self.answers(self.port)[min(len(self.seen) - 1, len(self.answers(self.port)) - 1)]
        writer.write(answer.encode())
        await writer.drain()
        writer.close()

    def close(self):
        self.server.close()


class Redirects(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.server = Server()

    def tearDown(self):
        self.server.close()

    async def test_follows_307_with_its_token_and_waits_out_retry_after(self):
        busy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 8\r\n\r\nelection"
        redirect = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{self.server.port}"
                    f"/v1/ws/n1?address=n1.addr%3A7000\r\nContent-Length: 2\r\n\r\n{{}}")
        fake = await FakeMember(lambda _: [busy, busy, redirect]).start()
        t0 = time.monotonic()
        client = await rc.connect([f"ws://127.0.0.1:{free_port()}", f"http://127.0.0.1:{fake.port}"], "n1", "tok-n1",
                                  options=rc.ClientOptions(backoff_initial=0.05, backoff_max=0.2))
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, 1.9, "two Retry-After: 1 honoured")
        self.assertEqual(len(fake.seen), 3)
        self.assertTrue(all("Authorization: Bearer tok-n1" in h for h in fake.seen), fake.seen)
        self.assertEqual(client.url, f"ws://127.0.0.1:{self.server.port}")
        info = await client.query_node("n1")
        self.assertEqual((info.online, info.address), (True, "n1.addr:7000"))
        await client.close()
        fake.close()

    async def test_a_redirect_loop_is_not_master_not_a_hang(self):
        fake = await FakeMember(lambda p: [f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{p}/v1/ws/n1\r\n"
                                           "Content-Length: 0\r\n\r\n"]).start()
        with self.assertRaises(errors.NotMaster):
            await rc.Connection.open([f"ws://127.0.0.1:{fake.port}"], "n1", "tok-n1", max_redirects=3)
        self.assertEqual(len(fake.seen), 4)
        fake.close()

    async def test_unavailable_everywhere_reports_the_shortest_retry_after(self):
        fake = await FakeMember(lambda _: ["HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"]).start()
        with self.assertRaises(errors.Unavailable) as e:
            await rc.Connection.open([f"ws://127.0.0.1:{fake.port}"], "n1", "tok-n1")
        self.assertEqual(e.exception.retry_after, 7.0)
        fake.close()


if __name__ == "__main__":
    unittest.main()
