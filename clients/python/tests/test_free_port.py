"""The test helper's ports: never the same one twice, never in the ephemeral range (a
cluster of three once got one peer address twice from `bind(0)` and failed to start)."""

import unittest

from switch_server import free_port, reserved_port_range


class FreePort(unittest.TestCase):
    def test_ports_are_distinct_and_outside_the_ephemeral_range(self) -> None:
        first, last = reserved_port_range()
        ports = [free_port() for _ in range(300)]
        self.assertEqual(len(set(ports)), len(ports), "a port handed out twice")
        for p in ports:
            self.assertTrue(first <= p <= last, f"{p} outside {first}..={last}")


if __name__ == "__main__":
    unittest.main()
