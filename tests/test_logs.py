"""dialgw.logs writes exactly the lines twistd's text observer writes."""

from __future__ import annotations

import io
import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel, textFileLogObserver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dialgw import service
from dialgw.logs import text_log_observer

NOW = 1_800_000_000.25


def both(event: dict) -> tuple[str, str]:
    """What twistd's observer and ours write for ``event``."""
    theirs, ours = io.StringIO(), io.StringIO()
    textFileLogObserver(theirs)(dict(event))
    text_log_observer(ours)(dict(event))
    return theirs.getvalue(), ours.getvalue()


def event(log_format: str | None, **fields) -> dict:
    base = {"log_time": NOW, "log_level": LogLevel.info, "log_namespace": "dialgw.calls.tracker"}
    if log_format is not None:
        base["log_format"] = log_format
    return {**base, **fields}


class SameLinesTests(SynchronousTestCase):
    def test_the_lines_of_every_kind_of_event(self) -> None:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            failure = Failure()
        cases = {
            "plain": event("webhook {event_id} attempt {attempt}: {outcome}", event_id="evt_1", attempt=2,
                           outcome="delivered"),
            "a system": event("hello", log_system="HTTPChannel,0,127.0.0.1"),
            "no level": {k: v for k, v in event("x").items() if k != "log_level"},
            "no time": {k: v for k, v in event("x").items() if k != "log_time"},
            "a newline": event("two {what}", what="lines\nhere"),
            "braces in a value": event("value {v}", v="{not a field}"),
            "repr and format spec": event("{a!r} {b:>5}", a="x", b=3),
            "attribute and index": event("{e.real} {d[k]}", e=3, d={"k": "v"}),
            "a missing field": event("{missing}"),
            "a call": event("{f()}", f=lambda: "called"),
            "a failure": event("it broke", log_failure=failure),
            "empty text": event(""),
            "no format": event(None),
            "legacy text": event("{log_text}", log_text="from log.msg"),
        }
        for name, case in cases.items():
            theirs, ours = both(case)
            self.assertEqual(ours, theirs, name)

    @given(st.text(), st.text(), st.floats(min_value=0, max_value=4e9))
    def test_any_text_at_any_time(self, value: str, system: str, when: float) -> None:
        theirs, ours = both(event("got {value}", value=value, log_system=system, log_time=when))
        self.assertEqual(ours, theirs)

    def test_a_time_that_rounds_into_the_next_second(self) -> None:
        for when in (1.9999999, NOW + 0.9999996, 59.9999995):
            theirs, ours = both(event("x", log_time=when))
            self.assertEqual(ours, theirs, when)

    def test_the_stamp_changes_with_the_second(self) -> None:
        out = io.StringIO()
        observer = text_log_observer(out)
        for when in (NOW, NOW + 0.5, NOW + 1.0):
            observer(event("tick", log_time=when))
        stamps = [line.split(" ")[0] for line in out.getvalue().splitlines()]
        self.assertEqual(stamps[0], stamps[1])
        self.assertNotEqual(stamps[1], stamps[2])


class WhoWritesTheLogTests(SynchronousTestCase):
    def service_for(self, **twistd) -> service.GatewayService:
        config = os.path.join(os.path.dirname(__file__), "..", "etc", "dialgw-dev.conf")
        options = service.Options()
        options.parent = {"nodaemon": False, "logfile": None, "syslog": False, "logger": None, **twistd}
        options.parseOptions(["--config", config])
        return service.makeService(options)

    def test_only_a_foreground_daemon_logging_to_stdout_writes_its_own_lines(self) -> None:
        self.assertTrue(self.service_for(nodaemon=True).text_log_to_stdout)
        self.assertTrue(self.service_for(nodaemon=True, logfile="-").text_log_to_stdout)
        self.assertFalse(self.service_for(nodaemon=True, logfile="/var/log/x.log").text_log_to_stdout)
        self.assertFalse(self.service_for(nodaemon=True, syslog=True).text_log_to_stdout)
        self.assertFalse(self.service_for(nodaemon=True, logger=object()).text_log_to_stdout)
        self.assertFalse(self.service_for().text_log_to_stdout)
