"""The client side of one ESL connection: auth, commands, events.

FreeSWITCH runs one thread per connection that reads a command, runs it and
replies before reading the next, so replies come back strictly in command
order and are matched with a FIFO. A command that times out keeps its slot:
its reply is still coming and must be consumed, not matched to the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.esl.frames import EVENT_PLAIN, ESLProtocolError, Event, Frame, FrameParser, parse_event
from dialgw.observe import Observers

__all__ = [
    "ESLAuthError",
    "ESLClientProtocol",
    "ESLCommandError",
    "ESLCommandTimeout",
    "ESLConnectionLost",
    "ESLError",
    "ESLInjectionError",
    "check_safe",
]

log = Logger()

_REPLY_TYPES = frozenset({"command/reply", "api/response"})
_FORBIDDEN = ("\r", "\n", "\x00")


class ESLError(Exception):
    """Base of every ESL error."""


class ESLAuthError(ESLError):
    """Authentication failed, or the connection ended before it succeeded."""


class ESLCommandError(ESLError):
    """FreeSWITCH answered a command with something other than +OK."""

    def __init__(self, message: str, frame: Frame | None = None) -> None:
        super().__init__(message)
        self.frame = frame


class ESLCommandTimeout(ESLError):
    """No reply within the command timeout (the reply may still come)."""


class ESLConnectionLost(ESLError):
    """The connection ended before the reply arrived."""


class ESLInjectionError(ESLError, ValueError):
    """A command or header would contain CR, LF or NUL (or is malformed)."""


def check_safe(text: str, what: str) -> None:
    """Refuse text that could end an ESL command line early."""
    for bad in _FORBIDDEN:
        if bad in text:
            raise ESLInjectionError(f"{what} contains {bad!r}")


def _encode_command(command: str, headers: Mapping[str, str] | None) -> bytes:
    check_safe(command, "command")
    if not command.strip():
        # An empty command gets no reply at all and would shift the FIFO.
        raise ESLInjectionError("empty command")
    lines = [command]
    for name, value in (headers or {}).items():
        check_safe(name, "header name")
        check_safe(value, f"header {name!r}")
        if not name or ":" in name or name != name.strip():
            raise ESLInjectionError(f"bad header name {name!r}")
        lines.append(f"{name}: {value}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class _Pending:
    """One command waiting for its reply; stays queued even when abandoned."""

    __slots__ = ("command", "deferred", "timer", "abandoned")

    def __init__(self, command: str, deferred: Deferred[Frame]) -> None:
        self.command = command
        self.deferred = deferred
        self.timer: IDelayedCall | None = None
        self.abandoned = False

    def settle(self) -> None:
        self.abandoned = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class ESLClientProtocol(Protocol):
    """Inbound ESL client: authenticates, sends commands, dispatches events.

    Commands sent before authentication completes are held back and written
    once FreeSWITCH has accepted the password (before auth every command
    would just get ``-ERR command not found``).
    """

    def __init__(self, password: str, clock: IReactorTime, command_timeout: float = 10.0) -> None:
        check_safe(password, "password")
        self._password = password
        self._clock = clock
        self._command_timeout = command_timeout
        self._parser = FrameParser()
        self._queue: deque[_Pending] = deque()
        self._held: list[tuple[bytes, _Pending]] = []
        self._auth_waiters: Observers[None] = Observers()
        self._auth_result: ESLAuthError | None | bool = False  # False: undecided
        self._auth_sent = False
        self._auth_timer: IDelayedCall | None = None
        self._broken = False
        self.is_connected = False
        self.last_activity: float = clock.seconds()
        self.on_event: Callable[[Event], None] | None = None
        self.on_disconnect_notice: Callable[[Frame], None] | None = None
        #: Called at the end of connectionLost with the reason.
        self.on_connection_lost: Callable[[Failure], None] | None = None

    # -- connection --------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return self._auth_result is None

    @property
    def _tcp(self) -> ITCPTransport:
        # ESL runs over TCP; Protocol types its transport as the bare ITransport.
        return cast(ITCPTransport, self.transport)

    def abort(self) -> None:
        """Close the connection at once, discarding anything unsent."""
        self._tcp.abortConnection()

    def connectionMade(self) -> None:
        self.is_connected = True
        self.last_activity = self._clock.seconds()
        if self._command_timeout > 0:
            self._auth_timer = self._clock.callLater(self._command_timeout, self._auth_timed_out)

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        if self._auth_result is False:
            log.warn("ESL authentication timed out after {timeout}s", timeout=self._command_timeout)
            self._auth_failed(ESLAuthError("authentication timed out"))
            self.abort()

    def dataReceived(self, data: bytes) -> None:
        if self._broken:
            return
        self.last_activity = self._clock.seconds()
        try:
            frames = self._parser.feed(data)
        except ESLProtocolError:
            log.failure("ESL stream is corrupt; dropping the connection")
            self._broken = True
            self.abort()
            return
        for frame in frames:
            if self._broken or not self.is_connected:
                return
            self._dispatch(frame)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.is_connected = False
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        if self._auth_result is False:
            self._auth_failed(ESLAuthError(f"connection lost before authentication: {reason.value}"))
        pending = list(self._queue) + [p for _, p in self._held]
        self._queue.clear()
        self._held.clear()
        for p in pending:
            if not p.abandoned:
                p.settle()
                p.deferred.errback(ESLConnectionLost(f"connection lost waiting for reply to {p.command!r}"))
        if self.on_connection_lost is not None:
            self.on_connection_lost(reason)

    # -- incoming frames ---------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        content_type = frame.content_type
        if content_type == EVENT_PLAIN:
            handler = self.on_event
            if handler is not None:
                try:
                    handler(parse_event(frame))
                except Exception:
                    log.failure("ESL event handler failed")
        elif content_type in _REPLY_TYPES:
            self._reply(frame)
        elif content_type == "auth/request":
            self._auth_request()
        elif content_type == "text/disconnect-notice":
            self._disconnect_notice(frame)
        elif content_type == "text/rude-rejection":
            log.error(
                "FreeSWITCH refused the connection (ACL): {text}",
                text=frame.body.decode("utf-8", "replace").strip(),
            )
            self._tcp.loseConnection()
        else:
            log.debug("ignoring ESL frame of type {content_type}", content_type=content_type)

    def _reply(self, frame: Frame) -> None:
        if not self._queue:
            log.warn(
                "ESL reply with no command waiting: {reply}",
                reply=frame.headers.get("Reply-Text") or frame.content_type,
            )
            return
        pending = self._queue.popleft()
        if pending.abandoned:
            log.debug("discarding late reply to {command}", command=pending.command)
            return
        pending.settle()
        pending.deferred.callback(frame)

    def _auth_request(self) -> None:
        if self._auth_sent:
            log.warn("ignoring a repeated auth/request")
            return
        self._auth_sent = True
        deferred = self._write_command(f"auth {self._password}", None, "auth")
        deferred.addCallbacks(self._auth_reply, self._auth_error)

    def _auth_reply(self, frame: Frame) -> None:
        text = frame.headers.get("Reply-Text", "")
        if text.startswith("+OK"):
            self._auth_succeeded()
        else:
            log.error("ESL authentication refused: {reply}", reply=text)
            self._auth_failed(ESLAuthError(text or "authentication refused"))
            self._tcp.loseConnection()

    def _auth_error(self, failure: Failure) -> None:
        if self._auth_result is False:
            self._auth_failed(ESLAuthError(str(failure.value)))
            if self.is_connected:
                self.abort()

    def _auth_succeeded(self) -> None:
        self._auth_result = None
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        held, self._held = self._held, []
        for data, pending in held:
            if not pending.abandoned:
                self._queue.append(pending)
                self._tcp.write(data)
        self._auth_waiters.fire(None)

    def _auth_failed(self, error: ESLAuthError) -> None:
        self._auth_result = error
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        held, self._held = self._held, []
        for _, pending in held:
            if not pending.abandoned:
                pending.settle()
                pending.deferred.errback(error)
        self._auth_waiters.fail(error)

    def _disconnect_notice(self, frame: Frame) -> None:
        handler = self.on_disconnect_notice
        if handler is not None:
            try:
                handler(frame)
            except Exception:
                log.failure("ESL disconnect-notice handler failed")
        if frame.headers.get("Content-Disposition") == "linger":
            return
        log.debug("FreeSWITCH says goodbye: {text}", text=frame.body.decode("utf-8", "replace").strip())
        self._tcp.loseConnection()

    # -- commands ----------------------------------------------------------

    def whenAuthenticated(self) -> Deferred[None]:
        """Fires once FreeSWITCH accepts the password; fails with `ESLAuthError`."""
        result = self._auth_result
        if result is None:
            return succeed(None)
        if isinstance(result, ESLAuthError):
            return fail(result)
        return self._auth_waiters.when()

    def send_command(self, command: str, headers: Mapping[str, str] | None = None) -> Deferred[Frame]:
        """Send one command; the Deferred fires with its reply frame.

        Raises `ESLInjectionError` at once (writing nothing) if the command
        or a header contains CR, LF or NUL. Fails with `ESLCommandTimeout`
        after `command_timeout` (the slot stays queued), or with
        `ESLConnectionLost`.
        """
        data = _encode_command(command, headers)
        if not self.is_connected:
            return fail(ESLConnectionLost(f"not connected; {command.split(' ', 1)[0]!r} not sent"))
        if isinstance(self._auth_result, ESLAuthError):
            return fail(self._auth_result)
        return self._write_command(command, data, None)

    def _write_command(self, command: str, data: bytes | None, kind: str | None) -> Deferred[Frame]:
        shown = "auth ***" if kind == "auth" else command
        if data is None:
            data = _encode_command(command, None)

        def cancel(_: Deferred[Frame]) -> None:
            pending.settle()

        deferred: Deferred[Frame] = Deferred(canceller=cancel)
        pending = _Pending(shown, deferred)
        if self._command_timeout > 0:
            pending.timer = self._clock.callLater(self._command_timeout, self._timed_out, pending)
        if kind == "auth" or self._auth_result is None:
            self._queue.append(pending)
            self._tcp.write(data)
        else:
            self._held.append((data, pending))
        return deferred

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        if pending.abandoned:
            return
        pending.settle()
        log.warn("ESL command {command} timed out", command=pending.command)
        pending.deferred.errback(ESLCommandTimeout(f"no reply to {pending.command!r} in {self._command_timeout}s"))

    def api(self, command: str) -> Deferred[str]:
        """``api <command>``: the response body, decoded."""

        def body(frame: Frame) -> str:
            if frame.content_type != "api/response":
                raise ESLCommandError(frame.headers.get("Reply-Text", "unexpected reply"), frame)
            return frame.body.decode("utf-8", "replace")

        return self.send_command(f"api {command}").addCallback(body)

    def bgapi(self, command: str, job_uuid: str) -> Deferred[Frame]:
        """``bgapi <command>`` with our own Job-UUID; fires with the command/reply.

        The result comes later as a BACKGROUND_JOB event carrying `job_uuid`.
        """
        return self.send_command(f"bgapi {command}", {"Job-UUID": job_uuid})

    def subscribe(self, event_names: Sequence[str]) -> Deferred[Frame]:
        """``event plain NAMES...``; fails with `ESLCommandError` unless +OK."""
        names = list(event_names)
        if not names or any(not n or " " in n for n in names):
            raise ValueError(f"bad event names {names!r}")
        return self.send_command(" ".join(["event", "plain", *names])).addCallback(_expect_ok)

    def exit(self) -> Deferred[Frame]:
        """``exit``: FreeSWITCH replies +OK bye, says goodbye and closes."""
        return self.send_command("exit")


def _expect_ok(frame: Frame) -> Frame:
    text = frame.headers.get("Reply-Text", "")
    if not text.startswith("+OK"):
        raise ESLCommandError(text or "no Reply-Text", frame)
    return frame
