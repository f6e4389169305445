"""Retry rules: which answers are retried, backoff bounds, Retry-After, limits."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.webhooks.policy import (
    backoff_bounds,
    backoff_delay,
    classify,
    next_attempt,
    parse_retry_after,
)

NOW = 1795701600.0
DAY = 86400.0


class FixedRandom(random.Random):
    """``uniform`` returns one end of the range: the extremes of the jitter."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a, b):
        return a + (b - a) * self.fraction


def schedule(**changes):
    arguments = dict(
        attempts=1,
        first_attempt_at=NOW,
        created_at=NOW,
        now=NOW,
        max_attempts=10,
        max_age_sec=DAY,
        retry_after=None,
        rng=random.Random(1),
    )
    arguments.update(changes)
    return next_attempt(**arguments)


class ClassifyTests(SynchronousTestCase):
    def test_table(self):
        table = [
            (None, "retry"),
            (200, "delivered"), (201, "delivered"), (204, "delivered"), (299, "delivered"),
            (408, "retry"), (429, "retry"),
            (500, "retry"), (502, "retry"), (503, "retry"), (599, "retry"),
            (100, "failed"), (199, "failed"),
            (301, "failed"), (302, "failed"), (307, "failed"), (308, "failed"),
            (400, "failed"), (401, "failed"), (403, "failed"), (404, "failed"),
            (409, "failed"), (410, "failed"), (413, "failed"), (499, "failed"),
            (600, "failed"), (0, "failed"),
        ]
        for status, outcome in table:
            with self.subTest(status=status):
                self.assertEqual(classify(status), outcome, f"status {status}")


class BackoffTests(SynchronousTestCase):
    def test_bounds_table(self):
        table = [
            (1, (1.0, 2.0)), (2, (1.0, 4.0)), (3, (1.0, 8.0)), (8, (1.0, 256.0)),
            (9, (1.0, 300.0)), (10, (1.0, 300.0)), (1000, (1.0, 300.0)),
        ]
        for attempts, bounds in table:
            with self.subTest(attempts=attempts):
                self.assertEqual(backoff_bounds(attempts), bounds)

    def test_extremes_of_the_jitter(self):
        for attempts in (1, 2, 5, 9, 50):
            low, high = backoff_bounds(attempts)
            with self.subTest(attempts=attempts):
                self.assertEqual(backoff_delay(attempts, FixedRandom(0.0)), low)
                self.assertEqual(backoff_delay(attempts, FixedRandom(1.0)), high)

    def test_attempts_count_from_one(self):
        self.assertRaises(ValueError, backoff_bounds, 0)
        self.assertRaises(ValueError, backoff_delay, 0, random.Random(0))

    def test_jitter_spreads_delays(self):
        rng = random.Random(7)
        delays = {round(backoff_delay(6, rng), 3) for _ in range(50)}
        self.assertGreater(len(delays), 40)

    @settings(max_examples=500, deadline=None)
    @given(
        attempts=st.integers(min_value=1, max_value=10**4),
        seed=st.integers(),
        base=st.floats(min_value=0.01, max_value=60.0),
        cap=st.floats(min_value=1.0, max_value=3600.0),
    )
    def test_delay_always_within_bounds(self, attempts, seed, base, cap):
        low, high = backoff_bounds(attempts, base, cap)
        delay = backoff_delay(attempts, random.Random(seed), base, cap)
        self.assertTrue(low <= delay <= high, (low, delay, high))
        self.assertGreaterEqual(delay, base)
        self.assertLessEqual(delay, max(cap, base))

    @given(attempts=st.integers(min_value=1, max_value=10**4), seed=st.integers())
    def test_default_delay_between_one_second_and_five_minutes(self, attempts, seed):
        delay = backoff_delay(attempts, random.Random(seed))
        self.assertTrue(1.0 <= delay <= min(300.0, 2.0**min(attempts, 20)), delay)


