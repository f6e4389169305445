"""ESL wire framing and event decoding.

`FrameParser` cuts the byte stream from FreeSWITCH into `Frame`s (envelope
headers plus exactly Content-Length bytes of body), whatever the TCP
chunking. `parse_event` turns an event frame into an `Event` whose header
values are found and URL-decoded lazily, one at a time, on demand: a busy
switch sends tens of thousands of events a second and the call tracker
only reads a handful of headers of each.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import attrs

__all__ = [
    "ESLProtocolError",
    "Event",
    "Frame",
    "FrameParser",
    "parse_event",
    "EVENT_PLAIN",
    "MAX_BODY",
    "MAX_HEADER_BLOCK",
]

#: libesl's ESL_MAX_CONTENT_LENGTH.
MAX_BODY = 16 * 1024 * 1024
#: libesl reads the envelope into a 64 KiB buffer.
MAX_HEADER_BLOCK = 64 * 1024

_EOH = b"\n\n"

#: The Content-Type of an event in the one format the gateway subscribes to.
EVENT_PLAIN = "text/event-plain"


class ESLProtocolError(Exception):
    """The peer sent bytes that are not a valid ESL stream."""


@attrs.define(slots=True, eq=True, repr=False)
class Frame:
    """One frame: envelope headers (not URL-decoded) and the raw body."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        """The envelope's Content-Type, if any."""
        return self.headers.get("Content-Type")

    def __repr__(self) -> str:
        return f"Frame(headers={self.headers!r}, body={self.body[:80]!r}{'...' if len(self.body) > 80 else ''})"


