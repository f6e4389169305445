"""Dial API throughput: ``POST /api/v1/dial`` and ``GET /api/v1/dial/{id}``
of one dialgw process, against the Klein floor of `bench/floor_http.py`.

    python bench/dial_api.py [--duration S] [--repeat K] [--connections C]

wrk (``-c 32`` by default, one thread, `bench/wrk.lua`) drives each server
on 127.0.0.1. The gateway is ``twistd dialgw`` with a config of its own: a
SQLite file in a temp dir, the FreeSWITCH simulator in another process on loopback
(every dial goes to a number ending in 6: rings, is answered and stays up),
``max_channels``/``max_cps`` at their maxima, a demo app made with
``dialgw-admin app create`` and limits raised with ``app update``; its
webhooks go to a small receiver in another process. Each repetition starts
fresh servers and databases; repetitions interleave gateway and floor, and
medians are printed. A benchmark, not a test: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
LUA = os.path.join(HERE, "wrk.lua")
sys.path.insert(0, HERE)

import profile_summary  # noqa: E402
from webhooks import RECEIVER  # noqa: E402  (the same 204 receiver)

#: py-spy samples per second with --profile.
PROFILE_RATE = 250

CONFIG = """\
[node]
id = bench

[api]
listen = tcp:{api_port}:interface=127.0.0.1

[database]
backend = sqlite
path = {directory}/dialgw.sqlite

[freeswitch:sim]
endpoint = tcp:host=127.0.0.1:port={sim_port}
password = ClueCon
heartbeat_sec = 20
max_channels = 100000
max_cps = 10000

