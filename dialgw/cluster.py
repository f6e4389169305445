"""Cluster mode: gateway nodes announce themselves, survivors adopt the dead.

Several gateway nodes (different ``[node] id``) share one PostgreSQL store,
one Redis and one FreeSWITCH pool. Each node keeps a presence key in Redis
(``dialgw:node:<id>``) that expires ``ttl_sec`` after its last refresh. A
node whose live sessions are in the database but whose key is gone has
died: another node claims those sessions in one UPDATE (so each is claimed
by exactly one survivor), follows them (reconciling them with FreeSWITCH
first, since the events of the gap are lost) and ends them like its own.
Their pending webhooks need no adoption: every node's sender serves the
shared outbox.

Without Redis nothing can tell a dead node from a quiet one, so nothing is
adopted while Redis is unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dialgw.limits.redis_connection import RedisConnection
from dialgw.store import Session

log = Logger()

KEY_PREFIX = "dialgw:node:"
#: A cluster node is taken for dead this long after its last announcement.
PRESENCE_TTL_SEC = 15.0


class OrphanStore(Protocol):
    """What presence needs of the store."""

    def live_node_ids(self) -> Deferred[list[str]]: ...

    def adopt_live_sessions(self, from_node: str, to_node: str) -> Deferred[list[Session]]: ...


def presence_key(node_id: str) -> str:
    return KEY_PREFIX + node_id


class NodePresence(Service):
    """Announces this node in Redis and adopts the sessions of dead nodes."""

    def __init__(
        self,
        *,
        node_id: str,
        redis: RedisConnection,
        store: OrphanStore,
        clock: IReactorTime,
        adopt: Callable[[list[Session]], object],
        ttl_sec: float = PRESENCE_TTL_SEC,
    ) -> None:
        """``redis`` is the gateway's Redis connection (shared with the limiter)."""
        self.node_id = node_id
        self._redis = redis
        self._store = store
        self._clock = clock
        self._adopt = adopt
        self._ttl = ttl_sec
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._busy = False
        #: Whether the last announcement reached Redis.
        self.announced = False

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._loop.start(self._ttl / 3, now=True)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        if self._loop.running:
            self._loop.stop()
        # Leave the key to expire: a node that stops with live calls is
        # adopted by the others once its key is gone, and a node that comes
        # back quickly under the same id keeps its own sessions.
        return None

    def tick(self) -> Deferred[None] | None:
        """Refresh our key, then look for dead nodes (one round at a time)."""
        if self._busy:
            return None
        self._busy = True
        d = Deferred.fromCoroutine(self._round())

        def done(result: object) -> object:
            self._busy = False
            return result

        d.addBoth(done)
        return d

    async def _round(self) -> None:
        try:
            value = json.dumps({"node": self.node_id, "at": self._clock.seconds()})
            await self._redis.run(
                lambda redis: redis.set(presence_key(self.node_id), value, pexpire=int(self._ttl * 1000))
            )
        except Exception as error:
            if self.announced:
                log.warn("cluster presence: Redis unreachable ({error}); not adopting", error=repr(error))
            self.announced = False
            return
        if not self.announced:
            log.info("cluster presence: node {node} announced", node=self.node_id)
        self.announced = True
        try:
            await self.adopt_orphans()
        except Exception as error:
            # Redis or the database did not answer in time: the next round
            # tries again.
            log.warn("cluster presence: adoption round failed: {error}", error=repr(error))

    async def adopt_orphans(self) -> list[Session]:
        """Claim the live sessions of every node whose presence key is gone."""
        owners = [node for node in await self._store.live_node_ids() if node != self.node_id]
        if not owners:
            return []
        keys = [presence_key(node) for node in owners]
        alive = await self._redis.run(lambda redis: redis.mget(keys))
        adopted: list[Session] = []
        for node, value in zip(owners, alive, strict=True):  # MGET answers one value per key
            if value is not None:
                continue
            sessions = await self._store.adopt_live_sessions(node, self.node_id)
            if sessions:
                log.warn(
                    "cluster: node {dead} is gone; adopted {count} live sessions",
                    dead=node,
                    count=len(sessions),
                )
                adopted.extend(sessions)
        if adopted:
            self._adopt(adopted)
        return adopted
