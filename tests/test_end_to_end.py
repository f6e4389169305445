"""Every simulator scenario end to end: HTTP -> store -> ESL over TCP ->
simulator -> ESL events -> state machine -> store, checked through the API."""

from __future__ import annotations

from tests.gateway import GatewayTestCase


class ScenarioTests(GatewayTestCase):
    async def test_answer_then_remote_hangup(self) -> None:
        h = self.h
        sid = await h.placed("0521000001")
        await h.advance(0.3)
        await h.status(sid, "ringing")
        await h.advance(0.8)
        await h.status(sid, "answered")
        await h.advance(3.2)
        await h.status(sid, "ended")
        self.assertEqual(
            await h.history(sid),
            [("dialing", None), ("ringing", None), ("answered", None), ("ended", "NORMAL_CLEARING")],
        )
        body = await h.get(sid)
        self.assertEqual((body["status"], body["hangup_cause"]), ("ended", "NORMAL_CLEARING"))
        session = await h.store.get_session(sid)
        self.assertLess(abs(session.answered_at - session.started_at - 1.0), 0.15)
        self.assertLess(abs(session.ended_at - session.answered_at - 3.0), 0.15)
        self.assertTrue(body["answered_at"].startswith("2027-01-15T08:00:01"))
        events = await h.store.session_events(sid)
        self.assertEqual(events[-1].duration_sec, 3)
        self.assertEqual(h.gateway.pool.get("fs1").tracked, 0)

    async def test_busy(self) -> None:
        sid = await self.h.placed("0521000002")
        await self.h.advance(0.6)
        await self.h.status(sid, "ended")
        self.assertEqual(await self.h.history(sid), [("dialing", None), ("ended", "USER_BUSY")])

    async def test_no_answer_at_the_ring_timeout(self) -> None:
        sid = await self.h.placed("0521000003", timeout_sec=4)
        await self.h.advance(0.3)
        await self.h.status(sid, "ringing")
        await self.h.advance(4.0, step=0.25)
        session = await self.h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "NO_ANSWER")
        self.assertLessEqual(session.ended_at - session.started_at, 4.5)
        self.assertEqual(
            await self.h.history(sid), [("dialing", None), ("ringing", None), ("ended", "NO_ANSWER")]
        )

    async def test_early_media_then_answer(self) -> None:
        h = self.h
        sid = await h.placed("0521000004")
        await h.advance(0.3)
        await h.status(sid, "early_media")
        self.assertEqual((await h.get(sid))["status"], "early_media")
        await h.advance(1.3)
        await h.status(sid, "answered")
        await h.advance(3.2)
        await h.status(sid, "ended")
        self.assertEqual(
            await h.history(sid),
            [("dialing", None), ("early_media", None), ("answered", None), ("ended", "NORMAL_CLEARING")],
        )

    async def test_rejected(self) -> None:
        sid = await self.h.placed("0521000005")
        await self.h.advance(0.6)
        await self.h.status(sid, "ended")
        self.assertEqual(await self.h.history(sid), [("dialing", None), ("ended", "CALL_REJECTED")])

    async def test_failure_without_channel_events(self) -> None:
        sid = await self.h.placed("0521000007")
        await self.h.status(sid, "ended")
        self.assertEqual(
            await self.h.history(sid), [("dialing", None), ("ended", "DESTINATION_OUT_OF_ORDER")]
        )

    async def test_max_duration_ends_with_allotted_timeout(self) -> None:
        h = self.h
        sid = await h.placed("0521000006", max_duration_sec=3)
        await h.advance(1.1)
        await h.status(sid, "answered")
        await h.advance(3.2)
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "ALLOTTED_TIMEOUT")
        self.assertLess(abs(session.ended_at - session.answered_at - 3.0), 0.15)

    async def test_delete_while_ringing_cancels(self) -> None:
        h = self.h
        sid = await h.placed("0521000003")
        await h.advance(0.3)
        await h.status(sid, "ringing")
        reply = await h.delete(sid)
        self.assertEqual((reply.status, reply.json()["status"]), (202, "ringing"))
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "ORIGINATOR_CANCEL")
        self.assertNotIn(sid[6:], h.simulator.calls)
        again = await h.delete(sid)
        self.assertEqual((again.status, again.json()), (200, {"session_uuid": sid, "status": "ended"}))

    async def test_delete_after_answer_clears(self) -> None:
        h = self.h
        sid = await h.placed("0521000006")
        await h.advance(1.1)
        await h.status(sid, "answered")
        reply = await h.delete(sid)
        self.assertEqual((reply.status, reply.json()["status"]), (202, "answered"))
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "NORMAL_CLEARING")

    async def test_delete_right_after_the_dial(self) -> None:
        h = self.h
        sid = (await h.dial("0521000006")).json()["session_uuid"]
        reply = await h.delete(sid)
        self.assertEqual(reply.status, 202)
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "ORIGINATOR_CANCEL")
        await h.advance(2.0)
        self.assertNotIn(sid[6:], h.simulator.calls)

    async def test_what_reaches_the_switch(self) -> None:
        """Only validated digits and our own ids: never metadata or headers."""
        h = self.h
        evil = "x\n\napi system rm -rf /\n\n},{'\u2028&|\x00"
        reply = await h.http.request(
            "POST", "/api/v1/dial",
            {**h.auth(), "Content-Type": "application/json", "Idempotency-Key": "k}{,'&|",
             "X-Request-ID": "rid},{'"},
            ('{"to":"0521000006","from":"0721234567","metadata":{"n":%s}}'
             % __import__("json").dumps(evil)).encode(),
        )
        self.assertEqual(reply.status, 202)
        sid = reply.json()["session_uuid"]
        await h.until(lambda: sid[6:] in h.simulator.calls)
        sent = bytes(h.simulator.received)
        self.assertNotIn(b"system", sent)
        self.assertNotIn(b"rid", sent)
        self.assertNotIn(b"\x00", sent)
        self.assertNotIn(b"\r", sent)
        commands = [c for c in sent.split(b"\n\n") if c]
        originates = [c for c in commands if b"originate" in c]
        self.assertEqual(len(originates), 1)
        line, job = originates[0].split(b"\n")
        self.assertTrue(line.startswith(b"bgapi originate {origination_uuid=" + sid[6:].encode()))
        self.assertTrue(line.endswith(b"}sofia/gateway/trunk/0521000006 &park()"))
        self.assertRegex(job.decode(), r"^Job-UUID: [0-9a-f-]{36}$")
        self.assertEqual(line.count(b"{"), 1)
        self.assertEqual(line.count(b"}"), 1)


