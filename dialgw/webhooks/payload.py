"""The JSON body of one webhook (SPEC §3)."""

from __future__ import annotations

import json
from typing import Any

from dialgw.store.records import SessionEvent
from dialgw.timefmt import rfc3339

#: The event whose body also carries ``hangup_cause`` and ``duration_sec``.
HANGUP_EVENT = "call.hangup"


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
    fields: list[tuple[str, str]] = [
        ("id", _encode(event.event_id)),
        ("event", _encode(event.event)),
        ("session_uuid", _encode(event.session_uuid)),
        ("sequence", _encode(event.sequence)),
        ("occurred_at", _encode(rfc3339(event.occurred_at))),
        ("status", _encode(event.status)),
        ("to", _encode(to_number)),
        ("from", _encode(from_number)),
        ("metadata", metadata_json),
    ]
    if event.event == HANGUP_EVENT:
        # SPEC: duration is seconds answered, 0 if the call was never answered.
        duration = event.duration_sec if event.duration_sec is not None else 0
        fields.append(("hangup_cause", _encode(event.hangup_cause)))
        fields.append(("duration_sec", _encode(duration)))
    text = "{" + ",".join(f"{_encode(name)}:{value}" for name, value in fields) + "}"
    return text.encode("utf-8")
