"""The floor: the plainest correct pure-Python ESL event parser.

`bytes.find` cuts frames (envelope, blank line, Content-Length bytes of
body); every header of every event is split and URL-decoded with
`urllib.parse.unquote` into a dict. No laziness, no tricks: what any
straightforward parser does, and what dialgw has to beat.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["FloorParser", "decode_headers"]


def decode_headers(block: bytes) -> dict[str, str]:
    """Every ``Name: value`` line of a header block, value URL-decoded; first wins."""
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\n"):
        name, sep, value = line.partition(": ")
        if sep and name not in headers:
            headers[name] = unquote(value)
    return headers


class FloorParser:
    """Incremental framing; `feed` returns the decoded headers of each event."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[dict[str, str]]:
        buf = self._buf + data if self._buf else data
        events: list[dict[str, str]] = []
        pos = 0
        end = len(buf)
        while pos < end:
            eoh = buf.find(b"\n\n", pos)
            if eoh < 0:
                break
            envelope = decode_headers(buf[pos:eoh])
            start = eoh + 2
            length = int(envelope.get("Content-Length", "0"))
            stop = start + length
            if stop > end:
                break
            if envelope.get("Content-Type") == "text/event-plain":
                body = buf[start:stop]
                inner = body.find(b"\n\n")
                events.append(decode_headers(body if inner < 0 else body[:inner]))
            pos = stop
        self._buf = buf[pos:]
        return events
