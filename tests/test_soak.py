"""The short soak (`tests.soak`), part of ``make test``: a few hundred calls
of every scenario through a whole gateway, with ESL cuts, a switch restart
and a receiver that fails a share of the webhooks. ``make soak`` runs the
long one."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.soak import NATURAL, run_soak

log = Logger()


class ShortSoakTests(TestCase):
    timeout = 240

    async def test_every_session_ends_once_and_every_webhook_arrives_in_order(self) -> None:
        # run_soak itself fails on a broken promise (a session not ended
        # exactly once, a webhook lost or out of order, the heap growing);
        # here: that the run did exercise what it claims to.
        figures = await run_soak(self, calls=300, seed=2026, warmup=100, cut_every=60)
        self.assertEqual((figures.calls, figures.sessions_ended), (300, 300))
        self.assertEqual(set(figures.scenarios), set(NATURAL))
        self.assertGreaterEqual(figures.cuts, 2)
        self.assertGreaterEqual(figures.restarts, 1)
        self.assertGreater(figures.sessions_hit_by_faults, 0)
        self.assertGreater(figures.deletes, 0)
        self.assertEqual(set(figures.receiver_faults), {"500", "503", "drop", "hang"})
        self.assertGreater(figures.webhook_retries, 0)
        self.assertGreaterEqual(figures.webhooks, 2 * figures.calls)
        for line in figures.lines():
            log.info("soak: {line}", line=line)
