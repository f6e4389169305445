"""Following calls: from an originate to the session's end.

The tracker keeps the sessions of this gateway node that are not yet ended,
by channel UUID (the ``origination_uuid``, FreeSWITCH's ``Unique-ID``). It
turns ESL events into `Signal`s, asks the pure state machine what they
mean, and records each status change in the store (status and session event
in one compare-and-set transaction), strictly in order per session.

Second lines of defence, each ending in a documented hangup cause:
- a ring watchdog at ``timeout_sec`` + grace (FreeSWITCH's own
  ``originate_timeout`` is the first line);
- a duration watchdog at ``max_duration_sec`` + grace after answer
  (FreeSWITCH's ``sched_hangup`` is the first line);
- reconciliation with the switch after every (re)connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.calls import machine
from dialgw.calls.machine import ANSWERED, DIALING, ENDED, CallSignal, Signal, Transition
from dialgw.calls.originate import originate_command
from dialgw.observe import Observers

log = Logger()

#: The cause of a session whose channel vanished while the gateway was not
#: looking (events lost, switch restarted): FreeSWITCH cannot tell it any more.
VANISHED_CAUSE = "NORMAL_UNSPECIFIED"
#: The cause when the originate could not be handed to the switch at all.
NOT_SENT_CAUSE = "NORMAL_TEMPORARY_FAILURE"
#: The cause when the switch never confirmed the originate and has no channel
#: once the ring timeout and its grace period are over.
NO_RESULT_CAUSE = "RECOVERY_ON_TIMER_EXPIRE"
#: How far a switch's event time may be from the gateway's clock to be used.
MAX_CLOCK_SKEW = 2.0


class NodeLink(Protocol):
    """What the tracker needs of a FreeSWITCH node connection."""

    name: str

    @property
    def ready(self) -> bool: ...

    def api(self, command: str) -> Deferred: ...

    def bgapi(self, command: str, job_uuid: str) -> Deferred: ...


class SessionStore(Protocol):
    def record_transition(
        self,
        session_uuid: str,
        from_status: str,
        to_status: str,
        at: float,
        hangup_cause: str | None = None,
    ) -> Deferred: ...


class CapacityCounter(Protocol):
    def adopt(self, name: str) -> None: ...

    def release(self, name: str) -> None: ...


@attrs.define(eq=False)
class LiveCall:
    """A session that has not ended, as the tracker follows it."""

    session_uuid: str
    channel_uuid: str
    job_uuid: str
    fs_node: str
    status: str
    timeout_sec: int
    max_duration_sec: int
    answered_at: float | None = None
    #: When the last status change happened; status times never go backwards.
    last_at: float = 0.0
    kill_cause: str | None = None
    watchdog: IDelayedCall | None = None
    writes: Deferred = attrs.field(factory=lambda: succeed(None))


TransitionObserver = Callable[[LiveCall, Transition, float], None]


class CallTracker:
    """Follows this gateway node's live sessions on their FreeSWITCH nodes."""

    def __init__(
        self,
        *,
        node_id: str,
        store: SessionStore,
        pool: CapacityCounter,
        clock: IReactorTime,
        links: Mapping[str, NodeLink],
        dial_strings: Mapping[str, str],
        grace_sec: float = 5.0,
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._pool = pool
        self._clock = clock
        self._links = links
        self._dial_strings = dial_strings
        self._grace = grace_sec
        self._by_channel: dict[str, LiveCall] = {}
        self._by_session: dict[str, LiveCall] = {}
        self._by_job: dict[str, LiveCall] = {}
        self._waiters: dict[tuple[str, str], Observers[Transition]] = {}
        self.observers: list[TransitionObserver] = []
        #: Called whenever the store has a new session event (the webhook
        #: sender wakes up on it instead of waiting for its next poll).
        self.event_listeners: list[Callable[[], None]] = []

    # -- what the rest of the gateway asks -------------------------------

    def __len__(self) -> int:
        return len(self._by_channel)

    def get(self, session_uuid: str) -> LiveCall | None:
        return self._by_session.get(session_uuid)

    def census(self) -> dict[tuple[str, str], int]:
        """How many live sessions this node follows, by (FreeSWITCH node, status)."""
        counts: dict[tuple[str, str], int] = {}
        for call in self._by_channel.values():
            key = (call.fs_node, call.status)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def live_on(self, fs_node: str) -> list[LiveCall]:
        return [call for call in self._by_channel.values() if call.fs_node == fs_node]

    def track(self, session, *, adopted: bool = False) -> LiveCall:
        """Start following a stored session (``session`` is a store `Session`)."""
        call = LiveCall(
            session_uuid=session.session_uuid,
            channel_uuid=session.channel_uuid,
            job_uuid=session.job_uuid,
            fs_node=session.fs_node,
            status=session.status,
            timeout_sec=session.timeout_sec,
            max_duration_sec=session.max_duration_sec,
            answered_at=session.answered_at,
            last_at=max(
                t
                for t in (session.started_at, session.ringing_at, session.early_media_at, session.answered_at)
                if t is not None
            ),
        )
        self._by_channel[call.channel_uuid] = call
        self._by_session[call.session_uuid] = call
        self._by_job[call.job_uuid] = call
        if adopted:
            self._pool.adopt(call.fs_node)
        since = call.answered_at if call.status == ANSWERED else session.started_at
        self._arm_watchdog(call, since)
        return call

    def originate(self, session) -> Deferred:
        """Place the call of a freshly stored session. Never fails."""
        call = self.track(session)
        self._new_event()  # the API committed the session.dialing event
        return Deferred.fromCoroutine(self._originate(call, session))

    def hangup(self, session_uuid: str) -> Deferred:
        """Hang a live session up (DELETE): cancel before answer, clear after.

        The kill is remembered: if the channel does not exist yet (the
        originate is still on its way) it is sent again when the channel
        shows up or the connection comes back.
        """
        call = self._by_session.get(session_uuid)
        if call is None:
            return succeed(None)
        call.kill_cause = "NORMAL_CLEARING" if call.status == ANSWERED else "ORIGINATOR_CANCEL"
        return Deferred.fromCoroutine(self._kill(call))

    def hangup_session(self, session) -> Deferred:
        """DELETE of any live session, also one another gateway node follows.

        A session this node does not follow is killed straight on its
        FreeSWITCH node; the node that follows it sees the hangup and
        records it.
        """
        if session.session_uuid in self._by_session:
            return self.hangup(session.session_uuid)
        link = self._links.get(session.fs_node)
        if link is None or not link.ready or session.status == ENDED:
            return succeed(None)
        cause = "NORMAL_CLEARING" if session.status == ANSWERED else "ORIGINATOR_CANCEL"
        d = link.api(f"uuid_kill {session.channel_uuid} {cause}")
        d.addErrback(
            lambda f: log.warn(
                "uuid_kill of {session_uuid} failed: {error}",
                session_uuid=session.session_uuid,
                error=repr(f.value),
            )
        )
        return d

    def adopt(self, sessions) -> Deferred:
        """Follow sessions taken over from a dead gateway node.

        Their events while nobody followed them are lost, so each is
        reconciled with its switch at once (or when that switch's
        connection is next ready).
        """
        calls = [
            self.track(session, adopted=True)
            for session in sessions
            if session.session_uuid not in self._by_session
        ]
        work = []
        for name, link in self._links.items():
            mine = [call for call in calls if call.fs_node == name]
            if mine and link.ready:
                work.append(Deferred.fromCoroutine(self._reconcile(link, mine)))
        for call in calls:
            if call.fs_node not in self._links:
                self.apply(call, CallSignal(Signal.HANGUP, VANISHED_CAUSE))
        return gatherResults(work) if work else succeed(None)

    def when_status(self, session_uuid: str, status: str) -> Deferred:
        """Fires once a transition of ``session_uuid`` to ``status`` is stored."""
        return self._waiters.setdefault((session_uuid, status), Observers()).when()

    # -- ESL input ---------------------------------------------------------

    def on_event(self, link: NodeLink, event) -> None:
        """Handle one ESL event from ``link``; everything not ours is ignored."""
        name = event.name
        if name == "BACKGROUND_JOB":
            call = self._by_job.get(event.get("Job-UUID") or "")
            if call is None:
                return
            signal = machine.signal_for_job_result(event.body.decode("utf-8", "replace"))
        else:
            call = self._by_channel.get(event.get("Unique-ID") or "")
            if call is None or call.fs_node != link.name:
                return
            if name == "CHANNEL_CREATE":
                if call.kill_cause is not None:
                    self._send_kill(call)
                return
            signal = machine.signal_for_channel_event(name, event.get("Hangup-Cause"))
        if signal is not None:
            self.apply(call, signal, _event_time(event))

    def apply(self, call: LiveCall, signal: CallSignal, at: float | None = None) -> Transition | None:
        """Apply one signal to a live call; record the change if there is one.

        ``at`` is when the switch says it happened (``Event-Date-Timestamp``).
        It is used only while it is within `MAX_CLOCK_SKEW` before the
        gateway's own clock (a switch with a wrong clock must not make calls last
        minutes or seconds); else the arrival time is. A session's status
        times never go backwards.
        """
        transition = machine.next_transition(call.status, signal)
        if transition is None:
            return None
        now = self._clock.seconds()
        # Nothing happens after it is heard of: a switch clock running ahead
        # is not believed, one running far behind neither.
        if at is not None and now - MAX_CLOCK_SKEW <= at <= now:
            now = at
        now = max(now, call.last_at)
        call.last_at = now
        call.status = transition.to_status
        if transition.to_status == ANSWERED:
            call.answered_at = now
            self._arm_watchdog(call, now)
        elif transition.to_status == ENDED:
            self._forget(call)
        log.info(
            "session {session_uuid} {status} on {fs_node}{cause}",
            session_uuid=call.session_uuid,
            status=transition.to_status,
            fs_node=call.fs_node,
            cause=f" ({transition.hangup_cause})" if transition.hangup_cause else "",
        )
        call.writes.addCallback(lambda _: self._record(call, transition, now))
        return transition

    # -- reconnection --------------------------------------------------------

    def reconcile(self, link: NodeLink) -> Deferred:
        """Bring every live session on ``link``'s node up to date with the switch.

        Called after each (re)connection: events sent while the gateway was
        away are lost, so ask FreeSWITCH what is left.
        """
        calls = self.live_on(link.name)
        return Deferred.fromCoroutine(self._reconcile(link, calls))

    async def _reconcile(self, link: NodeLink, calls: list[LiveCall]) -> None:
        if not calls:
            return
        log.info(
            "reconciling {count} live sessions on {fs_node}", count=len(calls), fs_node=link.name
        )
        try:
            rows = _channel_rows(await link.api("show channels as json"))
        except Exception:
            log.failure("could not list channels on {fs_node}", fs_node=link.name)
            rows = {}
        for call in calls:
            if call.status == ENDED:
                continue
            row = rows.get(call.channel_uuid)
            if row is not None:
                signal = machine.signal_for_call_state(
                    str(row.get("callstate", "")), str(row.get("answerstate", ""))
                )
                if signal is not None:
                    self.apply(call, signal)
                if call.kill_cause is not None:
                    self._send_kill(call)
                continue
            await self._end_if_gone(link, call, VANISHED_CAUSE)

    # -- internals -------------------------------------------------------------

    async def _originate(self, call: LiveCall, session) -> None:
        link = self._links.get(call.fs_node)
        try:
            command = originate_command(
                session_uuid=call.session_uuid,
                channel_uuid=call.channel_uuid,
                node_id=self._node_id,
                to=session.to_number,
                from_=session.from_number,
                timeout_sec=call.timeout_sec,
                max_duration_sec=call.max_duration_sec,
                dial_string=self._dial_strings[call.fs_node],
            )
            if link is None or not link.ready:
                raise _NotSent(f"node {call.fs_node} is not connected")
        except Exception as error:
            log.warn(
                "originate of {session_uuid} not sent: {error}",
                session_uuid=call.session_uuid,
                error=str(error),
            )
            self.apply(call, CallSignal(Signal.HANGUP, NOT_SENT_CAUSE))
            return
        try:
            reply = await link.bgapi(command, call.job_uuid)
        except Exception as error:
            # The command may have reached the switch: the job result, the
            # watchdog or reconciliation will settle the session.
            log.warn(
                "originate of {session_uuid} unconfirmed: {error}",
                session_uuid=call.session_uuid,
                error=repr(error),
            )
            return
        text = reply.headers.get("Reply-Text", "")
        if not text.startswith("+OK"):
            log.warn(
                "originate of {session_uuid} refused: {reply}",
                session_uuid=call.session_uuid,
                reply=text,
            )
            self.apply(call, CallSignal(Signal.HANGUP, NOT_SENT_CAUSE))

    async def _kill(self, call: LiveCall) -> None:
        link = self._links.get(call.fs_node)
        if link is None or not link.ready or call.kill_cause is None:
            return  # sent again by reconciliation when the node is back
        try:
            await link.api(f"uuid_kill {call.channel_uuid} {call.kill_cause}")
        except Exception as error:
            log.warn(
                "uuid_kill of {session_uuid} failed: {error}",
                session_uuid=call.session_uuid,
                error=repr(error),
            )

    def _send_kill(self, call: LiveCall) -> None:
        Deferred.fromCoroutine(self._kill(call))

    async def _end_if_gone(self, link: NodeLink, call: LiveCall, cause: str) -> bool:
        """End ``call`` with ``cause`` if its channel no longer exists."""
        try:
            exists = (await link.api(f"uuid_exists {call.channel_uuid}")).strip()
        except Exception as error:
            log.warn(
                "uuid_exists for {session_uuid} failed: {error}",
                session_uuid=call.session_uuid,
                error=repr(error),
            )
            return False
        if exists == "false":
            self.apply(call, CallSignal(Signal.HANGUP, cause))
            return True
        return False

    def _arm_watchdog(self, call: LiveCall, since: float | None) -> None:
        if call.watchdog is not None and call.watchdog.active():
            call.watchdog.cancel()
        if call.status == ANSWERED:
            limit = call.max_duration_sec
        else:
            limit = call.timeout_sec
        since = self._clock.seconds() if since is None else since
        delay = max(0.0, since + limit + self._grace - self._clock.seconds())
        call.watchdog = self._clock.callLater(delay, self._watchdog_fired, call)

    def _watchdog_fired(self, call: LiveCall) -> None:
        call.watchdog = None
        if call.status == ENDED:
            return
        Deferred.fromCoroutine(self._enforce_limit(call))

    async def _enforce_limit(self, call: LiveCall) -> None:
        """The switch should have ended this call by now: make sure it does."""
        answered = call.status == ANSWERED
        link = self._links.get(call.fs_node)
        if link is None or not link.ready:
            # Reconciliation settles it when the node is back; look again later.
            call.watchdog = self._clock.callLater(self._grace, self._watchdog_fired, call)
            return
        log.warn(
            "session {session_uuid} outlived its {limit}; enforcing it",
            session_uuid=call.session_uuid,
            limit="max duration" if answered else "ring timeout",
        )
        gone_cause = VANISHED_CAUSE if call.status != DIALING else NO_RESULT_CAUSE
        if await self._end_if_gone(link, call, gone_cause) or call.status == ENDED:
            return
        call.kill_cause = call.kill_cause or ("ALLOTTED_TIMEOUT" if answered else "NO_ANSWER")
        await self._kill(call)
        if call.status != ENDED:
            call.watchdog = self._clock.callLater(self._grace, self._watchdog_fired, call)

    def _new_event(self) -> None:
        for listener in list(self.event_listeners):
            listener()

    def _forget(self, call: LiveCall) -> None:
        if call.watchdog is not None and call.watchdog.active():
            call.watchdog.cancel()
        call.watchdog = None
        if self._by_channel.pop(call.channel_uuid, None) is not None:
            self._pool.release(call.fs_node)
        self._by_session.pop(call.session_uuid, None)
        self._by_job.pop(call.job_uuid, None)

    def _record(self, call: LiveCall, transition: Transition, at: float) -> Deferred:
        d = self._store.record_transition(
            call.session_uuid,
            transition.from_status,
            transition.to_status,
            at,
            transition.hangup_cause,
        )

        def recorded(event):
            if event is not None:
                self._new_event()
            for observer in list(self.observers):
                observer(call, transition, at)
            waiting = self._waiters.pop((call.session_uuid, transition.to_status), None)
            if waiting is not None:
                waiting.fire(transition)

        def failed(failure: Failure) -> None:
            log.failure(
                "could not record {status} of {session_uuid}",
                failure,
                status=transition.to_status,
                session_uuid=call.session_uuid,
            )

        d.addCallbacks(recorded, failed)
        return d


class _NotSent(Exception):
    pass


def _event_time(event) -> float | None:
    """``Event-Date-Timestamp`` (epoch microseconds) in seconds, if sane."""
    value = event.get("Event-Date-Timestamp")
    if value is None or not value.isdigit():
        return None
    return int(value) / 1_000_000


def _channel_rows(text: str) -> dict[str, dict]:
    """``show channels as json`` by uuid; ``{"row_count": 0}`` has no rows."""
    data = json.loads(text)
    rows = data.get("rows") or []
    return {str(row.get("uuid")): row for row in rows if isinstance(row, dict)}
