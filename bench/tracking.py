"""Call tracking at scale: the cost of `CallTracker.on_event` per ESL event
with 1,000, 10,000 and 50,000 live sessions tracked, and the memory of a
live session.

    python bench/tracking.py [--sessions 1000,10000,50000] [--batch N] [--repeat K]

One fresh process per (size, repetition), sizes interleaved, median shown.
Each process tracks N dialing sessions (the memory figure is the VmRSS
growth from /proc/self/status divided by N), then drives a batch of
further sessions through the whole event stream of the real
``call_answered`` capture (every event the gateway subscribes to, both
legs, the BACKGROUND_JOB; uuids rewritten per call), so the live count goes
from N + batch down to N while it is measured. The store is a fake whose
`record_transition` returns ``succeed(object())``, the links are fakes,
the events are real `Event`s built beforehand with the real parser, the
clock is the (not running) reactor, as in the daemon, and log events go to
a no-op observer. A benchmark, not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "freeswitch", "call_answered.raw")
SIZES = (1000, 10000, 50000)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class FakeStore:
    def record_transition(self, session_uuid, from_status, to_status, at, hangup_cause=None):
        from twisted.internet.defer import succeed

        return succeed(object())


class FakePool:
    def adopt(self, name: str) -> None:
        pass

    def release(self, name: str) -> None:
        pass


class FakeLink:
    name = "fs1"
    ready = True

    def api(self, command: str):
        from twisted.internet.defer import succeed

        return succeed("+OK")

    def bgapi(self, command: str, job_uuid: str):
        from twisted.internet.defer import succeed

        return succeed(None)


def call_template() -> tuple[list[bytes], bytes, bytes, list[bytes]]:
    """The subscribed event frames of one answered call, and the uuids to rewrite."""
    from dialgw.esl.frames import FrameParser, parse_event
    from dialgw.service import EVENT_NAMES

    with open(CAPTURE, "rb") as f:
        frames = [fr for fr in FrameParser().feed(f.read()) if fr.content_type == "text/event-plain"]
    events = [parse_event(fr) for fr in frames]
    ours = next(e.unique_id for e in events if e.name == "CHANNEL_OUTGOING").encode()
    job = next(e.job_uuid for e in events if e.name == "BACKGROUND_JOB").encode()
    others = sorted({e.unique_id.encode() for e in events if e.unique_id and e.unique_id.encode() != ours})
    bodies = [fr.body for fr, e in zip(frames, events, strict=True) if e.name in EVENT_NAMES]
    return bodies, ours, job, others


def session(channel: str, job: str, now: float):
    from dialgw.store.records import Session

    return Session(
        session_uuid=f"acW68-{channel}", app_id="app_bench", node_id="acW68", fs_node="fs1",
        channel_uuid=channel, job_uuid=job, to_number="0521000001", from_number="0721234567",
        timeout_sec=30, max_duration_sec=3600, metadata_json="{}", status="dialing", started_at=now,
    )


def run_once(live: int, batch: int) -> dict:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from dialgw.calls.tracker import CallTracker
    from dialgw.esl.frames import Frame, parse_event

    globalLogBeginner.beginLoggingTo([lambda event: None], discardBuffer=True, redirectStandardIO=False)
    link = FakeLink()
    tracker = CallTracker(
        node_id="acW68", store=FakeStore(), pool=FakePool(), clock=reactor,
        links={"fs1": link}, dial_strings={"fs1": "sofia/gateway/pstn/{to}"},
    )
    now = time.time()
    # Memory: N sessions as the daemon keeps them (LiveCall, three indexes, a watchdog).
    stored = [session(str(uuid.uuid4()), str(uuid.uuid4()), now) for _ in range(live)]
    gc.collect()
    before = rss_kib()
    for s in stored:
        tracker.track(s)
    del stored, s
    gc.collect()
    per_session = (rss_kib() - before) * 1024 / live

    # The batch: sessions whose calls happen while N others are live.
    bodies, ours, job, others = call_template()
    events = []
    for _ in range(batch):
        channel, job_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        tracker.track(session(channel, job_uuid, now))
        swap = {ours: channel.encode(), job: job_uuid.encode()}
        swap.update({other: str(uuid.uuid4()).encode() for other in others})
        pattern = re.compile(b"|".join(re.escape(k) for k in swap))
        for body in bodies:
            raw = pattern.sub(lambda m, swap=swap: swap[m.group(0)], body)
            events.append(parse_event(Frame({"Content-Type": "text/event-plain"}, raw)))
    assert len(tracker) == live + batch
    gc.collect()
    on_event = tracker.on_event
    started = time.perf_counter()
    for event in events:
        on_event(link, event)
    seconds = time.perf_counter() - started
    if len(tracker) != live:
        raise SystemExit(f"{len(tracker) - live} batch sessions did not end")
    return {
        "live": live, "events": len(events), "us_per_event": seconds / len(events) * 1e6,
        "bytes_per_session": per_session,
    }


def measure(sizes: list[int], batch: int, repeat: int) -> dict:
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for _ in range(repeat):
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--once", str(n), "--batch", str(batch)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            runs[n].append(json.loads(out))
    rows = {
        str(n): {
            "us_per_event": statistics.median(r["us_per_event"] for r in runs[n]),
            "bytes_per_session": statistics.median(r["bytes_per_session"] for r in runs[n]),
            "events": runs[n][0]["events"],
        }
        for n in sizes
    }
    first, last = str(sizes[0]), str(sizes[-1])
    return {
        "rows": rows, "repeat": repeat, "batch": batch,
        "cost_ratio": rows[last]["us_per_event"] / rows[first]["us_per_event"],
        "first": sizes[0], "last": sizes[-1],
    }


def report(result: dict) -> None:
    print(f"call tracking: CallTracker.on_event, {result['batch']} calls' events per run "
          f"(median of {result['repeat']} interleaved runs)")
    print(f"{'live sessions':>14} {'events':>8} {'us/event':>10} {'events/s':>10} {'bytes/session':>14}")
    for n, row in result["rows"].items():
        print(f"{int(n):>14,} {row['events']:>8,} {row['us_per_event']:>10.2f} "
              f"{1e6 / row['us_per_event']:>10,.0f} {row['bytes_per_session']:>14,.0f}")
    worst = max(row["bytes_per_session"] for row in result["rows"].values())
    print(f"cost at {result['last']:,} / cost at {result['first']:,} = {result['cost_ratio']:.2f}x (target <= 1.2x); "
          f"memory per live session up to {worst / 1024:.2f} KiB (target <= 4 KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default=",".join(map(str, SIZES)))
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--once", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.once, args.batch)))
        return
    result = measure([int(n) for n in args.sessions.split(",")], args.batch, args.repeat)
    report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
