"""The HTTP API over real loopback HTTP, with a real SQLite store.

The call tracker is a recording fake here (the end-to-end tests drive the
real one against the simulator); the pool is real, over fake node links.
"""

from __future__ import annotations

import hmac
import json

import attrs
import treq
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from dialgw.api.app import DialAPI
from dialgw.config import RateLimitSettings
from dialgw.limits import MemoryLimiter
from dialgw.pool import NodePool, PoolNode
from dialgw.store import apps as store_module
from tests.support import HTTPClient, listen_http, temp_store

JSON_TYPE = {"Content-Type": "application/json"}
GOOD = {"to": "0527121102", "from": "0721234567"}


@attrs.define
class FakeLink:
    ready: bool = True
    session_count: int | None = None


@attrs.define
class RecordingTracker:
    store: object
    originated: list = attrs.field(factory=list)
    hung_up: list = attrs.field(factory=list)
    rows_at_originate: list = attrs.field(factory=list)

    def originate(self, session):
        self.originated.append(session)
        return succeed(None)

    def hangup_session(self, session):
        self.hung_up.append(session.session_uuid)
        return succeed(None)


class APITestCase(TestCase):
    #: ``[ratelimit]`` as configured: the defaults (5 dials/s, burst 10, 100 live, cooldown after 20 429s).
    ratelimit = RateLimitSettings()

    async def setUp(self) -> None:
        self.store = await temp_store(self)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.link = FakeLink()
        self.pool = NodePool(self.clock, [PoolNode("fs1", self.link, 100, 1000)])
        self.tracker = RecordingTracker(self.store)
        self.limiter = MemoryLimiter(self.clock)
        self.api = DialAPI(
            store=self.store, tracker=self.tracker, pool=self.pool, node_id="acW68", clock=self.clock,
            limiter=self.limiter, ratelimit=self.ratelimit,
        )
        self.http = HTTPClient(self, await listen_http(self, self.api.resource()))
        self.app, self.key = await self.store.create_app("one", "http://127.0.0.1:9/h", ["0721234567"], 0.0)
        self.other, self.other_key = await self.store.create_app("two", "http://127.0.0.1:9/h", ["0721234567"], 0.0)

    def auth(self, app=None, key=None) -> dict[str, str]:
        return {"X-App-ID": (app or self.app).app_id, "X-API-Key": key or self.key}

    async def post(self, body=GOOD, headers=None, raw: bytes | None = None):
        payload = raw if raw is not None else json.dumps(body).encode()
        return await self.http.request(
            "POST", "/api/v1/dial", {**self.auth(), **JSON_TYPE, **(headers or {})}, payload
        )


