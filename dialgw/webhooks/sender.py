"""Webhook delivery from the outbox (SPEC §3): durable, signed, ordered.

The sender claims due events from the store a page at a time (never more
than it has free delivery slots, so a backlog of any size stays on disk),
POSTs each with treq over one persistent connection pool, and records every
attempt. Results are written in batches: every result that arrives while a
write is running goes into the next one (group commit).

Ordering comes from the store: only the first undelivered event of a
session is ever due, so event 3 waits while event 2 is retried, and other
sessions are not held up. A claimed event is leased; if the gateway dies
mid-attempt the lease runs out and the event is sent again with the same
``webhook-id``: at-least-once, never lost.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlsplit

import treq
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from dialgw import __version__
from dialgw.config import WebhookSettings
from dialgw.observe import Observers
from dialgw.store import AttemptResult, Delivery
from dialgw.webhooks.payload import webhook_body
from dialgw.webhooks.policy import classify, next_attempt, parse_retry_after
from dialgw.webhooks.signing import webhook_headers

log = Logger()

USER_AGENT = f"dialgw/{__version__}"
#: On stop, how long (real time) requests already sent may take to finish.
STOP_GRACE_SEC = 2.0


def _discard(_: bytes) -> None:
    pass


@implementer(IBodyProducer)
class BodyProducer:
    """A request body already in memory, written in one piece.

    treq would wrap bytes in a ``FileBodyProducer``, which writes from a
    cooperative task on a later reactor turn: the headers and the body of
    every webhook went out in two writes. This writes the body at once, so
    a webhook is one write.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class WebhookSender(Service):
    """Delivers the outbox, in the daemon's reactor."""

    def __init__(
        self,
        *,
        store: Any,
        reactor: Any,
        clock: IReactorTime,
        settings: WebhookSettings | None = None,
        max_in_flight: int = 100,
        per_host: int = 10,
        poll_sec: float = 1.0,
        lease_sec: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        settings = settings or WebhookSettings()  # ``[webhooks]``'s defaults
        timeout_sec = settings.timeout_sec
        self._timeout = timeout_sec
        self._max_attempts = settings.max_attempts
        self._max_age = settings.max_age_sec
        self._max_in_flight = max_in_flight
        self._per_host = per_host
        self._lease = max(lease_sec, 3 * timeout_sec)
        self._rng = rng or random.SystemRandom()
        # HTTPConnectionPool and Agent are untyped in Twisted.
        self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
        self._pool.maxPersistentPerHost = per_host
        self._http = HTTPClient(Agent(reactor, pool=self._pool, connectTimeout=timeout_sec))  # type: ignore[no-untyped-call]
        self._hosts: dict[str, DeferredSemaphore] = {}
        self._claimed: set[str] = set()
        self._attempts: set[Deferred[IResponse]] = set()  # HTTP requests on the wire
        self._turns: set[Deferred[DeferredSemaphore]] = set()  # deliveries waiting for a per-host slot
        self._reactor = reactor
        self._results: list[AttemptResult] = []
        self._flushed: Observers[None] = Observers()
        self._flushing = False
        self._pumping = False
        self._idle_now: Observers[None] = Observers()
        self._retry_timer: Any = None
        self._pump_again = False
        self._poll = LoopingCall(self.wake)
        self._poll.clock = clock
        self._poll_sec = poll_sec
        #: The most deliveries ever held in memory at once (claimed, not yet
        #: recorded): what bounds the sender's memory whatever the backlog.
        self.peak_in_flight = 0
        #: Attempts since start by result: delivered, retry, failed.
        self.results: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        return len(self._claimed)

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._poll.start(self._poll_sec, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        if self._poll.running:
            self._poll.stop()
        if self._retry_timer is not None and self._retry_timer.active():
            self._retry_timer.cancel()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # What cannot finish now is recorded as due again at once, so the next
        # start (or another node) sends it without waiting for its lease.
        for turn in list(self._turns):
            turn.cancel()  # never started: due again at once
        # Requests on the wire get a moment to finish, so a clean stop does not
        # make the next node send them again; then they are cut short.
        cut = None
        if self._attempts:
            cut = self._reactor.callLater(STOP_GRACE_SEC, self._cut_attempts)
        await self.when_idle()
        if cut is not None and cut.active():
            cut.cancel()
        await self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]  # untyped in Twisted

    def _cut_attempts(self) -> None:
        for attempt in list(self._attempts):
            attempt.cancel()

    def _idle(self) -> bool:
        return not (self._claimed or self._flushing or self._pumping or self._results)

    def when_idle(self) -> Deferred[None]:
        """Fires once nothing is claimed, in flight or waiting to be recorded
        (at once if nothing is)."""
        return succeed(None) if self._idle() else self._idle_now.when()

    def _check_idle(self) -> None:
        if self._idle_now and self._idle():
            self._idle_now.fire(None)

    # -- claiming --------------------------------------------------------------

    def wake(self) -> None:
        """Look for due events now (new events, a freed slot, the poll tick)."""
        if not self.running:
            return
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        d = Deferred.fromCoroutine(self._pump())
        d.addErrback(lambda f: log.failure("webhook outbox read failed", f))

    async def _pump(self) -> None:
        try:
            self._pump_again = True
            while self._pump_again and self.running:
                self._pump_again = False
                free = self._max_in_flight - len(self._claimed)
                if free <= 0:
                    return
                now = self._clock.seconds()
                deliveries = await self._store.claim_due_events(now, free, now + self._lease)
                if not self.running:
                    self._release(deliveries)
                    return
                for delivery in deliveries:
                    if delivery.event.event_id in self._claimed:
                        continue  # its lease ran out while it waited here; it is on its way
                    self._claimed.add(delivery.event.event_id)
                    Deferred.fromCoroutine(self._deliver(delivery)).addErrback(
                        lambda f: log.failure("webhook delivery crashed", f)
                    )
                self.peak_in_flight = max(self.peak_in_flight, len(self._claimed))
                if len(deliveries) == free:
                    self._pump_again = True
        finally:
            self._pumping = False
            self._check_idle()

    def _wake_at(self, when: float) -> None:
        """Wake exactly when the earliest scheduled retry comes due."""
        timer = self._retry_timer
        if timer is not None and timer.active():
            if timer.getTime() <= when:
                return
            timer.cancel()
        delay = max(0.0, when - self._clock.seconds())
        self._retry_timer = self._clock.callLater(delay, self.wake)

    def _release(self, deliveries: list[Delivery]) -> None:
        """Give claimed events back, due now (they were claimed as we stopped)."""
        now = self._clock.seconds()
        for delivery in deliveries:
            if delivery.event.event_id not in self._claimed:
                self._results.append(
                    AttemptResult(delivery.event.event_id, now, None, "gateway stopping", "retry", now)
                )
        if self._results and not self._flushing:
            self._start_flush()

    # -- one delivery ----------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        host = urlsplit(delivery.webhook_url).netloc.lower()
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = DeferredSemaphore(self._per_host)
        try:
            turn = gate.acquire()
            self._turns.add(turn)
            try:
                await turn
            finally:
                self._turns.discard(turn)
            try:
                status, error, retry_after = await self._attempt(delivery)
            finally:
                gate.release()
            result = self._decide(delivery, status, error, retry_after)
        except ValueError as error:
            # The webhook cannot be built (e.g. a malformed secret): retrying
            # would not help, and the session's later events must not wait.
            log.error(
                "webhook {event_id} cannot be built: {error}",
                event_id=delivery.event.event_id,
                error=str(error),
            )
            now = self._clock.seconds()
            result = AttemptResult(delivery.event.event_id, now, None, "cannot build webhook", "failed", None)
        except CancelledError:
            result = AttemptResult(
                delivery.event.event_id, self._clock.seconds(), None, "gateway stopping", "retry",
                self._clock.seconds(),
            )
        self._results.append(result)
        self.results[result.outcome] = self.results.get(result.outcome, 0) + 1
        if result.outcome == "retry" and result.next_attempt_at is not None:
            self._wake_at(result.next_attempt_at)
        log.info(
            "webhook {event_id} {event} of {session_uuid} attempt {attempt}: {outcome} ({detail})",
            event_id=delivery.event.event_id,
            event=delivery.event.event,
            session_uuid=delivery.event.session_uuid,
            attempt=delivery.event.attempts + 1,
            outcome=result.outcome,
            detail=result.error or result.status_code,
        )
        recorded = self._flushed.when()
        if not self._flushing:
            self._start_flush()
        await recorded
        self._claimed.discard(delivery.event.event_id)
        self.wake()
        self._check_idle()

    async def _attempt(self, delivery: Delivery) -> tuple[int | None, str | None, str | None]:
        event = delivery.event
        body = webhook_body(
            event,
            to_number=delivery.to_number,
            from_number=delivery.from_number,
            metadata_json=delivery.metadata_json,
        )
        headers = webhook_headers(
            secrets=delivery.signing_secrets,
            event_id=event.event_id,
            event_name=event.event,
            timestamp=int(self._clock.seconds()),
            body=body,
            user_agent=USER_AGENT,
        )

        wire_headers: dict[bytes | str, bytes | str] = dict(headers.items())

        async def post() -> IResponse:
            # Redirects are not followed (a 3xx fails the event): a receiver
            # must not be able to point signed webhooks elsewhere. The body
            # is drained below, not buffered.
            response = await self._http.post(
                delivery.webhook_url, data=BodyProducer(body), headers=wire_headers, allow_redirects=False,
                unbuffered=True,
            )
            # Drain the body (bounded by the same timeout) so the connection
            # goes back to the pool.
            await treq.collect(response, _discard)
            return response

        # One deadline for connecting, headers and body (treq's own timeout
        # stops at the headers), on our clock.
        attempt = Deferred.fromCoroutine(post())
        expired = []

        def expire() -> None:
            expired.append(True)
            attempt.cancel()

        deadline = self._clock.callLater(self._timeout, expire)
        self._attempts.add(attempt)
        try:
            response = await attempt
        except Exception as error:
            if expired:
                return None, f"timeout after {self._timeout:g}s", None
            if not self.running:
                raise CancelledError() from None
            return None, f"connection error: {type(error).__name__}", None
        finally:
            self._attempts.discard(attempt)
            if deadline.active():
                deadline.cancel()
        raw_retry_after = response.headers.getRawHeaders(b"retry-after")
        retry_after = raw_retry_after[0].decode("latin-1") if raw_retry_after else None
        failed = None if 200 <= response.code < 300 else f"HTTP {response.code}"
        return response.code, failed, retry_after

    def _decide(
        self, delivery: Delivery, status: int | None, error: str | None, retry_after: str | None
    ) -> AttemptResult:
        now = self._clock.seconds()
        event = delivery.event
        verdict = classify(status)
        next_at = None
        if verdict == "retry":
            next_at = next_attempt(
                attempts=event.attempts + 1,
                first_attempt_at=now,
                created_at=event.occurred_at,
                now=now,
                max_attempts=self._max_attempts,
                max_age_sec=self._max_age,
                retry_after=parse_retry_after(retry_after, now),
                rng=self._rng,
            )
            if next_at is None:
                verdict = "failed"
        return AttemptResult(event.event_id, now, status, error, verdict, next_at)

    # -- recording ---------------------------------------------------------------

    def _start_flush(self) -> None:
        self._flushing = True
        Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> None:
        try:
            while self._results or self._flushed:
                batch, self._results = self._results, []
                waiting, self._flushed = self._flushed, Observers()
                if batch:
                    try:
                        await self._store.record_attempts(batch)
                    except Exception:
                        # Not recorded: the leases run out and these events
                        # are sent again, with the same ids.
                        log.failure("could not record {count} webhook attempts", count=len(batch))
                waiting.fire(None)
        finally:
            self._flushing = False
            self._check_idle()
