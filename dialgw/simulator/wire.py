"""The Event Socket wire format, server side, byte for byte as FreeSWITCH writes it.

Server frames: ``auth/request``, ``command/reply``, ``api/response``,
``text/event-plain``, ``text/event-json`` and ``text/disconnect-notice``.
Client commands are read as mod_event_socket's ``read_packet`` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import attrs

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTTING_DOWN = "The system is being shut down.\n"

# switch_utils.h SWITCH_URL_UNSAFE
_URL_UNSAFE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_UPPER_HEX = b"0123456789ABCDEF"


def url_encode(value: str) -> str:
    """Encode a header value like ``switch_url_encode`` (``double_encode`` off).

    Bytes below 0x20, above 0x7E or in ``SWITCH_URL_UNSAFE`` become ``%XX``
    with uppercase hex; a ``%`` already followed by two uppercase hex digits
    is taken as encoded and copied as it is.
    """
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    n = len(raw)
    for i, byte in enumerate(raw):
        if byte == 0x25 and i + 2 < n and raw[i + 1] in _UPPER_HEX and raw[i + 2] in _UPPER_HEX:
            out.append(byte)
        elif byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out += b"%%%02X" % byte
        else:
            out.append(byte)
    return out.decode("ascii")


@attrs.define
class Event:
    """One FreeSWITCH event: its headers in order (names may repeat) and an optional body."""

    headers: list[tuple[str, str]]
    body: str | None = None

    @property
    def name(self) -> str:
        """The ``Event-Name``."""
        return self.get("Event-Name") or ""

    def get(self, name: str) -> str | None:
        """The first value of a header, matched case-insensitively like ``switch_event_get_header``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def serialize_plain(event: Event) -> bytes:
    """The ``text/event-plain`` body (``switch_event_serialize``)."""
    lines = []
    for key, value in event.headers:
        encoded = url_encode(value)
        lines.append(f"{key}: {encoded or '_undef_'}\n")
    text = "".join(lines)
    if event.body is not None:
        body = event.body.encode("utf-8", "surrogateescape")
        return text.encode("ascii") + b"Content-Length: %d\n\n" % len(body) + body
    return text.encode("ascii") + b"\n"


def serialize_json(event: Event) -> bytes:
    """The ``text/event-json`` body: one flat object, every value a string, duplicates kept."""
    pairs = list(event.headers)
    if event.body is not None:
        body_len = len(event.body.encode("utf-8", "surrogateescape"))
        pairs += [("Content-Length", str(body_len)), ("_body", event.body)]
    members = ",".join(
        json.dumps(key, ensure_ascii=False) + ":" + json.dumps(value, ensure_ascii=False)
        for key, value in pairs
    )
    return ("{" + members + "}").encode("utf-8", "surrogateescape")


def event_frame(event: Event, fmt: str) -> bytes:
    """An event on the wire in ``plain`` or ``json`` format: Content-Length first."""
    if fmt == "json":
        body, content_type = serialize_json(event), b"text/event-json"
    else:
        body, content_type = serialize_plain(event), b"text/event-plain"
    return b"Content-Length: %d\nContent-Type: %s\n\n" % (len(body), content_type) + body


def auth_request() -> bytes:
    """The greeting."""
    return b"Content-Type: auth/request\n\n"


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    """A ``command/reply`` frame; ``extra`` headers follow ``Reply-Text``."""
    lines = ["Content-Type: command/reply", f"Reply-Text: {text}"]
    lines += [f"{key}: {value}" for key, value in extra or []]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def api_response(output: str) -> bytes:
    """An ``api/response`` frame: Content-Type first, then Content-Length."""
    body = output.encode("utf-8", "surrogateescape")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def disconnect_notice(text: str = GOODBYE) -> bytes:
    """A ``text/disconnect-notice`` frame."""
    body = text.encode("utf-8")
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(body) + body


@attrs.frozen
class Command:
    """One client command: line 1, its header lines and an optional body."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header's value, matched case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@attrs.define
class CommandReader:
    """Incremental reader of client commands, framed the way ``read_packet`` frames them.

    CR and LF before a command are skipped; a command ends at two LFs (a CR
    in between does not reset the count); line 1 is cut at its first CR or
    LF; later lines are ``Name: value`` headers split at the first ``:``
    with leading spaces stripped from the value; a ``Content-Length`` header
    brings a body of that many bytes.
    """

    _buffer: bytearray = attrs.field(factory=bytearray)
    _pending: Command | None = None
    _body_length: int = 0

    def feed(self, data: bytes) -> Iterator[Command]:
        """Add bytes; yield every command that is now complete."""
        self._buffer += data
        while True:
            if self._pending is not None:
                if len(self._buffer) < self._body_length:
                    return
                body = bytes(self._buffer[: self._body_length])
                del self._buffer[: self._body_length]
                command = attrs.evolve(self._pending, body=body)
                self._pending = None
                yield command
                continue
            start = 0
            while start < len(self._buffer) and self._buffer[start] in b"\r\n":
                start += 1
            if start:
                del self._buffer[:start]
            end = self._end_of_block()
            if end is None:
                return
            block = bytes(self._buffer[:end])
            del self._buffer[:end]
            command = self._parse(block)
            length = command.header("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > 0:
                self._pending = command
                self._body_length = int(length)
                continue
            yield command

    def _end_of_block(self) -> int | None:
        count = 0
        for index, byte in enumerate(self._buffer):
            if byte == 0x0A:
                count += 1
                if count == 2:
                    return index + 1
            elif byte != 0x0D:
                count = 0
        return None

    @staticmethod
    def _parse(block: bytes) -> Command:
        text = block.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        first = lines[0].split("\r", 1)[0]
        headers = []
        for line in lines[1:]:
            line = line.rstrip("\r")
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            headers.append((key, value.lstrip(" ")))
        return Command(line=first, headers=headers)
