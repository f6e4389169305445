"""A webhook receiver for development: logs one line per webhook.

``make run`` points the demo app's ``webhook_url`` here, so a newcomer sees
every webhook dialgw sends without writing a receiver first.
"""

from __future__ import annotations

import json
from collections import deque

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

log = Logger()

#: How many received webhooks ``WebhookLog.received`` keeps.
KEEP_RECEIVED = 1000


def _headers(request: Request) -> dict[str, str]:
    """Request headers, names lower-cased, the last value of each."""
    return {
        name.decode("latin-1").lower(): values[-1].decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


class WebhookLog(Resource):
    """Answers every POSTed webhook with 204 and logs it in one line.

    It does NOT verify signatures: it has no secret. Use the
    ``standardwebhooks`` library in a real receiver. A body that is not a
    JSON object gets 400; methods other than POST get 405.
    """

    isLeaf = True

    def __init__(self, keep: int = KEEP_RECEIVED, logger: Logger = log) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource.__init__ has no hints
        self.log = logger
        #: The last ``keep`` webhooks received: (headers, body), oldest first.
        self.received: deque[tuple[dict[str, str], bytes]] = deque(maxlen=keep)

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        headers = _headers(request)
        self.received.append((headers, body))
        webhook_id = headers.get("webhook-id")
        try:
            webhook = json.loads(body)
        except (ValueError, RecursionError):
            webhook = None
        if not isinstance(webhook, dict):
            self.log.warn(
                "webhook {webhook_id}: body is not a JSON object ({size} bytes)",
                webhook_id=webhook_id,
                size=len(body),
            )
            request.setResponseCode(400)
            request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
            return b"body must be a JSON object\n"
        fields = dict(
            event_name=webhook.get("event"),
            session_uuid=webhook.get("session_uuid"),
            sequence=webhook.get("sequence"),
            status=webhook.get("status"),
            webhook_id=webhook_id,
        )
        if webhook.get("event") == "call.hangup":
            self.log.info(
                "webhook {event_name} {session_uuid} #{sequence} status={status}"
                " cause={hangup_cause} duration={duration_sec}s id={webhook_id}",
                hangup_cause=webhook.get("hangup_cause"),
                duration_sec=webhook.get("duration_sec"),
                **fields,
            )
        else:
            self.log.info(
                "webhook {event_name} {session_uuid} #{sequence} status={status}"
                " id={webhook_id}",
                **fields,
            )
        request.setResponseCode(204)
        return b""