class DialTests(APITestCase):
    async def test_accepted_dial_is_stored_before_the_originate(self) -> None:
        reply = await self.post({**GOOD, "metadata": {"order": "ש-17"}})
        self.assertEqual(reply.status, 202)
        body = reply.json()
        self.assertEqual(body["status"], "dialing")
        self.assertRegex(body["session_uuid"], r"^acW68-[0-9a-f-]{36}$")
        self.assertEqual(reply.headers["location"], f"/api/v1/dial/{body['session_uuid']}")
        self.assertEqual(reply.headers["content-type"], "application/json")
        self.assertTrue(reply.headers["x-request-id"])
        self.assertEqual([s.session_uuid for s in self.tracker.originated], [body["session_uuid"]])
        session = await self.store.get_session(body["session_uuid"])
        self.assertEqual((session.status, session.fs_node, session.app_id), ("dialing", "fs1", self.app.app_id))
        self.assertEqual(session.channel_uuid, body["session_uuid"][6:])
        events = await self.store.session_events(body["session_uuid"])
        self.assertEqual([(e.sequence, e.event) for e in events], [(1, "session.dialing")])

    async def test_request_id_is_echoed_or_made(self) -> None:
        reply = await self.post(headers={"X-Request-ID": "abc-123"})
        self.assertEqual(reply.headers["x-request-id"], "abc-123")
        reply = await self.post(headers={"X-Request-ID": "x" * 500})
        self.assertNotEqual(reply.headers["x-request-id"], "x" * 500)
        self.assertTrue(reply.headers["x-request-id"])

    async def test_auth_failures_are_all_alike(self) -> None:
        await self.store.update_app(self.other.app_id, enabled=False)
        cases = {
            "no headers": {},
            "no key": {"X-App-ID": self.app.app_id},
            "unknown app": {"X-App-ID": "app_nope", "X-API-Key": self.key},
            "wrong key": {"X-App-ID": self.app.app_id, "X-API-Key": self.other_key},
            "disabled app": self.auth(self.other, self.other_key),
        }
        replies = {}
        for name, headers in cases.items():
            reply = await self.http.request("POST", "/api/v1/dial", {**headers, **JSON_TYPE}, json.dumps(GOOD).encode())
            replies[name] = (reply.status, reply.json())
        self.assertEqual(set(map(json.dumps, replies.values())), {json.dumps(replies["no headers"])}, replies)
        self.assertEqual(replies["wrong key"][0], 401)
        self.assertEqual(replies["wrong key"][1]["error"], "unauthorized")
        self.assertEqual(self.tracker.originated, [])

    async def test_check_order(self) -> None:
        # auth before body
        reply = await self.http.request("POST", "/api/v1/dial", JSON_TYPE, b"{")
        self.assertEqual(reply.status, 401)
        # body before caller ID
        reply = await self.post({"to": "100", "from": "0731234567"})
        self.assertEqual(reply.json()["error"], "invalid_number")
        # caller ID before capacity
        self.link.ready = False
        reply = await self.post({"to": "0527121102", "from": "0731234567"})
        self.assertEqual((reply.status, reply.json()["error"], reply.json()["field"]), (403, "cid_not_allowed", "from"))
        # capacity last
        reply = await self.post()
        self.assertEqual((reply.status, reply.json()["error"]), (503, "no_fs_capacity"))
        self.assertGreaterEqual(int(reply.headers["retry-after"]), 1)
        self.assertEqual(self.tracker.originated, [])
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 0)

    async def test_media_type_and_size(self) -> None:
        reply = await self.post(headers={"Content-Type": "text/plain"})
        self.assertEqual((reply.status, reply.json()["error"]), (415, "unsupported_media_type"))
        reply = await self.post(raw=b"{" + b" " * (64 * 1024) + b"}")
        self.assertEqual((reply.status, reply.json()["error"]), (413, "body_too_large"))
        reply = await self.post(headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(reply.status, 202)

    async def test_field_errors_over_http(self) -> None:
        reply = await self.post({**GOOD, "timeout": 30})
        self.assertEqual(reply.status, 400)
        self.assertEqual(reply.json(), {"error": "invalid_field", "message": "unknown field 'timeout'", "field": "timeout"})
        reply = await self.post(raw=b"\xff\xfe")
        self.assertEqual(reply.json()["error"], "invalid_json")

    async def test_every_session_is_a_new_uuid(self) -> None:
        first = (await self.post()).json()["session_uuid"]
        second = (await self.post()).json()["session_uuid"]
        self.assertNotEqual(first, second)

    async def test_store_failure_is_a_clean_500(self) -> None:
        def broken(*args):
            raise RuntimeError("disk on fire /secret/path")

        self.store.create_session = broken
        reply = await self.post()
        self.assertEqual(reply.status, 500)
        self.assertEqual(reply.json()["error"], "internal_error")
        self.assertNotIn(b"secret", reply.body)
        self.assertNotIn(b"Traceback", reply.body)
        self.assertEqual(self.tracker.originated, [])
        self.assertEqual(self.pool.get("fs1").tracked, 0)
        self.flushLoggedErrors(RuntimeError)


class IdempotencyTests(APITestCase):
    async def test_replay_returns_the_first_answer(self) -> None:
        first = await self.post(headers={"Idempotency-Key": "k1"})
        again = await self.post(headers={"Idempotency-Key": "k1"})
        self.assertEqual((again.status, again.body), (first.status, first.body))
        self.assertEqual(again.headers["idempotent-replayed"], "true")
        self.assertEqual(again.headers["location"], first.headers["location"])
        self.assertNotIn("idempotent-replayed", first.headers)
        self.assertEqual(len(self.tracker.originated), 1)

    async def test_same_key_other_body_is_422(self) -> None:
        await self.post(headers={"Idempotency-Key": "k1"})
        reply = await self.post({**GOOD, "timeout_sec": 31}, headers={"Idempotency-Key": "k1"})
        self.assertEqual((reply.status, reply.json()["error"]), (422, "idempotency_key_reused"))
        self.assertEqual(len(self.tracker.originated), 1)

    async def test_keys_are_per_app(self) -> None:
        await self.post(headers={"Idempotency-Key": "k1"})
        reply = await self.http.request(
            "POST", "/api/v1/dial",
            {**self.auth(self.other, self.other_key), **JSON_TYPE, "Idempotency-Key": "k1"},
            json.dumps(GOOD).encode(),
        )
        self.assertEqual(reply.status, 202)
        self.assertEqual(len(self.tracker.originated), 2)

    async def test_only_a_202_is_remembered(self) -> None:
        self.link.ready = False
        refused = await self.post(headers={"Idempotency-Key": "k2"})
        self.assertEqual(refused.status, 503)
        self.link.ready = True
        accepted = await self.post(headers={"Idempotency-Key": "k2"})
        self.assertEqual(accepted.status, 202)
        self.assertNotIn("idempotent-replayed", accepted.headers)

    async def test_concurrent_requests_place_one_call(self) -> None:
        replies = await gatherResults(
            [Deferred.fromCoroutine(self.post(headers={"Idempotency-Key": "same"})) for _ in range(8)]
        )
        self.assertEqual({r.status for r in replies}, {202})
        self.assertEqual(len({r.json()["session_uuid"] for r in replies}), 1)
        self.assertEqual(len(self.tracker.originated), 1)
        self.assertEqual(self.pool.get("fs1").tracked, 1)

    async def test_bad_key_is_refused(self) -> None:
        reply = await self.post(headers={"Idempotency-Key": "k" * 256})
        self.assertEqual((reply.status, reply.json()["field"]), (400, "Idempotency-Key"))


class SessionTests(APITestCase):
    async def test_get_shows_the_session(self) -> None:
        metadata = {"b": [1, {"c": "שלום"}], "a": None}
        created = (await self.post({**GOOD, "metadata": metadata})).json()
        reply = await self.http.request("GET", f"/api/v1/dial/{created['session_uuid']}", self.auth())
        self.assertEqual(reply.status, 200)
        body = reply.json()
        self.assertEqual(body["session_uuid"], created["session_uuid"])
        self.assertEqual(body["status"], "dialing")
        self.assertEqual(body["started_at"], "2027-01-15T08:00:00.000Z")
        self.assertEqual((body["to"], body["from"]), ("0527121102", "0721234567"))
        self.assertEqual(list(body["metadata"]), ["b", "a"])
        self.assertEqual(body["metadata"], metadata)
        for name in ("answered_at", "ended_at", "hangup_cause"):
            self.assertIsNone(body[name], name)

    async def test_another_apps_session_is_not_found(self) -> None:
        created = (await self.post()).json()["session_uuid"]
        unknown = "acW68-00000000-0000-4000-8000-000000000000"
        theirs = await self.http.request("GET", f"/api/v1/dial/{created}", self.auth(self.other, self.other_key))
        missing = await self.http.request("GET", f"/api/v1/dial/{unknown}", self.auth())
        malformed = await self.http.request("GET", "/api/v1/dial/..%2F..%2Fetc%2Fpasswd", self.auth())
        self.assertEqual(theirs.status, 404)
        self.assertEqual((theirs.status, theirs.body), (missing.status, missing.body))
        self.assertEqual((malformed.status, malformed.json()["error"]), (404, "not_found"))
        cancel = await self.http.request("DELETE", f"/api/v1/dial/{created}", self.auth(self.other, self.other_key))
        self.assertEqual((cancel.status, cancel.body), (missing.status, missing.body))
        self.assertEqual(self.tracker.hung_up, [])

    async def test_delete_live_then_ended(self) -> None:
        created = (await self.post()).json()["session_uuid"]
        reply = await self.http.request("DELETE", f"/api/v1/dial/{created}", self.auth())
        self.assertEqual((reply.status, reply.json()), (202, {"session_uuid": created, "status": "dialing"}))
        self.assertEqual(self.tracker.hung_up, [created])
        await self.store.record_transition(created, "dialing", "ended", self.clock.seconds(), "ORIGINATOR_CANCEL")
        reply = await self.http.request("DELETE", f"/api/v1/dial/{created}", self.auth())
        self.assertEqual((reply.status, reply.json()), (200, {"session_uuid": created, "status": "ended"}))
        self.assertEqual(self.tracker.hung_up, [created])
        body = (await self.http.request("GET", f"/api/v1/dial/{created}", self.auth())).json()
        self.assertEqual((body["status"], body["hangup_cause"]), ("ended", "ORIGINATOR_CANCEL"))
        self.assertTrue(body["ended_at"].endswith("Z"))

    async def test_get_needs_auth(self) -> None:
        created = (await self.post()).json()["session_uuid"]
        reply = await self.http.request("GET", f"/api/v1/dial/{created}")
        self.assertEqual((reply.status, reply.json()["error"]), (401, "unauthorized"))


class AuthWorkTests(APITestCase):
    async def test_unknown_app_and_wrong_key_do_the_same_work(self) -> None:
        """SPEC §1: the same body, and no shortcut that would time apart an
        unknown app from a wrong key: on every route each hashes the key once
        and compares it once, in constant time, with a digest of the same length."""
        session_uuid = (await self.post()).json()["session_uuid"]
        await self.store.update_app(self.other.app_id, enabled=False)
        hashed: list[str] = []
        compared: list[tuple[int, int]] = []
        hash_api_key, compare_digest = store_module.hash_api_key, hmac.compare_digest

        def counting_hash(api_key: str) -> str:
            hashed.append(api_key)
            return hash_api_key(api_key)

        def counting_compare(a, b) -> bool:
            compared.append((len(a), len(b)))
            return compare_digest(a, b)

        self.patch(store_module, "hash_api_key", counting_hash)
        self.patch(hmac, "compare_digest", counting_compare)
        unknown = "acW68-00000000-0000-4000-8000-000000000000"
        routes = [
            ("POST", "/api/v1/dial", 202),
            ("GET", f"/api/v1/dial/{session_uuid}", 200),
            ("GET", f"/api/v1/dial/{session_uuid}/events", 200),
            ("DELETE", f"/api/v1/dial/{unknown}", 404),
            ("GET", "/api/v1/dial/malformed", 404),
        ]
        cases = {
            "unknown app": ({"X-App-ID": "app_" + "x" * 16, "X-API-Key": self.key}, 401),
            "wrong key": (self.auth(key=self.other_key), 401),
            "disabled app": (self.auth(self.other, self.other_key), 401),
            "right key": (self.auth(), None),
        }
        for method, path, success in routes:
            refusals = set()
            for name, (headers, status) in cases.items():
                hashed.clear()
                compared.clear()
                body = json.dumps(GOOD).encode() if method == "POST" else None
                reply = await self.http.request(method, path, {**headers, **JSON_TYPE}, body)
                what = f"{method} {path}, {name}"
                self.assertEqual(reply.status, status or success, what)
                self.assertEqual(hashed, [headers["X-API-Key"]], what)
                self.assertEqual(compared, [(64, 64)], what)
                if status == 401:
                    refusals.add(reply.body)
            self.assertEqual(len(refusals), 1, (method, path, refusals))


class RoutingTests(APITestCase):
    async def test_unknown_paths_are_json_404(self) -> None:
        for path in ["/", "/api/v1", "/api/v2/dial", "/api/v1/dial/x/y/z", "/nope?x=1"]:
            reply = await self.http.request("GET", path, self.auth())
            self.assertEqual((reply.status, reply.json()["error"]), (404, "not_found"), path)
            self.assertEqual(reply.headers["content-type"], "application/json", path)
            self.assertTrue(reply.headers.get("x-request-id"), path)

    async def test_wrong_methods_are_json_405(self) -> None:
        for method, path in [("GET", "/api/v1/dial"), ("PUT", "/api/v1/dial"), ("PATCH", "/api/v1/dial/acW68-x"), ("POST", "/api/v1/dial/acW68-x")]:
            reply = await self.http.request(method, path, self.auth())
            self.assertEqual((reply.status, reply.json()["error"]), (405, "method_not_allowed"), (method, path))


class EventsTests(APITestCase):
    async def test_events_in_order_with_delivery_state(self) -> None:
        created = (await self.post()).json()["session_uuid"]
        now = self.clock.seconds()
        await self.store.record_transition(created, "dialing", "ringing", now + 1)
        await self.store.record_transition(created, "ringing", "ended", now + 2, "NO_ANSWER")
        reply = await self.http.request("GET", f"/api/v1/dial/{created}/events", self.auth())
        self.assertEqual(reply.status, 200)
        body = reply.json()
        self.assertEqual(body["session_uuid"], created)
        events = body["events"]
        self.assertEqual(
            [(e["sequence"], e["event"], e["status"]) for e in events],
            [(1, "session.dialing", "dialing"), (2, "session.ringing", "ringing"), (3, "call.hangup", "ended")],
        )
        self.assertEqual((events[2]["hangup_cause"], events[2]["duration_sec"]), ("NO_ANSWER", 0))
        self.assertNotIn("hangup_cause", events[0])
        for event in events:
            self.assertEqual((event["delivery_state"], event["attempts"], event["last_error"]), ("pending", 0, None))
            self.assertTrue(event["id"].startswith("evt_"))
            self.assertTrue(event["occurred_at"].endswith("Z"))

    async def test_events_of_another_app_are_not_found(self) -> None:
        created = (await self.post()).json()["session_uuid"]
        reply = await self.http.request("GET", f"/api/v1/dial/{created}/events", self.auth(self.other, self.other_key))
        self.assertEqual((reply.status, reply.json()["error"]), (404, "not_found"))


def limit_headers(reply) -> tuple[str | None, str | None, str | None]:
    return tuple(reply.headers.get(f"x-ratelimit-{name}") for name in ("limit", "remaining", "reset"))


class RateLimitTests(APITestCase):
    async def test_headers_on_a_202(self) -> None:
        reply = await self.post()
        self.assertEqual(reply.status, 202)
        self.assertEqual(limit_headers(reply), ("10", "9", "1"))

    async def test_429_when_the_bucket_is_empty(self) -> None:
        await self.store.update_app(self.app.app_id, dials_per_sec=0.5, burst=2)
        first, second = await self.post(), await self.post()
        self.assertEqual((first.status, second.status), (202, 202))
        self.assertEqual([limit_headers(first), limit_headers(second)], [("2", "1", "2"), ("2", "0", "4")])
        refused = await self.post()
        self.assertEqual(refused.status, 429)
        self.assertEqual(
            refused.json(),
            {"error": "rate_limited", "message": "too many dials per second for this app; retry after 2 s",
             "retry_after_sec": 2, "limit": "dials_per_sec"},
        )
        self.assertEqual(refused.headers["retry-after"], "2")
        raw = await treq.post(
            self.http.base_url + "/api/v1/dial", json.dumps(GOOD).encode(),
            headers={**self.auth(), **JSON_TYPE}, pool=self.http.pool,
        )
        await raw.content()
        self.assertEqual((raw.code, raw.phrase), (429, b"Too Many Requests"))
        self.assertEqual(limit_headers(refused), ("2", "0", "4"))
        self.assertEqual(refused.headers["content-type"], "application/json")
        self.assertTrue(refused.headers["x-request-id"])
        # Nothing stored, nothing placed, nothing held.
        self.assertEqual(len(self.tracker.originated), 2)
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 2)
        self.assertEqual(self.pool.get("fs1").tracked, 2)
        self.assertEqual(self.api.reservations.held(self.app.app_id), 0)
        # Retry-After is true: after it, the dial goes through.
        self.clock.advance(2)
        self.assertEqual((await self.post()).status, 202)

    async def test_check_order_caller_id_then_limits_then_capacity(self) -> None:
        await self.store.update_app(self.app.app_id, dials_per_sec=0.5, burst=1)
        self.assertEqual((await self.post()).status, 202)
        self.link.ready = False
        # 403 before 429; the 403 carries a peek at the bucket.
        reply = await self.post({"to": "0527121102", "from": "0731234567"})
        self.assertEqual((reply.status, reply.json()["error"]), (403, "cid_not_allowed"))
        self.assertEqual(limit_headers(reply), ("1", "0", "2"))
        # 429 before 503.
        reply = await self.post()
        self.assertEqual((reply.status, reply.json()["limit"]), (429, "dials_per_sec"))
        # With a token, capacity decides: 503, with the limiter's headers.
        self.clock.advance(2)
        reply = await self.post()
        self.assertEqual((reply.status, reply.json()["error"]), (503, "no_fs_capacity"))
        self.assertEqual(limit_headers(reply), ("1", "0", "2"))
        self.assertEqual(len(self.tracker.originated), 1)

    async def test_answers_before_the_limiter_peek_and_take_nothing(self) -> None:
        self.assertEqual(limit_headers(await self.post()), ("10", "9", "1"))
        for body, status in [({"to": "100", "from": "0721234567"}, 400), ({**GOOD, "timeout": 1}, 400)]:
            reply = await self.post(body)
            self.assertEqual((reply.status, limit_headers(reply)), (status, ("10", "9", "1")), body)
        reply = await self.post(headers={"Content-Type": "text/plain"})
        self.assertEqual((reply.status, limit_headers(reply)), (415, ("10", "9", "1")))
        # No app, no headers.
        reply = await self.http.request("POST", "/api/v1/dial", JSON_TYPE, json.dumps(GOOD).encode())
        self.assertEqual((reply.status, limit_headers(reply)), (401, (None, None, None)))
        self.assertEqual(limit_headers(await self.post()), ("10", "8", "1"))

    async def test_a_replay_is_answered_before_the_limiter(self) -> None:
        await self.store.update_app(self.app.app_id, dials_per_sec=0.5, burst=1)
        first = await self.post(headers={"Idempotency-Key": "k1"})
        again = await self.post(headers={"Idempotency-Key": "k1"})
        self.assertEqual((first.status, again.status), (202, 202))
        self.assertEqual(again.headers["idempotent-replayed"], "true")
        self.assertEqual(limit_headers(again), ("1", "0", "2"))
        self.assertEqual((await self.post()).status, 429)

    async def test_max_concurrent_and_an_ended_session_frees_its_slot_at_once(self) -> None:
        await self.store.update_app(self.app.app_id, max_concurrent=1)
        created = (await self.post()).json()["session_uuid"]
        refused = await self.post()
        self.assertEqual(refused.status, 429)
        self.assertEqual((refused.json()["limit"], refused.json()["retry_after_sec"]), ("max_concurrent", 1))
        self.assertEqual(refused.headers["retry-after"], "1")
        self.assertEqual(limit_headers(refused), ("10", "9", "1"), "a refusal takes no token")
        # Other apps are not held back.
        other = await self.http.request(
            "POST", "/api/v1/dial", {**self.auth(self.other, self.other_key), **JSON_TYPE}, json.dumps(GOOD).encode()
        )
        self.assertEqual(other.status, 202)
        await self.store.record_transition(created, "dialing", "ended", self.clock.seconds(), "USER_BUSY")
        self.assertEqual((await self.post()).status, 202)

    async def test_concurrent_requests_cannot_both_take_the_last_slot(self) -> None:
        await self.store.update_app(self.app.app_id, max_concurrent=2)
        replies = await gatherResults([Deferred.fromCoroutine(self.post()) for _ in range(6)])
        self.assertEqual(sorted(r.status for r in replies), [202, 202, 429, 429, 429, 429])
        self.assertEqual(
            {r.json()["limit"] for r in replies if r.status == 429}, {"max_concurrent"}
        )
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 2)
        self.assertEqual(self.api.reservations.held(self.app.app_id), 0)

    async def test_per_app_overrides_change_the_limits(self) -> None:
        await self.store.update_app(self.app.app_id, burst=3, dials_per_sec=1.0)
        self.assertEqual(limit_headers(await self.post()), ("3", "2", "1"))
        await self.store.update_app(self.app.app_id, burst=None, dials_per_sec=None)
        self.assertEqual(limit_headers(await self.post())[0], "10")

    async def test_a_failed_request_releases_its_reservation(self) -> None:
        def broken(*args):
            raise RuntimeError("disk on fire")

        self.store.create_session = broken
        reply = await self.post()
        self.assertEqual(reply.status, 500)
        self.assertEqual(limit_headers(reply), ("10", "9", "1"))
        self.assertEqual(self.api.reservations.held(self.app.app_id), 0)
        self.flushLoggedErrors(RuntimeError)

    async def test_redis_down_is_not_a_500(self) -> None:
        import socket

        from dialgw.limits import RedisConnection, RedisLimiter

        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        limiter = RedisLimiter(RedisConnection(f"redis://127.0.0.1:{port}/0", self.clock), MemoryLimiter(self.clock))
        self.addCleanup(limiter.close)
        api = DialAPI(
            store=self.store, tracker=self.tracker, pool=self.pool, node_id="acW68", clock=self.clock,
            limiter=limiter, ratelimit=self.ratelimit,
        )
        self.http = HTTPClient(self, await listen_http(self, api.resource()))
        reply = await self.post()
        self.assertEqual((reply.status, limit_headers(reply)), (202, ("10", "9", "1")))
        self.assertTrue(limiter.degraded)
        self.assertEqual((await self.post({"to": "1"})).status, 400)


