"""``twistd dialgw-simulator``: the FreeSWITCH simulator as a service."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage


class Options(usage.Options):
    """Command-line options of the simulator."""

    optParameters = [
        ["listen", "l", "tcp:8021:interface=127.0.0.1", "ESL listening endpoint (a server endpoint string)."],
        ["password", "p", "ClueCon", "ESL password."],
        ["heartbeat", None, 20.0, "Seconds between HEARTBEAT events.", float],
        ["max-sessions", None, 1000, "Live calls at most (FreeSWITCH's max-sessions).", int],
        ["sessions-per-second", None, 30, "Originates per second at most (FreeSWITCH's sessions-per-second).", int],
    ]


def makeService(options: Options) -> IService:
    """The simulator and its ESL listener (:func:`dialgw.simulator.server.simulator_service`)."""
    from twisted.internet import reactor

    from dialgw.simulator.server import simulator_service

    return simulator_service(
        reactor,
        reactor,
        options["listen"],
        heartbeat_sec=options["heartbeat"],
        password=options["password"],
        max_sessions=options["max-sessions"],
        sessions_per_second=options["sessions-per-second"],
    )