class ConnectionTests(GatewayTestCase):
    async def test_no_node_connected_is_503(self) -> None:
        h = self.h
        await h.stop_simulator()
        await h.node_ready(ready=False)
        reply = await h.dial("0521000001", expect=503)
        self.assertEqual(reply.json()["error"], "no_fs_capacity")
        self.assertGreaterEqual(int(reply.headers["retry-after"]), 1)
        self.assertEqual(await h.store.count_live_sessions(h.app.app_id), 0)

    async def test_reconnects_after_a_drop_and_dials_again(self) -> None:
        h = self.h
        h.simulator.drop_connections()
        await h.node_ready(ready=False)
        await h.advance(2.0, step=0.25)  # the reconnect backoff runs on the clock
        await h.node_ready()
        sid = await h.placed("0521000002")
        await h.advance(0.6)
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "USER_BUSY")

    async def test_call_progress_while_disconnected_is_caught_up(self) -> None:
        h = self.h
        answered = await h.placed("0521000006")
        vanished = await h.placed("0521000001")
        await h.stop_simulator()  # no reconnect possible meanwhile
        await h.node_ready(ready=False)
        # While the gateway is away: one call is answered, the other answered
        # and hung up; their events are lost.
        await h.advance(5.0, step=0.25)
        await h.start_simulator(self.sim_port)
        await h.advance(35.0, step=0.5)  # reconnect backoff
        await h.node_ready()
        first = await h.status(answered, "answered")
        second = await h.status(vanished, "ended")
        self.assertEqual(first.status, "answered")
        self.assertEqual(second.hangup_cause, "NORMAL_UNSPECIFIED")
        self.assertEqual(await h.history(vanished), [("dialing", None), ("ended", "NORMAL_UNSPECIFIED")])

    async def test_switch_restart_ends_every_session_once(self) -> None:
        h = self.h
        sessions = [await h.placed("0521000006") for _ in range(3)]
        await h.advance(1.1)
        for sid in sessions:
            await h.status(sid, "answered")
        h.simulator.restart()
        await h.node_ready(ready=False)
        await h.advance(2.0, step=0.25)
        await h.node_ready()
        for sid in sessions:
            await h.status(sid, "ended")
            self.assertEqual(
                await h.history(sid),
                [("dialing", None), ("ringing", None), ("answered", None), ("ended", "NORMAL_UNSPECIFIED")],
            )
        self.assertEqual(h.gateway.pool.get("fs1").tracked, 0)

    async def test_silent_node_is_replaced(self) -> None:
        h = self.h
        h.simulator.silent = True
        await h.advance(61.0, step=1.0)
        await h.node_ready(ready=False)
        await h.dial("0521000001", expect=503)
        h.simulator.silent = False
        await h.advance(2.0, step=0.25)
        await h.node_ready()
        await h.dial("0521000001")


class RestartTests(GatewayTestCase):
    async def test_a_new_gateway_on_the_same_database_adopts_live_calls(self) -> None:
        h = self.h
        sid = await h.placed("0521000006")
        await h.advance(1.1)
        await h.status(sid, "answered")
        await h.stop_gateway()
        self.assertIn(sid[6:], h.simulator.calls)  # the call goes on without us
        await h.start_gateway(self.sim_port)
        self.assertEqual(h.gateway.pool.get("fs1").tracked, 1)
        reply = await h.delete(sid)
        self.assertEqual(reply.status, 202)
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "NORMAL_CLEARING")
        self.assertEqual(
            await h.history(sid),
            [("dialing", None), ("ringing", None), ("answered", None), ("ended", "NORMAL_CLEARING")],
        )