class RedisAPITests(APITestCase):
    async def test_redis_killed_mid_test_dials_are_still_answered(self) -> None:
        from dialgw.limits import RedisConnection, RedisLimiter
        from tests.redis_server import RedisServer

        redis = RedisServer(self)
        redis.start()
        limiter = RedisLimiter(RedisConnection(redis.url, self.clock), MemoryLimiter(self.clock), probe_interval=3.0)
        self.addCleanup(limiter.close)
        api = DialAPI(
            store=self.store, tracker=self.tracker, pool=self.pool, node_id="acW68", clock=self.clock,
            limiter=limiter, ratelimit=self.ratelimit,
        )
        self.http = HTTPClient(self, await listen_http(self, api.resource()))
        await self.store.update_app(self.app.app_id, dials_per_sec=0.01, burst=2)
        self.assertEqual([(await self.post()).status for _ in range(3)], [202, 202, 429])
        redis.kill()
        # The local limiter stands in (a full bucket of its own): never a 500.
        self.assertEqual([(await self.post()).status for _ in range(3)], [202, 202, 429])
        self.assertTrue(limiter.degraded)
        redis.start()
        self.clock.advance(3)
        # Redis is back (empty: it keeps nothing on disk), and decides again.
        self.assertEqual([(await self.post()).status for _ in range(3)], [202, 202, 429])
        self.assertFalse(limiter.degraded)
        self.assertEqual(redis.command("EXISTS", f"dialgw:ratelimit:{{{self.app.app_id}}}:bucket"), "1")
        self.assertEqual(len(self.tracker.originated), 6)


class CooldownAPITests(APITestCase):
    ratelimit = RateLimitSettings(dials_per_sec=1.0, burst=1, cooldown_after=2, cooldown_window_sec=10,
                                  cooldown_sec=30)

    async def test_cooldown_over_http(self) -> None:
        self.assertEqual((await self.post()).status, 202)
        limits = [(await self.post()).json()["limit"] for _ in range(3)]
        self.assertEqual(limits, ["dials_per_sec", "dials_per_sec", "cooldown"])
        self.clock.advance(12)
        reply = await self.post()
        self.assertEqual((reply.status, reply.json()["limit"], reply.headers["retry-after"]), (429, "cooldown", "18"))
        self.assertEqual(reply.json()["retry_after_sec"], 18)
        self.assertEqual(reply.json()["message"], "too many refused dials: this app is cooling down; retry after 18 s")
        self.clock.advance(18)
        self.assertEqual((await self.post()).status, 202)
        self.assertEqual(len(self.tracker.originated), 2)
