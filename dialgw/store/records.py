"""What the store keeps: frozen records, timestamps as epoch seconds."""

from __future__ import annotations

import attrs

# Statuses, their order and their webhook events are the state machine's.
# (Re-exported: the redundant aliases tell ruff and mypy the import is used.)
from dialgw.calls.machine import EVENT_FOR_STATUS as EVENT_FOR_STATUS
from dialgw.calls.machine import STATUSES as STATUSES

#: Webhook delivery states of a session event (the outbox).
DELIVERY_STATES = ("pending", "delivered", "failed")

#: How long an old webhook secret keeps signing after a rotation, and how
#: long an Idempotency-Key is remembered.
PREVIOUS_SECRET_TTL_SEC = 24 * 3600
IDEMPOTENCY_TTL_SEC = 24 * 3600


@attrs.frozen
class App:
    """An application allowed to dial. The API key itself is never kept."""

    app_id: str
    name: str
    webhook_url: str
    webhook_secret: str
    previous_webhook_secret: str | None
    previous_secret_expires_at: float | None
    enabled: bool
    caller_ids: frozenset[str]
    dials_per_sec: float | None
    burst: int | None
    max_concurrent: int | None
    created_at: float

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets that sign a webhook sent at ``now``: current first."""
        if (
            self.previous_webhook_secret is not None
            and self.previous_secret_expires_at is not None
            and now < self.previous_secret_expires_at
        ):
            return (self.webhook_secret, self.previous_webhook_secret)
        return (self.webhook_secret,)


@attrs.frozen
class Session:
    """One dial: its numbers, where it runs, and when each status was reached."""

    session_uuid: str
    app_id: str
    node_id: str
    fs_node: str
    channel_uuid: str
    job_uuid: str | None
    to_number: str
    from_number: str
    timeout_sec: int
    max_duration_sec: int
    metadata_json: str
    status: str = "dialing"
    started_at: float = 0.0
    ringing_at: float | None = None
    early_media_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_cause: str | None = None
    request_id: str | None = None


@attrs.frozen
class SessionEvent:
    """One status change of a session and the state of its webhook delivery."""

    event_id: str
    session_uuid: str
    sequence: int
    event: str
    status: str
    occurred_at: float
    hangup_cause: str | None
    duration_sec: int | None
    delivery_state: str
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    delivered_at: float | None


@attrs.frozen
class IdempotencyRecord:
    """The first 202 answer given for an app's Idempotency-Key."""

    app_id: str
    key: str
    request_hash: str
    session_uuid: str
    response_status: int
    response_body: str
    created_at: float


@attrs.frozen
class Delivery:
    """A session event claimed for a webhook attempt, with all it needs."""

    event: SessionEvent
    app_id: str
    webhook_url: str
    signing_secrets: tuple[str, ...]
    to_number: str
    from_number: str
    metadata_json: str


@attrs.frozen
class AttemptResult:
    """How one webhook attempt ended, and what happens to its event next.

    ``outcome`` is ``delivered``, ``retry`` (``next_attempt_at`` says when)
    or ``failed`` (for good).
    """

    event_id: str
    attempted_at: float
    status_code: int | None
    error: str | None
    outcome: str
    next_attempt_at: float | None
