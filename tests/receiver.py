"""A scripted webhook receiver on 127.0.0.1 for tests."""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.support import Changes

#: A script answers one request: (status, headers) or None to never answer.
Script = Callable[["Received"], "tuple[int, dict[str, str]] | None"]


@attrs.frozen
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver(Resource):
    isLeaf = True

    def __init__(self, clock, script: Script | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.script: Script = script or (lambda _: (200, {}))
        self.received: list[Received] = []
        self.hanging: list = []
        #: Fires its waiters at each arrival: ``await receiver.arrivals.until(
        #: lambda: len(receiver.received) >= 4)`` instead of polling.
        self.arrivals = Changes()

    def render_POST(self, request):
        headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        item = Received(self.clock.seconds(), headers, request.content.read())
        self.received.append(item)
        self.arrivals()
        answer = self.script(item)
        if answer is None:
            self.hanging.append(request)
            return NOT_DONE_YET
        status, extra = answer
        request.setResponseCode(status)
        for name, value in extra.items():
            request.setHeader(name.encode(), value.encode())
        return b"ok"

    def by_session(self, session_uuid: str) -> list[Received]:
        return [r for r in self.received if r.json()["session_uuid"] == session_uuid]


async def start_receiver(testcase, clock, script: Script | None = None) -> tuple[Receiver, str]:
    receiver = Receiver(clock, script)
    site = Site(receiver)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)

    async def stop() -> None:
        for request in receiver.hanging:
            if request.channel is not None:
                request.channel.transport.abortConnection()
        await port.stopListening()

    testcase.addCleanup(stop)
    return receiver, f"http://127.0.0.1:{port.getHost().port}/hook"
