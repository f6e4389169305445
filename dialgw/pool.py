"""The FreeSWITCH node pool: which node takes the next dial (SPEC §4, Capacity).

A dial goes to the ready node (connected, authenticated, not silent) with the
most free channels, then the most calls-per-second budget left. Free
channels are ``max_channels`` minus the larger of the calls the gateway
tracks on the node and the node's own HEARTBEAT ``Session-Count`` (which
also counts calls the gateway does not own).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol

import attrs
from twisted.internet.interfaces import IReactorTime


class NodeLink(Protocol):
    """What the pool needs of a node's ESL connection."""

    @property
    def ready(self) -> bool: ...

    @property
    def session_count(self) -> int | None: ...


class NoCapacity(Exception):
    """No node can take a call now; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


@attrs.define(eq=False)
class PoolNode:
    name: str
    link: NodeLink
    max_channels: int
    max_cps: int
    tracked: int = 0
    starts: deque[float] = attrs.field(factory=deque)

    def cps_left(self, now: float) -> int:
        while self.starts and self.starts[0] <= now - 1.0:
            self.starts.popleft()
        return self.max_cps - len(self.starts)

    def free_channels(self) -> int:
        in_use = max(self.tracked, self.link.session_count or 0)
        return self.max_channels - in_use


class NodePool:
    """Chooses nodes and counts the calls each one carries for us."""

    def __init__(self, clock: IReactorTime, nodes: Iterable[PoolNode]) -> None:
        self._clock = clock
        self._nodes = {node.name: node for node in nodes}

    def __iter__(self) -> Iterator[PoolNode]:
        return iter(self._nodes.values())

    def get(self, name: str) -> PoolNode | None:
        return self._nodes.get(name)

    def reserve(self) -> PoolNode:
        """Take a channel and a calls-per-second slot on the best node.

        Raises `NoCapacity` when no node is ready or all are full.
        """
        now = self._clock.seconds()
        best: PoolNode | None = None
        best_key = (0, 0)
        any_ready = False
        cps_bound = False
        for node in self._nodes.values():
            if not node.link.ready:
                continue
            any_ready = True
            free = node.free_channels()
            cps = node.cps_left(now)
            if free <= 0:
                continue
            if cps <= 0:
                cps_bound = True
                continue
            if best is None or (free, cps) > best_key:
                best, best_key = node, (free, cps)
        if best is None:
            if not any_ready:
                raise NoCapacity(5, "no FreeSWITCH node is connected")
            if cps_bound:
                raise NoCapacity(1, "every FreeSWITCH node is at its calls-per-second limit")
            raise NoCapacity(5, "every FreeSWITCH node is at its channel limit")
        best.tracked += 1
        best.starts.append(now)
        return best

    def adopt(self, name: str) -> None:
        """Count a call that already exists (a session found at start)."""
        node = self._nodes.get(name)
        if node is not None:
            node.tracked += 1

    def release(self, name: str) -> None:
        """A call on ``name`` ended (or was never placed)."""
        node = self._nodes.get(name)
        if node is not None and node.tracked > 0:
            node.tracked -= 1
