"""The short soak, part of ``make test``: ``python -m tests.soak`` with 300
calls of every scenario through a whole gateway, the faults of
`SHORT_SOAK_FAULTS` and a receiver that fails a share of the webhooks
(``make soak`` runs 5000 calls with every fault, on both engines).

It runs in a process of its own, as ``make soak`` does: its heap check
must not see trial's (a ``--jobs`` worker keeps each log event of a test
until the test ends).
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.soak import NATURAL

log = Logger()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The faults (`tests.chaos.FAULTS`) the short soak injects: those whose
#: promises hold on the current code. Add one when its fix lands:
#: ``store`` (issue 12 defect 1: a database outage strands calls),
#: ``blackhole`` (defect 2: one app's hung receiver delays every other
#: app; visible from ~800 calls), ``kill`` (needs defect 4's true times).
SHORT_SOAK_FAULTS = ("esl", "restart")
#: Checks (`tests.soak.CHECKS`) not yet enforced by the short soak, with
#: why: ``timestamps`` fails after every ESL cut until defect 4 is fixed
#: (ended_at and answered_at are when the gateway noticed, not the
#: switch's times, so durations exceed max_duration_sec).
SHORT_SOAK_SKIPPED_CHECKS = ("timestamps",)


class ShortSoakTests(TestCase):
    timeout = 240

    async def test_every_session_ends_once_and_every_webhook_arrives_in_order(self) -> None:
        # The soak itself fails (status 1) on a broken promise: a session not
        # ended exactly once or with a wrong cause, a webhook lost or out of
        # order, something left pending, the heap growing. Here: that it
        # passed, and did exercise what it claims to.
        out, err, status = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "tests.soak", "--calls", "300", "--warmup", "100", "--cut-every", "60",
             "--seed", "2026", "--faults", ",".join(SHORT_SOAK_FAULTS),
             "--skip-checks", ",".join(SHORT_SOAK_SKIPPED_CHECKS), "--json"],
            env={**os.environ, "PYTHONPATH": ROOT},
            path=ROOT,
            reactor=reactor,
        )
        self.assertEqual(status, 0, err.decode("utf-8", "replace")[-4000:])
        *lines, last = out.decode().splitlines()
        for line in lines:
            log.info("{line}", line=line)
        figures = json.loads(last)
        self.assertEqual((figures["calls"], figures["sessions_ended"]), (300, 300))
        self.assertEqual(figures["failed_checks"], [])
        self.assertEqual(figures["faults"], list(SHORT_SOAK_FAULTS))
        self.assertEqual(set(figures["scenarios"]), set(NATURAL))
        self.assertGreaterEqual(figures["cuts"], 2)
        self.assertGreaterEqual(figures["restarts"], 1)
        self.assertGreater(figures["sessions_hit_by_faults"], 0)
        self.assertGreater(figures["deletes"], 0)
        self.assertEqual(set(figures["receiver_faults"]), {"500", "503", "drop", "hang"})
        self.assertGreater(figures["webhook_retries"], 0)
        self.assertGreaterEqual(figures["webhooks"], 2 * figures["calls"])
        self.assertGreater(figures["heap_end"]["blocks"], 0)
