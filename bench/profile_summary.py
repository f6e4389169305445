"""Where a gateway's reactor thread spends its time, from a py-spy profile.

    python bench/profile_summary.py PROFILE.txt SECONDS [RATE]

PROFILE.txt is py-spy's ``--format raw`` output (collapsed stacks, one
``frame;frame;... count`` per line), as `bench/dial_api.py --profile`
writes it. Only the reactor thread (the stacks under ``twistd``) is
counted; each sample goes to the part of dialgw or Twisted nearest to the
top of its stack (the leaf), so a log line written while delivering a
webhook counts as logging, not as the webhook. SECONDS and RATE (samples/s)
give how busy the thread was.
"""

from __future__ import annotations

import collections
import sys

#: (what, substrings of a frame that belong to it); the first match wins
#: for each frame, the frame nearest the leaf wins for each sample.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (twisted.logger, one line per request, transition, webhook attempt)", ("twisted/logger/",)),
    ("request log and metrics (dialgw.ops, prometheus)", ("dialgw/ops.py", "prometheus_client/")),
    ("webhook delivery (dialgw.webhooks, treq, HTTP client)",
     ("dialgw/webhooks/", "treq/", "twisted/web/_newclient.py", "twisted/web/client.py", "hyperlink/")),
    ("ESL and call tracking (dialgw.esl, dialgw.calls, dialgw.pool)",
     ("dialgw/esl/", "dialgw/calls/", "dialgw/pool.py")),
    ("store calls and their callbacks (dialgw.store, adbapi)",
     ("dialgw/store/", "twisted/enterprise/", "twisted/python/threadpool.py", "twisted/_threads/")),
    ("API handlers (dialgw.api, klein, werkzeug routing)", ("dialgw/api/", "klein/", "werkzeug/")),
    ("HTTP server (twisted.web.http, server)", ("twisted/web/http.py", "twisted/web/server.py",
                                                "twisted/web/http_headers.py")),
    ("Deferreds and coroutines", ("twisted/internet/defer.py",)),
    ("sockets and the reactor loop", ("twisted/internet/",)),
)


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in PARTS:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def summarize(path: str) -> tuple[int, list[tuple[str, int]]]:
    """Samples of the reactor thread, and how many fell to each part."""
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            if not frames or "twistd" not in frames[0]:
                continue  # the database thread, the thread pool
            total += int(count)
            parts[part_of(frames)] += int(count)
    return total, parts.most_common()


def report(path: str, seconds: float, rate: float = 250.0) -> str:
    total, parts = summarize(path)
    lines = [f"reactor thread busy {total / (seconds * rate):.0%} of the run ({total} samples)"]
    for name, count in parts:
        lines.append(f"{count / total:6.1%}  {name}" if total else f"     -  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sys.argv[1], float(sys.argv[2]), *(float(a) for a in sys.argv[3:4])))
