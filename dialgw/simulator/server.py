"""A FreeSWITCH Event Socket server that plays scripted calls.

:class:`FreeSwitchSimulator` is the switch as a Twisted service: its call
model (:mod:`~dialgw.simulator.switch`), its API
(:mod:`~dialgw.simulator.commands`) and its ESL connections
(:mod:`~dialgw.simulator.protocol`), with heartbeats while it runs.
:func:`simulator_service` adds the listening port. Everything runs on the
clock passed in, so tests drive time with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall

from dialgw.simulator import wire
from dialgw.simulator.channels import Channel
from dialgw.simulator.commands import ApiCommands
from dialgw.simulator.protocol import ESLServerFactory, ESLServerProtocol
from dialgw.simulator.switch import Switch
from dialgw.simulator.wire import Event

_T = TypeVar("_T")

#: The first lines of the commands received that :attr:`FreeSwitchSimulator.commands` keeps (the latest).
RECORDED_COMMANDS = 10_000
#: The bytes received that :attr:`FreeSwitchSimulator.received` keeps (the latest).
RECORDED_BYTES = 1 << 20


class FreeSwitchSimulator(Service):
    """The simulated switch: its calls, events, capacity and heartbeats, independent of connections.

    Heartbeats run from :meth:`startService` to :meth:`stopService`; nothing
    is scheduled before. What the switch received is kept for tests, bounded:
    :attr:`received` (the latest :data:`RECORDED_BYTES` bytes) and
    :attr:`commands` (the first lines of the latest :data:`RECORDED_COMMANDS`).
    """

    def __init__(
        self,
        clock: IReactorTime,
        password: str = "ClueCon",
        heartbeat_sec: float = 20,
        max_sessions: int = 1000,
        sessions_per_second: int = 30,
        hostname: str = "sim",
    ) -> None:
        self.clock = clock
        self.password = password
        self.heartbeat_sec = heartbeat_sec
        self.connections: list[ESLServerProtocol] = []
        self.switch = Switch(clock, self._fire, hostname, max_sessions, sessions_per_second)
        self.api = ApiCommands(self.switch)
        self.received = bytearray()
        self.commands: deque[str] = deque(maxlen=RECORDED_COMMANDS)
        self._silent = False
        self._heartbeat = LoopingCall(self.atomically, self._send_heartbeat)
        self._heartbeat.clock = clock

    # the service
    def startService(self) -> None:
        """Start the HEARTBEAT loop."""
        super().startService()  # type: ignore[no-untyped-call]  # twisted.application.service is untyped
        self._start_heartbeat()

    def stopService(self) -> None:
        """Stop heartbeats, every call timer and every connection's auth timeout; calls stay."""
        super().stopService()  # type: ignore[no-untyped-call]  # twisted.application.service is untyped
        if self._heartbeat.running:
            self._heartbeat.stop()
        self.switch.stop_timers()
        for connection in self.connections:
            connection.stop_timers()

    def start(self) -> None:
        """Start the service unless it runs (idempotent)."""
        if not self.running:
            self.startService()

    def stop(self) -> None:
        """Stop the service (for test clean-up; safe to repeat)."""
        self.stopService()

    def factory(self) -> ESLServerFactory:
        """A factory of ESL connections to this switch (start the service first)."""
        return ESLServerFactory(self)

    def _start_heartbeat(self) -> None:
        if not self._heartbeat.running and self.heartbeat_sec > 0:
            self._heartbeat.start(self.heartbeat_sec, now=False)

    # what connections ask of the switch (protocol.Core)
    @property
    def is_down(self) -> bool:
        """Shut down: connections are refused until :meth:`restart`."""
        return self.switch.is_down

    @property
    def silent(self) -> bool:
        """While set, nothing is written to any socket (a hung switch); clearing it resumes.

        Output produced meanwhile (replies, call events) is held and written on
        resume; commands that arrive are recorded but run only on resume; no
        heartbeats are produced while silent.
        """
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        was, self._silent = self._silent, bool(value)
        if was and not self._silent:
            for connection in list(self.connections):
                connection.resume()

    def record(self, data: bytes) -> None:
        """Keep bytes received (the latest :data:`RECORDED_BYTES`)."""
        self.received += data
        excess = len(self.received) - RECORDED_BYTES
        if excess > 0:
            del self.received[:excess]

    def record_command(self, line: str) -> None:
        """Keep a command's first line (the latest :data:`RECORDED_COMMANDS`)."""
        self.commands.append(line)

    def atomically(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run one step of the switch; work queued with :meth:`soon` meanwhile runs after it."""
        return self.switch.atomically(function, *args)

    def soon(self, work: Callable[[], object]) -> None:
        """Run ``work`` now, or as soon as the current step of the switch has finished."""
        self.switch.soon(work)

    def execute_api(self, name: str, arg: str, deliver: Callable[[str], None]) -> None:
        """Run an API command; ``deliver(output)`` now, or later for ``originate``."""
        self.api.execute(name, arg, deliver)

    def background_job(self, job_uuid: str, command: str, arg: str, output: str) -> None:
        """Fire the BACKGROUND_JOB carrying a bgapi command's output."""
        self.api.background_job(job_uuid, command, arg, output)

    def _fire(self, event: Event) -> None:
        for connection in list(self.connections):
            connection.offer(event)

    def _send_heartbeat(self) -> None:
        if not self._silent:
            self.switch.heartbeat(self.heartbeat_sec)

    # the switch, for tests and the service
    @property
    def calls(self) -> dict[str, Channel]:
        """The live calls by UUID."""
        return self.switch.calls

    @property
    def core_uuid(self) -> str:
        """This run's Core-UUID (a new one after :meth:`restart`)."""
        return self.switch.events.core_uuid

    @property
    def max_sessions(self) -> int:
        """Live calls at most."""
        return self.switch.max_sessions

    @max_sessions.setter
    def max_sessions(self, value: int) -> None:
        self.switch.max_sessions = value

    @property
    def sessions_per_second(self) -> int:
        """Originates per second at most."""
        return self.switch.sessions_per_second

    @sessions_per_second.setter
    def sessions_per_second(self, value: int) -> None:
        self.switch.sessions_per_second = value

    def drop_connections(self) -> None:
        """Close every ESL socket abruptly; calls go on, their events meanwhile are lost."""
        for connection in list(self.connections):
            connection.abort()
            if connection in self.connections:
                self.connections.remove(connection)

    def restart(self) -> None:
        """Like a FreeSWITCH restart: connections dropped, calls forgotten silently, new Core-UUID."""
        self.drop_connections()
        self.switch.restart()
        if self.running:
            self._start_heartbeat()

    def shutdown(self) -> None:
        """SHUTDOWN event, every call hung up with SYSTEM_SHUTDOWN, then the shutdown notice and close."""
        self.atomically(self._shutdown)

    def _shutdown(self) -> None:
        self.switch.shutdown()
        for connection in list(self.connections):
            connection.disconnect(wire.SHUTTING_DOWN)
        if self._heartbeat.running:
            self._heartbeat.stop()

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """The far end hangs up (a BYE, or a refusal while ringing); False if no such call."""
        return self.atomically(self.switch.remote_hangup, uuid, cause)


def simulator_service(
    reactor: IReactorCore,
    clock: IReactorTime,
    listen: str,
    heartbeat_sec: float = 20,
    password: str = "ClueCon",
    max_sessions: int = 1000,
    sessions_per_second: int = 30,
) -> IService:
    """The simulator (child ``switch``) and its ESL port on ``listen`` (child ``esl``).

    The switch starts before the port listens and stops after it closes.
    """
    simulator = FreeSwitchSimulator(
        clock=clock,
        password=password,
        heartbeat_sec=heartbeat_sec,
        max_sessions=max_sessions,
        sessions_per_second=sessions_per_second,
    )
    parent = MultiService()  # type: ignore[no-untyped-call]  # twisted.application.service is untyped
    _adopt(parent, "switch", simulator)
    endpoint = serverFromString(reactor, listen)  # type: ignore[no-untyped-call]  # untyped in Twisted
    listener = StreamServerEndpointService(endpoint, ESLServerFactory(simulator))  # type: ignore[no-untyped-call]
    _adopt(parent, "esl", listener)
    return parent


def _adopt(parent: MultiService, name: str, child: Service) -> None:
    child.setName(name)  # type: ignore[no-untyped-call]  # twisted.application.service is untyped
    child.setServiceParent(parent)  # type: ignore[no-untyped-call]  # twisted.application.service is untyped