def _parse_envelope(block: bytes) -> dict[str, str]:
    """Parse a header block (without the blank line); the first occurrence wins."""
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "surrogateescape").split("\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            # "Name:value" is not what FreeSWITCH writes; accept it plainly.
            name, sep, value = line.partition(":")
            if not sep:
                continue
        if name not in headers:
            headers[name] = value
    return headers


def _content_length(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ESLProtocolError(f"bad Content-Length {value!r}")
    length = int(value)
    if length > MAX_BODY:
        raise ESLProtocolError(f"Content-Length {length} exceeds {MAX_BODY}")
    return length


class FrameParser:
    """Incremental ESL framing, correct for any split of the byte stream.

    Leftover bytes always start at a frame boundary. While a header block is
    incomplete the search for its terminator resumes where it stopped; while
    a body is incomplete nothing is scanned at all, so feeding one byte at a
    time stays linear.
    """

    __slots__ = ("_buf", "_need", "_scan")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Bytes the buffer must hold before a frame can complete (body wait).
        self._need = 0
        # Where to resume looking for the header terminator (header wait).
        self._scan = 0

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes from the socket; return every frame now complete.

        Raises `ESLProtocolError` on a bad Content-Length or an unterminated
        header block over 64 KiB; the stream cannot be trusted after that.
        """
        if not data:
            return []
        buf = self._buf
        if buf:
            buf += data
            if self._need:
                if len(buf) < self._need:
                    return []
            elif buf.find(_EOH, self._scan) < 0:
                if len(buf) > MAX_HEADER_BLOCK:
                    raise ESLProtocolError("header block too long")
                self._scan = len(buf) - 1
                return []
            work = bytes(buf)
            buf.clear()
        else:
            work = bytes(data)
        return self._parse(work)

    def _parse(self, work: bytes) -> list[Frame]:
        frames: list[Frame] = []
        append = frames.append
        find = work.find
        end = len(work)
        pos = 0
        while pos < end:
            if work[pos] == 10:
                # A stray blank line between frames carries nothing.
                pos += 1
                continue
            eoh = find(_EOH, pos)
            if eoh < 0:
                if end - pos > MAX_HEADER_BLOCK:
                    raise ESLProtocolError("header block too long")
                self._buf += work[pos:]
                self._need = 0
                self._scan = end - pos - 1
                return frames
            if eoh - pos > MAX_HEADER_BLOCK:
                raise ESLProtocolError("header block too long")
            headers = _parse_envelope(work[pos:eoh])
            start = eoh + 2
            length_text = headers.get("Content-Length")
            if length_text is None:
                append(Frame(headers, b""))
                pos = start
                continue
            stop = start + _content_length(length_text)
            if stop > end:
                self._buf += work[pos:]
                self._need = stop - pos
                self._scan = 0
                return frames
            append(Frame(headers, work[start:stop]))
            pos = stop
        self._need = 0
        self._scan = 0
        return frames


_KEYS: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    """b"\\n<name>: ", cached: header names are a small fixed vocabulary."""
    try:
        return _KEYS[name]
    except KeyError:
        key = b"\n" + name.encode("utf-8", "surrogateescape") + b": "
        if len(_KEYS) < 4096:
            _KEYS[name] = key
        return key


def _decode_value(raw: bytes) -> str:
    """URL-decode one already isolated header value."""
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


class Event:
    """A `text/event-plain` event, decoded lazily.

    Values are located in the raw body by searching for ``\\n<Name>: ``
    inside the header block, which is the same as splitting into lines
    first: a raw value never contains a newline (FreeSWITCH URL-encodes it),
    so a ``%0A`` in a value can never start a header. Each value is
    percent-decoded only when asked for, then cached.
    """

    __slots__ = ("_raw", "_eoh", "_cache")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._eoh = -1
        self._cache: dict[str, str | None] = {}

    def _header_end(self) -> int:
        eoh = self._eoh
        if eoh < 0:
            eoh = self._raw.find(_EOH)
            if eoh < 0:
                eoh = len(self._raw)
            self._eoh = eoh
        return eoh

    def _find_raw(self, name: str, start: int = 0) -> tuple[bytes, int] | None:
        """The raw value of the first `name` header at or after `start`."""
        raw = self._raw
        key = _key(name)
        eoh = self._header_end()
        if start == 0 and raw.startswith(key[1:]):
            begin = len(key) - 1
        else:
            i = raw.find(key, start, eoh)
            if i < 0:
                return None
            begin = i + len(key)
        stop = raw.find(b"\n", begin, eoh)
        if stop < 0:
            stop = eoh
        return raw[begin:stop], stop

    def get(self, name: str, default: str | None = None) -> str | None:
        """The URL-decoded value of the first `name` header, or `default`."""
        cache = self._cache
        if name in cache:
            value = cache[name]
        else:
            found = self._find_raw(name)
            value = cache[name] = None if found is None else _decode_value(found[0])
        return default if value is None else value

    def get_all(self, name: str) -> list[str]:
        """Every value of a header that may repeat (e.g. Hangup-Cause)."""
        values: list[str] = []
        start = 0
        while True:
            found = self._find_raw(name, start)
            if found is None:
                return values
            values.append(_decode_value(found[0]))
            start = found[1]

    def _lines(self) -> Iterator[tuple[str, bytes]]:
        for line in self._raw[: self._header_end()].split(b"\n"):
            name, sep, value = line.partition(b": ")
            if sep:
                yield name.decode("utf-8", "surrogateescape"), value

    def headers(self) -> dict[str, str]:
        """Every header, decoded (first occurrence wins); for debugging."""
        result: dict[str, str] = {}
        for name, value in self._lines():
            if name not in result:
                result[name] = _decode_value(value)
        return result

    @property
    def body(self) -> bytes:
        """The nested body (e.g. BACKGROUND_JOB's ``+OK <uuid>\\n``), or b""."""
        found = self._find_raw("Content-Length")
        if found is None:
            return b""
        text = found[0]
        if not (text.isdigit() and len(text) < 10):
            return b""
        start = self._header_end() + 2
        return self._raw[start : start + int(text)]

    @property
    def name(self) -> str | None:
        """Event-Name."""
        return self.get("Event-Name")

    @property
    def unique_id(self) -> str | None:
        """Unique-ID: the channel, equal to our origination_uuid for our leg."""
        return self.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        """Job-UUID of a BACKGROUND_JOB."""
        return self.get("Job-UUID")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.unique_id or self.job_uuid or ''}>"


def parse_event(frame: Frame) -> Event:
    """Wrap a ``text/event-plain`` frame; nothing is decoded until a header is asked for.

    The gateway subscribes with ``event plain`` only, so no other event
    format ever reaches it.
    """
    content_type = frame.content_type
    if content_type != EVENT_PLAIN:
        raise ESLProtocolError(f"not an event-plain frame: {content_type!r}")
    return Event(frame.body)
