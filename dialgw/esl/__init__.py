"""FreeSWITCH Event Socket: framing, the client protocol, node connections."""

from __future__ import annotations

from dialgw.esl.client import NodeConnection, NodeUnavailable
from dialgw.esl.frames import (
    ESLProtocolError,
    Event,
    Frame,
    FrameParser,
    parse_event,
)
from dialgw.esl.protocol import (
    ESLAuthError,
    ESLClientProtocol,
    ESLCommandError,
    ESLCommandTimeout,
    ESLConnectionLost,
    ESLError,
    ESLInjectionError,
)

__all__ = [
    "ESLAuthError",
    "ESLClientProtocol",
    "ESLCommandError",
    "ESLCommandTimeout",
    "ESLConnectionLost",
    "ESLError",
    "ESLInjectionError",
    "ESLProtocolError",
    "Event",
    "Frame",
    "FrameParser",
    "NodeConnection",
    "NodeUnavailable",
    "parse_event",
]
