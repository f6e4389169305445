"""Choosing a FreeSWITCH node: readiness, free channels, calls per second."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dialgw.pool import NoCapacity, NodePool, PoolNode


@attrs.define
class FakeLink:
    ready: bool = True
    session_count: int | None = None


def pool_of(clock, *specs):
    nodes = [PoolNode(name, link, channels, cps) for name, link, channels, cps in specs]
    return NodePool(clock, nodes), {node.name: node for node in nodes}


class NodePoolTests(SynchronousTestCase):
    def test_no_ready_node_is_no_capacity(self) -> None:
        pool, _ = pool_of(Clock(), ("a", FakeLink(ready=False), 10, 10))
        with self.assertRaises(NoCapacity) as caught:
            pool.reserve()
        self.assertGreaterEqual(caught.exception.retry_after, 1)

    def test_most_free_channels_wins(self) -> None:
        pool, nodes = pool_of(
            Clock(), ("a", FakeLink(), 10, 30), ("b", FakeLink(), 20, 30), ("c", FakeLink(ready=False), 99, 30)
        )
        self.assertEqual(pool.reserve().name, "b")
        self.assertEqual(nodes["b"].tracked, 1)

    def test_heartbeat_session_count_corrects_free_channels(self) -> None:
        pool, _ = pool_of(Clock(), ("a", FakeLink(session_count=15), 20, 30), ("b", FakeLink(), 10, 30))
        self.assertEqual(pool.reserve().name, "b")

    def test_full_nodes_refuse_until_released(self) -> None:
        clock = Clock()
        pool, nodes = pool_of(clock, ("a", FakeLink(), 2, 30))
        pool.reserve()
        pool.reserve()
        with self.assertRaises(NoCapacity):
            pool.reserve()
        pool.release("a")
        self.assertEqual(pool.reserve().name, "a")

    def test_calls_per_second_budget(self) -> None:
        clock = Clock()
        pool, nodes = pool_of(clock, ("a", FakeLink(), 100, 3))
        for _ in range(3):
            pool.reserve()
        with self.assertRaises(NoCapacity) as caught:
            pool.reserve()
        self.assertEqual(caught.exception.retry_after, 1)
        clock.advance(1.0)
        self.assertEqual(pool.reserve().name, "a")

    def test_cps_budget_spreads_load(self) -> None:
        clock = Clock()
        pool, _ = pool_of(clock, ("a", FakeLink(), 100, 1), ("b", FakeLink(), 50, 5))
        self.assertEqual([pool.reserve().name for _ in range(3)], ["a", "b", "b"])

    def test_adopted_calls_count(self) -> None:
        pool, nodes = pool_of(Clock(), ("a", FakeLink(), 1, 30))
        pool.adopt("a")
        with self.assertRaises(NoCapacity):
            pool.reserve()
        pool.release("a")
        pool.release("a")
        self.assertEqual(nodes["a"].tracked, 0)
