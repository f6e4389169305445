"""Webhook delivery throughput: deliveries per second from a SQLite outbox
to a local receiver in another process, over persistent connections.

    python bench/webhooks.py [--events N] [--repeat K]

Prints one line per run and the median. A benchmark, not a test: nothing
here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

RECEIVER = textwrap.dedent(
    """
    import sys
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Hook(Resource):
        isLeaf = True
        def render_POST(self, request):
            request.content.read()
            request.setResponseCode(204)
            return b""

    reactor.listenTCP(int(sys.argv[1]), Site(Hook()), interface="127.0.0.1")
    reactor.run()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(path: str, app_id: str, events: int) -> None:
    """``events`` pending events, one per session (no ordering waits)."""
    with sqlite3.connect(path) as db:
        sessions = [f"bench-{uuid.uuid4()}" for _ in range(events)]
        db.executemany(
            "INSERT INTO sessions (session_uuid, app_id, node_id, fs_node, channel_uuid, job_uuid, "
            "to_number, from_number, timeout_sec, max_duration_sec, metadata_json, status, started_at) "
            f"VALUES (?, '{app_id}', 'bench', 'fs1', ?, NULL, '0527121102', '0721234567', 30, 3600, "
            "'{\"order\":17}', 'ended', 0)",
            ((sid, sid[6:]) for sid in sessions),
        )
        now = time.time()
        db.executemany(
            "INSERT INTO session_events (event_id, session_uuid, sequence, event, status, occurred_at, "
            "delivery_state, attempts, next_attempt_at) VALUES (?, ?, 1, 'session.dialing', 'dialing', ?, "
            "'pending', 0, ?)",
            ((f"evt_{uuid.uuid4().hex}", sid, now, now) for sid in sessions),
        )


def run_once(events: int) -> float:
    """One run in a fresh process-local reactor: deliveries per second."""
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred

    from dialgw.store import open_sqlite_store
    from dialgw.webhooks.sender import WebhookSender

    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    directory = tempfile.mkdtemp(prefix="dialgw-bench-")
    path = os.path.join(directory, "dialgw.sqlite")
    result: dict[str, float] = {}

    async def main() -> None:
        store = await open_sqlite_store(reactor, path)
        app, _ = await store.create_app("bench", f"http://127.0.0.1:{port}/hook", ["0721234567"], time.time())
        fill(path, app.app_id, events)
        for _ in range(100):  # wait for the receiver to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await task.deferLater(reactor, 0.05, lambda: None)
        sender = WebhookSender(store=store, reactor=reactor, clock=reactor, max_in_flight=200, per_host=20)
        started = time.perf_counter()
        sender.startService()
        while await store.count_pending_events():
            await task.deferLater(reactor, 0.05, lambda: None)
        result["rate"] = events / (time.perf_counter() - started)
        await sender.stopService()
        store.close()

    def done(_):
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()).addBoth(done))
    reactor.run()
    receiver.terminate()
    receiver.wait()
    return result["rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(run_once(args.events))
        return
    rates = []
    for number in range(args.repeat):
        # A fresh process per run: a reactor cannot be restarted.
        out = subprocess.run(
            [sys.executable, __file__, "--once", "--events", str(args.events)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        rates.append(float(out))
        print(f"run {number + 1}: {rates[-1]:8.0f} deliveries/s ({args.events} events, SQLite outbox)")
    print(f"webhooks: median {statistics.median(rates):.0f} deliveries/s over {len(rates)} runs")


if __name__ == "__main__":
    main()
