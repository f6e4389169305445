"""The daemon's text log: twistd's own line format, written for less.

twistd logs to stdout through ``textFileLogObserver``, which formats every
event with a pure-Python ``string.Formatter`` and a time-zone lookup: about
15 µs a line, and the gateway writes one line per request, per call
transition and per webhook attempt (profiled: an eighth of the reactor's
time under load). `text_log_observer` writes the same lines, byte for byte,
for a few µs: the time stamp is made once per second and an ordinary event
is formatted with ``str.format_map``. Anything else (a failure with its
traceback, a legacy event, a format that only Twisted's formatter takes)
goes through Twisted's formatter as before.
"""

from __future__ import annotations

import math
from typing import IO, Any

from twisted.logger import FileLogObserver, formatEventAsClassicLogText, formatTime, timeFormatRFC3339


class ClassicLogFormat:
    """``formatEventAsClassicLogText`` with twistd's time format, faster."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._stamp = "-"

    def time(self, when: float | None) -> str:
        if when is None:
            return formatTime(when, timeFormatRFC3339)
        second = math.floor(when)
        if when - second >= 0.999999:
            # datetime rounds to the microsecond, which may carry into the
            # next second: Twisted's own formatting decides.
            return formatTime(when, timeFormatRFC3339)
        if second != self._second:
            self._second, self._stamp = second, formatTime(second, timeFormatRFC3339)
        return self._stamp

    def __call__(self, event: dict[str, Any]) -> str | None:
        fmt = event.get("log_format")
        if type(fmt) is not str or "log_failure" in event or "log_text" in event or "()" in fmt:
            return formatEventAsClassicLogText(event, formatTime=self.time)
        try:
            text = fmt.format_map(event)
        except Exception:
            return formatEventAsClassicLogText(event, formatTime=self.time)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self.time(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"


def text_log_observer(out: IO[str]) -> FileLogObserver:
    """A log observer writing twistd's classic text lines to ``out``."""
    return FileLogObserver(out, ClassicLogFormat())
