"""The HTTP API (SPEC §1): POST/GET/DELETE /api/v1/dial, GET .../events.

Checks of POST /dial run in the order the spec fixes, first failure wins:
auth (401) -> body and fields (413, 415, 400) -> idempotency replay (422)
-> caller-ID allow-list (403) -> rate limits (429) -> capacity (503). Only
a request that passes them all creates a session, and its row (with its
first event) is committed before the 202 leaves and before the originate
is sent. An idempotent replay is answered before the limiter: the first
request paid.

``X-RateLimit-*`` headers: every POST /dial answer of an authenticated app
carries them. From the limiter's decision once it was consulted (429, 202,
503, 500 after it); answers decided before it (400, 403, 413, 415, 422, a
replay) carry a peek at the bucket, which takes no token. A 401 carries
none: there is no app to speak of.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, cast

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from dialgw import ids
from dialgw.api import openapi, validation
from dialgw.api.context import ApiRequest, context_of
from dialgw.api.errors import (
    REASONS,
    ApiError,
    body_too_large,
    internal_error,
    json_body,
    method_not_allowed,
    not_found,
    shutting_down,
    unauthorized,
)
from dialgw.api.validation import DialRequest
from dialgw.calls.machine import DIALING, ENDED
from dialgw.config import RateLimitSettings
from dialgw.limits import AppLimits, Decision, Limiter, Reservations, limits_for
from dialgw.pool import NoCapacity, NodePool
from dialgw.store import App, IdempotencyRecord, Session, SessionEvent, Store
from dialgw.timefmt import rfc3339

log = Logger()

JSON = "application/json"

#: GET /api/v1/openapi.json's body, encoded once.
_OPENAPI_BODY = json_body(openapi.SPEC)

def _header(request: ApiRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def request_id(request: ApiRequest) -> str:
    """The request's X-Request-ID: the one sent if valid, else a new one (set on the answer)."""
    context = context_of(request)
    if context.request_id is None:
        given = _header(request, b"x-request-id")
        context.request_id = given if given and ids.is_request_id(given) else ids.new_uuid()
        request.setHeader(b"x-request-id", context.request_id.encode("ascii"))
    return context.request_id


