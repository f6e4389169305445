"""``twistd dialgw-simulator``: the FreeSWITCH simulator as a service."""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.python import usage

from dialgw.simulator.server import FreeSwitchSimulator


class Options(usage.Options):
    """Command-line options of the simulator."""

    optParameters = [
        ["listen", "l", "tcp:8021:interface=127.0.0.1", "ESL listening endpoint (a server endpoint string)."],
        ["password", "p", "ClueCon", "ESL password."],
        ["heartbeat", None, 20.0, "Seconds between HEARTBEAT events.", float],
        ["max-sessions", None, 1000, "Live calls at most (FreeSWITCH's max-sessions).", int],
        ["sessions-per-second", None, 30, "Originates per second at most (FreeSWITCH's sessions-per-second).", int],
    ]


class HeartbeatService(Service):
    """Runs the simulator's heartbeat while the service runs, and stops its timers after."""

    def __init__(self, simulator: FreeSwitchSimulator) -> None:
        self.simulator = simulator

    def startService(self) -> None:
        """Start the HEARTBEAT loop."""
        Service.startService(self)
        self.simulator.start()

    def stopService(self) -> None:
        """Stop heartbeats and call timers."""
        Service.stopService(self)
        self.simulator.stop()


def makeService(options: Options) -> IService:
    """The ESL listener plus the heartbeat, sharing one :class:`FreeSwitchSimulator`."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    simulator = FreeSwitchSimulator(
        clock=reactor,  # type: ignore[arg-type]
        password=options["password"],
        heartbeat_sec=options["heartbeat"],
        max_sessions=options["max-sessions"],
        sessions_per_second=options["sessions-per-second"],
    )
    parent = MultiService()
    listener = StreamServerEndpointService(serverFromString(reactor, options["listen"]), simulator.factory())
    listener.setName("esl")
    listener.setServiceParent(parent)
    heartbeat = HeartbeatService(simulator)
    heartbeat.setName("heartbeat")
    heartbeat.setServiceParent(parent)
    parent.simulator = simulator  # type: ignore[attr-defined]
    return parent