class RetryAfterTests(SynchronousTestCase):
    def test_table(self):
        def http_date(epoch):
            return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)

        table = [
            ("missing", None, None),
            ("zero", "0", 0.0),
            ("seconds", "120", 120.0),
            ("spaces", "  30 ", 30.0),
            ("capped at an hour", "86400", 3600.0),
            ("huge", "9" * 400, 3600.0),
            ("date ahead", http_date(NOW + 90), 90.0),
            ("date past", http_date(NOW - 90), 0.0),
            ("date far ahead", http_date(NOW + 5 * DAY), 3600.0),
            ("date -0000", "Thu, 26 Nov 2026 14:01:00 -0000", 60.0),
            ("date with zone", "Thu, 26 Nov 2026 16:01:00 +0200", 60.0),
            ("empty", "", None),
            ("negative", "-5", None),
            ("fraction", "1.5", None),
            ("words", "soon", None),
            ("unicode digits", "١٢", None),
            ("half a date", "Thu, 26 Nov", None),
        ]
        for name, value, expected in table:
            with self.subTest(name):
                self.assertEqual(parse_retry_after(value, NOW), expected, name)

    @given(st.text())
    def test_garbage_never_raises(self, value):
        result = parse_retry_after(value, NOW)
        self.assertTrue(result is None or 0.0 <= result <= 3600.0, result)


class NextAttemptTests(SynchronousTestCase):
    def test_first_retry_within_one_to_two_seconds(self):
        at = schedule(attempts=1)
        self.assertTrue(NOW + 1.0 <= at <= NOW + 2.0, at - NOW)

    def test_retry_after_replaces_backoff(self):
        self.assertEqual(schedule(attempts=9, retry_after=2.0), NOW + 2.0)
        self.assertEqual(schedule(attempts=1, retry_after=600.0), NOW + 600.0)

    def test_retry_after_never_below_one_second(self):
        self.assertEqual(schedule(retry_after=0.0), NOW + 1.0)
        self.assertEqual(schedule(retry_after=0.2), NOW + 1.0)

    def test_max_attempts_ends_it(self):
        self.assertIsNotNone(schedule(attempts=9, max_attempts=10))
        self.assertIsNone(schedule(attempts=10, max_attempts=10))
        self.assertIsNone(schedule(attempts=11, max_attempts=10))
        self.assertIsNone(schedule(attempts=1, max_attempts=1, retry_after=5.0))

    def test_max_age_ends_it(self):
        created = NOW - DAY + 10.0
        self.assertEqual(schedule(created_at=created, retry_after=10.0), NOW + 10.0)
        self.assertIsNone(schedule(created_at=created, retry_after=11.0))
        self.assertIsNone(schedule(created_at=NOW - DAY))

    def test_age_counts_from_creation_not_first_attempt(self):
        self.assertIsNone(
            schedule(created_at=NOW - DAY, first_attempt_at=NOW - 5.0, retry_after=1.0)
        )

    @settings(max_examples=500, deadline=None)
    @given(
        attempts=st.integers(min_value=1, max_value=30),
        max_attempts=st.integers(min_value=1, max_value=30),
        age=st.floats(min_value=0.0, max_value=2 * DAY),
        max_age_sec=st.floats(min_value=60.0, max_value=DAY),
        retry_after=st.none() | st.floats(min_value=0.0, max_value=3600.0),
        seed=st.integers(),
    )
    def test_properties(self, attempts, max_attempts, age, max_age_sec, retry_after, seed):
        created = NOW - age
        at = schedule(
            attempts=attempts,
            created_at=created,
            first_attempt_at=created,
            max_attempts=max_attempts,
            max_age_sec=max_age_sec,
            retry_after=retry_after,
            rng=random.Random(seed),
        )
        if attempts >= max_attempts:
            self.assertIsNone(at)
            return
        deadline = created + max_age_sec
        if retry_after is not None:
            expected = NOW + max(retry_after, 1.0)
            self.assertEqual(at, expected if expected <= deadline else None)
            return
        low, high = backoff_bounds(attempts)
        if at is None:
            # Only the age limit may end it here, and only if the draw could pass it.
            self.assertGreater(NOW + high, deadline)
            return
        self.assertLessEqual(at, deadline)
        self.assertTrue(NOW + low <= at <= NOW + high, at - NOW)