[log]
format = text
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, headers: dict | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_for(url: str, want: int = 200, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http("GET", url)[0] == want:
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer {want} within {timeout}s")


def wrk(url: str, duration: float, connections: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", LUA, url],
        check=True, capture_output=True, text=True, env={**os.environ, **env},
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def wait_for_empty_outbox(base: str, timeout: float = 180.0) -> None:
    """Until /metrics shows no webhook waiting.

    The gauge is refreshed every 10 s: the first reading that counts is one
    taken after the run ended.
    """
    time.sleep(10.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = http("GET", base + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("dialgw_webhook_backlog ") and float(line.split()[1]) == 0:
                return
        time.sleep(0.5)
    raise SystemExit("the webhook outbox did not drain")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def admin(config: str, *args: str) -> dict:
    out = subprocess.run(
        [os.path.join(BIN, "dialgw-admin"), "--config", config, *args],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def run_gateway(duration: float, connections: int, warmup: float, profile: str | None = None) -> dict[str, dict]:
    directory = tempfile.mkdtemp(prefix="dialgw-bench-api-")
    hook_port, api_port, sim_port = free_port(), free_port(), free_port()
    config = os.path.join(directory, "dialgw.conf")
    with open(config, "w") as f:
        f.write(CONFIG.format(api_port=api_port, sim_port=sim_port, directory=directory))
    created = admin(config, "app", "create", "--name", "bench",
                    "--webhook-url", f"http://127.0.0.1:{hook_port}/hook", "--caller-id", "0721234567")
    app_id, key = created["app_id"], created["api_key"]
    admin(config, "app", "update", app_id, "--dials-per-sec", "100000", "--burst", "100000",
          "--max-concurrent", "1000000")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(hook_port)])
    # The switch in a process of its own, with capacity to spare, as a real
    # FreeSWITCH would be: the gateway process does only the gateway's work.
    simulator = subprocess.Popen(
        [os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=", "--logfile=/dev/null", "dialgw-simulator",
         "--listen", f"tcp:{sim_port}:interface=127.0.0.1", "--max-sessions", "1000000",
         "--sessions-per-second", "100000"],
        cwd=directory,
    )
    with open(os.path.join(directory, "twistd.log"), "w") as log:
        gateway = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=", "dialgw", "--config", config],
            cwd=directory, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(base + "/healthz")
        auth = {"X-App-ID": app_id, "X-API-Key": key}
        status, body = http("POST", base + "/api/v1/dial", {**auth, "Content-Type": "application/json"},
                            b'{"to": "0521000006", "from": "0721234567"}')
        if status != 202:
            raise SystemExit(f"gateway refused the first dial: {status} {body!r}")
        session = json.loads(body)["session_uuid"]
        env = {"BENCH_APP": app_id, "BENCH_KEY": key}
        if warmup:
            wrk(base + "/api/v1/dial", warmup, connections, {**env, "BENCH_METHOD": "POST"})
        result = {}
        for kind, url, method in (("post", base + "/api/v1/dial", "POST"),
                                  ("get", f"{base}/api/v1/dial/{session}", "GET")):
            spy = None
            if profile:
                # py-spy samples the gateway during this run (collapsed stacks).
                spy = subprocess.Popen(
                    [os.path.join(BIN, "py-spy"), "record", "--pid", str(gateway.pid), "--format", "raw",
                     "--rate", str(PROFILE_RATE), "--duration", str(int(duration)),
                     "--output", f"{profile}-{kind}.txt"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            result[kind] = wrk(url, duration, connections, {**env, "BENCH_METHOD": method})
            if spy is not None:
                spy.wait()
            if kind == "post":
                # The GET run measures GETs, not the POST run's webhooks
                # still going out: wait until the outbox is empty.
                wait_for_empty_outbox(base)
    finally:
        stop(gateway)
        stop(receiver)
        stop(simulator)
        shutil.rmtree(directory, ignore_errors=True)
    return result


def run_floor(duration: float, connections: int, warmup: float) -> dict[str, dict]:
    directory = tempfile.mkdtemp(prefix="dialgw-bench-floor-")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "floor_http.py"), str(port), os.path.join(directory, "floor.sqlite")]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/status")
        if warmup:
            wrk(base + "/api/v1/dial", warmup, connections, {"BENCH_METHOD": "POST"})
        result = {
            "post": wrk(base + "/api/v1/dial", duration, connections, {"BENCH_METHOD": "POST"}),
            "get": wrk(base + "/status", duration, connections, {"BENCH_METHOD": "GET"}),
        }
    finally:
        stop(server)
        shutil.rmtree(directory, ignore_errors=True)
    return result


def measure(duration: float, repeat: int, connections: int, warmup: float) -> dict:
    runs: dict[str, list[dict]] = {"gateway": [], "floor": []}
    for number in range(repeat):
        for name, run in (("gateway", run_gateway), ("floor", run_floor)):
            runs[name].append(run(duration, connections, warmup))
            post, get = runs[name][-1]["post"], runs[name][-1]["get"]
            print(f"run {number + 1} {name:<8} POST {post['rps']:7.0f} req/s p99 {post['p99_ms']:6.1f} ms "
                  f"(non-2xx {post['non2xx']}); GET {get['rps']:7.0f} req/s", flush=True)
    medians = {
        name: {
            kind: {
                figure: statistics.median(r[kind][figure] for r in results)
                for figure in ("rps", "p50_ms", "p99_ms", "non2xx", "socket_errors")
            }
            for kind in ("post", "get")
        }
        for name, results in runs.items()
    }
    return {
        "runs": runs, "medians": medians, "repeat": repeat, "duration": duration, "connections": connections,
        "post_ratio": medians["gateway"]["post"]["rps"] / medians["floor"]["post"]["rps"],
        "get_ratio": medians["gateway"]["get"]["rps"] / medians["floor"]["get"]["rps"],
    }


def report(result: dict) -> None:
    m = result["medians"]
    print(f"dial API: wrk -c{result['connections']} for {result['duration']:g} s, "
          f"median of {result['repeat']} interleaved runs")
    print(f"{'server':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    rows = (
        ("dialgw POST /api/v1/dial", m["gateway"]["post"]),
        ("floor POST (Klein + adbapi INSERT)", m["floor"]["post"]),
        ("dialgw GET /api/v1/dial/{id}", m["gateway"]["get"]),
        ("floor GET (bare Klein)", m["floor"]["get"]),
    )
    for label, row in rows:
        print(f"{label:<34} {row['rps']:>9,.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['non2xx']:>8.0f}")
    print(f"POST dialgw / floor = {result['post_ratio']:.2f}x (target >= 1.0x, stretch 1.5x); "
          f"p99 {m['gateway']['post']['p99_ms']:.1f} ms (target <= 65 ms); "
          f"GET dialgw / bare Klein = {result['get_ratio']:.2f}x (target >= 0.8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="instead: one gateway run sampled by py-spy (pip install py-spy), "
                             "collapsed stacks written to PREFIX-post.txt and PREFIX-get.txt")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (make bench does it)")
    if args.profile:
        result = run_gateway(args.duration, args.connections, args.warmup, args.profile)
        for kind in ("post", "get"):
            print(f"\n{kind.upper()} {result[kind]['rps']:.0f} req/s, profile {args.profile}-{kind}.txt")
            print(profile_summary.report(f"{args.profile}-{kind}.txt", int(args.duration), PROFILE_RATE))
        return
    result = measure(args.duration, args.repeat, args.connections, args.warmup)
    report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
