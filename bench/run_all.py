"""Every benchmark, one after another, each in its own processes; then one
summary table, also written to ``bench/RESULTS.md`` with the machine, the
versions and the date. What ``make bench`` runs.

    python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script: str, *args: str) -> str:
    """Run one benchmark, showing its output as it comes; return the output."""
    print(f"\n== {script} {' '.join(args)}", flush=True)
    process = subprocess.Popen([sys.executable, os.path.join(HERE, script), *args],
                               stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait():
        raise SystemExit(f"{script} failed ({process.returncode})")
    return "".join(lines)


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("dialgw", "Twisted", "klein", "greenswitch", "gevent", "genesis"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "nproc": str(os.cpu_count()), "cpu": cpu, "python": platform.python_version(),
        "kernel": platform.release(), "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip(),
        **versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (figures noisier)")
    args = parser.parse_args()
    quick = args.quick
    work = tempfile.mkdtemp(prefix="dialgw-bench-")
    files = {name: os.path.join(work, f"{name}.json") for name in ("esl", "tracking", "api")}

    run("esl_parse.py", "--json", files["esl"], *(["--events", "5000"] if quick else []))
    run("tracking.py", "--json", files["tracking"])
    run("dial_api.py", "--json", files["api"], *(["--duration", "3", "--warmup", "1"] if quick else []))
    hooks = run("webhooks.py", *(["--events", "2000"] if quick else []))
    # One more gateway run, sampled by py-spy: where the reactor's time goes.
    profile = run("dial_api.py", "--profile", os.path.join(work, "profile"),
                  *(["--duration", "3", "--warmup", "1"] if quick else ["--duration", "8"]))

    esl = json.load(open(files["esl"]))
    tracking = json.load(open(files["tracking"]))
    api = json.load(open(files["api"]))
    hooks_rate = float(re.search(r"median (\d+) deliveries/s", hooks).group(1))

    rows = []  # (what, figure, ratio, target, met)
    for size in ("4096", "65536"):
        r = esl["ratios"][size]
        peer_rate = esl["medians"][f"{r['fastest_peer']}@{size}"]
        rows.append((f"ESL parse, {int(size) // 1024} KiB chunks: dialgw events/s",
                     f"{esl['medians'][f'dialgw@{size}']:,.0f}",
                     f"{r['vs_peer']:.2f}x {r['fastest_peer']} ({peer_rate:,.0f}); "
                     f"{r['vs_floor']:.2f}x floor",
                     ">= 4x fastest peer", r["vs_peer"] >= 4))
    forged_ok = esl["forged"]["dialgw"] == "USER_BUSY"
    rows.append(("forged Hangup-Cause via %0A in caller name",
                 f"dialgw {esl['forged']['dialgw']}", f"greenswitch {esl['forged']['greenswitch']}",
                 "USER_BUSY kept", forged_ok))
    t = tracking["rows"]
    rows.append(("tracking: us per event at 1k / 10k / 50k live",
                 " / ".join(f"{t[n]['us_per_event']:.1f}" for n in t),
                 f"{tracking['cost_ratio']:.2f}x (50k / 1k)", "<= 1.2x", tracking["cost_ratio"] <= 1.2))
    worst = max(row["bytes_per_session"] for row in t.values())
    rows.append(("tracking: memory per live session", f"{worst / 1024:.2f} KiB", "", "<= 4 KiB", worst <= 4096))
    g, f = api["medians"]["gateway"], api["medians"]["floor"]
    rows.append(("POST /api/v1/dial req/s (p50 / p99 ms)",
                 f"{g['post']['rps']:,.0f} ({g['post']['p50_ms']:.1f} / {g['post']['p99_ms']:.1f})",
                 f"{api['post_ratio']:.2f}x floor ({f['post']['rps']:,.0f}, p99 {f['post']['p99_ms']:.1f})",
                 ">= 1.0x (stretch 1.5x)", api["post_ratio"] >= 1.0))
    rows.append(("POST p99 at 32 connections", f"{g['post']['p99_ms']:.1f} ms", "", "<= 65 ms",
                 g["post"]["p99_ms"] <= 65))
    rows.append(("GET /api/v1/dial/{id} req/s", f"{g['get']['rps']:,.0f}",
                 f"{api['get_ratio']:.2f}x bare Klein ({f['get']['rps']:,.0f})", ">= 0.8x", api["get_ratio"] >= 0.8))
    rows.append(("webhooks: deliveries/s (SQLite outbox)", f"{hooks_rate:,.0f}", "", ">= 1,000/s", hooks_rate >= 1000))

    header = "| what | dialgw | ratio | target | met |\n|---|---|---|---|---|\n"
    table = header + "".join(f"| {a} | {b} | {c} | {d} | {'yes' if e else '**no**'} |\n" for a, b, c, d, e in rows)
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print("\n== summary\n" + table)
    text = (
        "# Benchmark results\n\n"
        f"Written by `make bench` (`bench/run_all.py{' --quick' if quick else ''}`) on {when}. "
        "Medians of interleaved runs, all measured side by side in the same run; "
        "figures are for this machine only, the ratios are what to compare.\n\n"
        + table
        + "\n## Where the dial API's time goes\n\n"
        "`bench/dial_api.py --profile` (py-spy on the gateway during the POST and GET runs; "
        "`bench/profile_summary.py` gives each sample of the reactor thread to the part nearest "
        "the top of its stack):\n\n```\n" + profile.strip() + "\n```\n"
        + "\n## Machine and versions\n\n"
        + "".join(f"- {key}: {value}\n" for key, value in info.items())
        + "\n## How\n\n"
        "- ESL parse: `bench/esl_parse.py`, ~20k events from `tests/fixtures/freeswitch/call_*.raw`; "
        "greenswitch through `ESLProtocol.receive_events` over a fake socket file, genesis through "
        "`Protocol.handler` over an `asyncio.StreamReader` fed chunk by chunk (no sockets).\n"
        "- Tracking: `bench/tracking.py`, `CallTracker.on_event` with a fake store and links, real events.\n"
        f"- Dial API: `bench/dial_api.py`, wrk -c{api['connections']} for {api['duration']:g} s, one `twistd dialgw` "
        "with the FreeSWITCH simulator in its own process, vs `bench/floor_http.py`.\n"
        "- Webhooks: `bench/webhooks.py`.\n"
    )
    with open(os.path.join(HERE, "RESULTS.md"), "w") as out:
        out.write(text)
    print(f"wrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
