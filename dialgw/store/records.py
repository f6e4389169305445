"""What the store keeps: frozen records, timestamps as epoch seconds."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import attrs

# Statuses, their order and their webhook events are the state machine's
# (dialgw.calls.machine). Each record is built from a row by column name
# (``from_row``), never by the position of a column in a query.

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
        return signing_secrets(self.webhook_secret, self.previous_webhook_secret,
                               self.previous_secret_expires_at, now)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], caller_ids: frozenset[str]) -> App:
        """The app of an ``apps`` row (`APP_COLUMNS`) and its caller-ID allow-list."""
        values = {name: row[name] for name in APP_COLUMNS}
        values["enabled"] = bool(values["enabled"])  # an INTEGER column
        return cls(**values, caller_ids=caller_ids)


#: The ``apps`` columns an `App` is built from: one per field but the
#: caller IDs (a table of their own). Not the key's hash nor the live-session count.
APP_COLUMNS = tuple(field.name for field in attrs.fields(App) if field.name != "caller_ids")


def signing_secrets(secret: str, previous: str | None, previous_expires_at: float | None,
                    now: float) -> tuple[str, ...]:
    """The secrets that sign a webhook sent at ``now``: the current one first,
    then the one it replaced while that is still within its grace period
    (`PREVIOUS_SECRET_TTL_SEC` after the rotation)."""
    if previous is not None and previous_expires_at is not None and now < previous_expires_at:
        return (secret, previous)
    return (secret,)


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Session:
        """The session of a ``sessions`` row (`SESSION_COLUMNS`)."""
        return cls(*_session_values(row))


#: The ``sessions`` columns: one per `Session` field, of the same name.
SESSION_COLUMNS = tuple(field.name for field in attrs.fields(Session))
# The values of those columns, by name, in field order (itemgetter: in C).
_session_values = operator.itemgetter(*SESSION_COLUMNS)


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionEvent:
        """The event of a ``session_events`` row (`EVENT_COLUMNS`)."""
        return cls(*_event_values(row))


#: The ``session_events`` columns: one per `SessionEvent` field, of the same name.
EVENT_COLUMNS = tuple(field.name for field in attrs.fields(SessionEvent))
_event_values = operator.itemgetter(*EVENT_COLUMNS)


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> IdempotencyRecord:
        """The record of an ``idempotency_keys`` row (`IDEMPOTENCY_COLUMNS`)."""
        return cls(*_idempotency_values(row))

    def to_row(self) -> dict[str, Any]:
        """The ``idempotency_keys`` row of this record, by column name."""
        return {column: getattr(self, field) for field, column in _IDEMPOTENCY_FIELDS.items()}


#: Each `IdempotencyRecord` field and its ``idempotency_keys`` column.
_IDEMPOTENCY_FIELDS = {
    field.name: "idempotency_key" if field.name == "key" else field.name
    for field in attrs.fields(IdempotencyRecord)
}
#: The ``idempotency_keys`` columns.
IDEMPOTENCY_COLUMNS = tuple(_IDEMPOTENCY_FIELDS.values())
_idempotency_values = operator.itemgetter(*IDEMPOTENCY_COLUMNS)


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
