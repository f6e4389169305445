"""The JSON body of one webhook (SPEC §3)."""

from __future__ import annotations

import json
from typing import Any

from dialgw.store.records import SessionEvent
from dialgw.timefmt import rfc3339

#: The event whose body also carries ``hangup_cause`` and ``duration_sec``.
HANGUP_EVENT = "call.hangup"


def _encode(fields: dict[str, Any]) -> str:
    """A JSON object, compact, non-ASCII kept as is, keys in their given order."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def webhook_body(
    event: SessionEvent, *, to_number: str, from_number: str, metadata_json: str
) -> bytes:
    """Compact UTF-8 JSON for ``event``, the same bytes on every attempt.

    ``metadata_json`` is spliced in verbatim, so the app gets back exactly
    the metadata text it sent (and the store kept). An empty text would
    make the whole body invalid JSON, so it raises ValueError.
    """
    if not metadata_json.strip():
        raise ValueError("metadata_json is empty")
    head = _encode({
        "id": event.event_id,
        "event": event.event,
        "session_uuid": event.session_uuid,
        "sequence": event.sequence,
        "occurred_at": rfc3339(event.occurred_at),
        "status": event.status,
        "to": to_number,
        "from": from_number,
    })
    tail = "}"
    if event.event == HANGUP_EVENT:
        # SPEC: duration is seconds answered, 0 if the call was never answered.
        duration = event.duration_sec if event.duration_sec is not None else 0
        tail = "," + _encode({"hangup_cause": event.hangup_cause, "duration_sec": duration})[1:]
    return (head[:-1] + ',"metadata":' + metadata_json + tail).encode("utf-8")
