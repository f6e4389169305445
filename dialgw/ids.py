"""The shapes of the ids dialgw makes and accepts, written once.

A node id (``[node] id``) is 5 ASCII letters or digits. A session id is the
node id, a dash and the channel's UUID (the ``origination_uuid``, lower-case
RFC 4122 text), so any node can tell from an id which node made it. A
request id (``X-Request-ID``) is 1-128 visible ASCII characters; any other
one sent is replaced by a new UUID. An event id (a webhook's ``id``) is
``evt_`` and 32 lower-case hex digits.

The ``*_PATTERN`` strings are unanchored regular expressions (Python and
JSON Schema alike); the ``is_*`` functions match them whole.
"""

from __future__ import annotations

import re
import uuid

NODE_ID_PATTERN = r"[A-Za-z0-9]{5}"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SESSION_ID_PATTERN = NODE_ID_PATTERN + "-" + UUID_PATTERN
REQUEST_ID_PATTERN = r"[!-~]{1,128}"
EVENT_ID_PATTERN = r"evt_[0-9a-f]{32}"

_NODE_ID = re.compile(NODE_ID_PATTERN, re.ASCII)
_UUID = re.compile(UUID_PATTERN, re.ASCII)
_SESSION_ID = re.compile(SESSION_ID_PATTERN, re.ASCII)
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN, re.ASCII)


def new_uuid() -> str:
    """A random UUID as lower-case text (channel, job and request ids)."""
    return str(uuid.uuid4())


def new_event_id() -> str:
    """A new event id: ``evt_`` and a random UUID's hex digits."""
    return "evt_" + uuid.uuid4().hex


def session_id(node_id: str, channel_uuid: str) -> str:
    """The session id of the channel ``channel_uuid`` placed by ``node_id``."""
    return f"{node_id}-{channel_uuid}"


def channel_of(session_id: str) -> str:
    """The channel UUID inside a session id."""
    return session_id.partition("-")[2]


def is_node_id(text: str) -> bool:
    return _NODE_ID.fullmatch(text) is not None


def is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def is_session_id(text: str) -> bool:
    return _SESSION_ID.fullmatch(text) is not None


def is_request_id(text: str) -> bool:
    return _REQUEST_ID.fullmatch(text) is not None