def respond(request: ApiRequest, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """Set the status, JSON content type, request id and ``headers``; return ``body``."""
    request_id(request)
    request.setResponseCode(status, REASONS.get(status))
    request.setHeader(b"content-type", JSON.encode("ascii"))
    for name, value in headers:
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return body


def respond_error(request: ApiRequest, error: ApiError) -> bytes:
    """The JSON error envelope of ``error``."""
    return respond(request, error.status, error.encoded(), error.headers)


def _refuse_unread_body(request: ApiRequest) -> None:
    """413 if the connection refused to read a body over the limit
    (`dialgw.api.http`): asked once the request has authenticated."""
    if context_of(request).body_too_large:
        raise body_too_large()


class Unavailable(Resource):
    """Answers every request with one `ApiError` (the API before it is ready)."""

    isLeaf = True

    def __init__(self, error: ApiError) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._error = error

    def render(self, request: ApiRequest) -> bytes:
        return respond_error(request, self._error)


def session_view(session: Session) -> bytes:
    """GET's body. ``metadata`` is spliced in as stored, so it is echoed as sent."""
    fields = {
        "session_uuid": session.session_uuid,
        "status": session.status,
        "started_at": rfc3339(session.started_at),
        "answered_at": rfc3339(session.answered_at),
        "ended_at": rfc3339(session.ended_at),
        "hangup_cause": session.hangup_cause,
        "to": session.to_number,
        "from": session.from_number,
    }
    head = json_body(fields)
    return head[:-1] + b',"metadata":' + session.metadata_json.encode("utf-8") + b"}"


def event_view(event: SessionEvent) -> dict[str, Any]:
    """One session event and the state of its webhook delivery."""
    view: dict[str, Any] = {
        "id": event.event_id,
        "event": event.event,
        "sequence": event.sequence,
        "status": event.status,
        "occurred_at": rfc3339(event.occurred_at),
    }
    if event.status == ENDED:
        view["hangup_cause"] = event.hangup_cause
        view["duration_sec"] = event.duration_sec
    view.update(
        delivery_state=event.delivery_state,
        attempts=event.attempts,
        last_error=event.last_error,
        next_attempt_at=rfc3339(event.next_attempt_at) if event.delivery_state == "pending" else None,
        delivered_at=rfc3339(event.delivered_at),
    )
    return view


class CallControl(Protocol):
    """What the API asks of the call tracker."""

    def originate(self, session: Session) -> Deferred[Any]: ...

    def hangup_session(self, session: Session) -> Deferred[Any]: ...


class DialAPI:
    """The Klein application; one per daemon."""

    app = Klein()

    def __init__(
        self,
        *,
        store: Store,
        tracker: CallControl,
        pool: NodePool,
        node_id: str,
        clock: IReactorTime,
        limiter: Limiter,
        ratelimit: RateLimitSettings,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._pool = pool
        self._node_id = node_id
        self._clock = clock
        self._limiter = limiter
        #: The ``[ratelimit]`` defaults; an app's overrides are read per request.
        self._ratelimit = ratelimit
        #: Dials admitted here whose session row is not committed yet.
        self.reservations = Reservations()
        #: False once the gateway is stopping: new dials get a 503.
        self.accepting = True

    def resource(self) -> IResource:
        return self.app.resource()

    # -- plumbing ---------------------------------------------------------------

    async def _guard(self, request: ApiRequest, handler: Callable[[], Awaitable[bytes]]) -> bytes:
        """Run a handler: errors become the JSON envelope, bugs a logged 500."""
        rid = request_id(request)
        try:
            return await handler()
        except ApiError as error:
            return respond_error(request, error)
        except Exception:
            log.failure("request {request_id} failed", request_id=rid)
            return respond_error(request, internal_error())

    def _credentials(self, request: ApiRequest) -> tuple[str, str]:
        app_id = _header(request, b"x-app-id")
        api_key = _header(request, b"x-api-key")
        if not app_id or not api_key:
            raise unauthorized()
        return app_id, api_key

    def _authenticated(self, request: ApiRequest, app: App | None) -> App:
        if app is None:
            raise unauthorized()
        context_of(request).app_id = app.app_id  # for the request's log line
        return app

    async def _authenticate(self, request: ApiRequest) -> App:
        app_id, api_key = self._credentials(request)
        return self._authenticated(request, await self._store.authenticate(app_id, api_key))

    async def _own_session(self, request: ApiRequest, session_uuid: str) -> tuple[App, Session]:
        """The app and its session: 401 before 404, one database round trip."""
        if not ids.is_session_id(session_uuid):
            await self._authenticate(request)
            _refuse_unread_body(request)
            raise not_found()
        app_id, api_key = self._credentials(request)
        app, session = await self._store.authenticate_for_session(app_id, api_key, session_uuid)
        app = self._authenticated(request, app)
        _refuse_unread_body(request)
        if session is None:
            raise not_found()
        return app, session

    # -- routes ----------------------------------------------------------------

    @app.route("/api/v1/dial", methods=["POST"])
    def dial(self, request: ApiRequest) -> Awaitable[bytes]:
        return self._guard(request, lambda: self._dial(request))

    @app.route("/api/v1/dial/<string:session_uuid>", methods=["GET"])
    def get_session(self, request: ApiRequest, session_uuid: str) -> Awaitable[bytes]:
        async def handler() -> bytes:
            _, session = await self._own_session(request, session_uuid)
            return respond(request, 200, session_view(session))

        return self._guard(request, handler)

    @app.route("/api/v1/dial/<string:session_uuid>", methods=["DELETE"])
    def delete_session(self, request: ApiRequest, session_uuid: str) -> Awaitable[bytes]:
        async def handler() -> bytes:
            _, session = await self._own_session(request, session_uuid)
            body = {"session_uuid": session.session_uuid, "status": session.status}
            if session.status == ENDED:
                return respond(request, 200, json_body(body))
            await self._tracker.hangup_session(session)
            return respond(request, 202, json_body(body))

        return self._guard(request, handler)

    @app.route("/api/v1/dial/<string:session_uuid>/events", methods=["GET"])
    def session_events(self, request: ApiRequest, session_uuid: str) -> Awaitable[bytes]:
        async def handler() -> bytes:
            _, session = await self._own_session(request, session_uuid)
            events = await self._store.session_events(session.session_uuid)
            body = {
                "session_uuid": session.session_uuid,
                "events": [event_view(event) for event in events],
            }
            return respond(request, 200, json_body(body))

        return self._guard(request, handler)

    @app.route("/api/v1/openapi.json", methods=["GET"])
    def openapi_document(self, request: ApiRequest) -> bytes:
        """The OpenAPI document of this API (`dialgw.api.openapi`); no auth."""
        return respond(request, 200, _OPENAPI_BODY)

    @app.handle_errors(NotFound)
    def unknown_path(self, request: IRequest, failure: Failure) -> bytes:
        return respond_error(cast(ApiRequest, request), not_found())

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, MethodNotAllowed)
        allowed = ", ".join(error.valid_methods or ())
        answer = cast(ApiRequest, request)  # Klein hands its handlers an untyped IRequest
        if allowed:
            answer.setHeader(b"allow", allowed.encode("ascii"))
        return respond_error(answer, method_not_allowed())

    # -- POST /dial ------------------------------------------------------------

    async def _dial(self, request: ApiRequest) -> bytes:
        app = await self._authenticate(request)
        limits = limits_for(app, self._ratelimit)
        try:
            return await self._dial_as(request, app, limits)
        finally:
            if not context_of(request).ratelimit_headers:
                await self._peek_limits(request, app.app_id, limits)

    def _limit_headers(self, request: ApiRequest, decision: Decision) -> None:
        for name, value in decision.headers():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        context_of(request).ratelimit_headers = True

    async def _peek_limits(self, request: ApiRequest, app_id: str, limits: AppLimits) -> None:
        """Headers for an answer decided before the limiter: a look, no token taken."""
        try:
            self._limit_headers(request, await self._limiter.peek(app_id, limits))
        except Exception:
            log.failure("request {request_id}: no rate-limit headers", request_id=request_id(request))

    async def _dial_as(self, request: ApiRequest, app: App, limits: AppLimits) -> bytes:
        rid = request_id(request)
        if not self.accepting:
            raise shutting_down()
        _refuse_unread_body(request)
        raw = request.content.read(validation.MAX_BODY_BYTES + 1) if request.content is not None else b""
        if len(raw) > validation.MAX_BODY_BYTES:
            raise body_too_large()
        validation.check_content_type(_header(request, b"content-type"))
        key = validation.check_idempotency_key(_header(request, b"idempotency-key"))
        dial = validation.validate_dial(raw)
        now = self._clock.seconds()
        if key is not None:
            record = await self._store.find_idempotency(app.app_id, key, now)
            if record is not None:
                return self._replay(request, record, dial)
        if dial.from_ not in app.caller_ids:
            raise ApiError(
                403, "cid_not_allowed", "from is not on this app's caller-ID allow-list", field="from"
            )
        # max_concurrent counts the app's live sessions in the store and the
        # dials admitted here whose rows are not committed yet (see
        # dialgw.limits.reservations); this dial holds a ticket until its
        # row is committed or it fails.
        held_before = self.reservations.snapshot(app.app_id)
        live = await self._store.count_live_sessions(app.app_id)
        in_flight = self.reservations.in_flight_since(app.app_id, held_before)
        ticket = self.reservations.hold(app.app_id)
        try:
            decision = await self._limiter.check(app.app_id, limits, live + in_flight)
            self._limit_headers(request, decision)
            if not decision.allowed:
                context_of(request).limit = decision.limit  # for the rejection metrics
                raise _rate_limited(decision)
            return await self._place(request, rid, app, dial, key, now)
        finally:
            self.reservations.release(app.app_id, ticket)

    async def _place(self, request: ApiRequest, rid: str, app: App, dial: DialRequest, key: str | None,
                     now: float) -> bytes:
        try:
            node = self._pool.reserve()
        except NoCapacity as full:
            raise ApiError(
                503, "no_fs_capacity", full.reason, headers=(("Retry-After", str(full.retry_after)),)
            ) from None
        channel_uuid = ids.new_uuid()
        session = Session(
            session_uuid=ids.session_id(self._node_id, channel_uuid),
            app_id=app.app_id,
            node_id=self._node_id,
            fs_node=node.name,
            channel_uuid=channel_uuid,
            job_uuid=ids.new_uuid(),
            to_number=dial.to,
            from_number=dial.from_,
            timeout_sec=dial.timeout_sec,
            max_duration_sec=dial.max_duration_sec,
            metadata_json=dial.metadata_json,
            status=DIALING,
            started_at=now,
            request_id=rid,
        )
        body = json_body({"session_uuid": session.session_uuid, "status": DIALING})
        claim = None
        if key is not None:
            claim = IdempotencyRecord(
                app_id=app.app_id,
                key=key,
                request_hash=dial.request_hash,
                session_uuid=session.session_uuid,
                response_status=202,
                response_body=body.decode("utf-8"),
                created_at=now,
            )
        try:
            existing = await self._store.create_session(session, now, claim)
        except BaseException:
            self._pool.release(node.name)
            raise
        if existing is not None:
            # A concurrent request with the same key won: answer as it did.
            self._pool.release(node.name)
            return self._replay(request, existing, dial)
        self._tracker.originate(session)
        return respond(
            request, 202, body, [("Location", f"/api/v1/dial/{session.session_uuid}")]
        )

    def _replay(self, request: ApiRequest, record: IdempotencyRecord, dial: DialRequest) -> bytes:
        if record.request_hash != dial.request_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            )
        return respond(
            request,
            record.response_status,
            record.response_body.encode("utf-8"),
            [
                ("Location", f"/api/v1/dial/{record.session_uuid}"),
                ("Idempotent-Replayed", "true"),
            ],
        )


_LIMIT_MESSAGES = {
    "dials_per_sec": "too many dials per second for this app",
    "max_concurrent": "this app has as many live calls as it may",
    "cooldown": "too many refused dials: this app is cooling down",
}


def _rate_limited(decision: Decision) -> ApiError:
    """The 429 of a refused dial: nothing was stored and no call placed."""
    limit = decision.limit or "dials_per_sec"
    return ApiError(
        429,
        "rate_limited",
        f"{_LIMIT_MESSAGES.get(limit, 'rate limited')}; retry after {decision.retry_after} s",
        headers=(("Retry-After", str(decision.retry_after)),),
        extra=(("retry_after_sec", decision.retry_after), ("limit", limit)),
    )
