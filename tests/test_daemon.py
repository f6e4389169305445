"""The daemon as systemd runs it: twistd in a child process, real signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonTests(TestCase):
    timeout = 60

    def start(self, log_format: str) -> tuple[subprocess.Popen, int]:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        api, esl = free_port(), free_port()
        config = directory / "dialgw.conf"
        config.write_text(
            f"[node]\nid = test1\n[api]\nlisten = tcp:{api}:interface=127.0.0.1\n"
            f"[database]\npath = {directory / 'dialgw.sqlite'}\n"
            f"[simulator]\nlisten = tcp:{esl}:interface=127.0.0.1\nheartbeat_sec = 5\n"
            f"[freeswitch:sim]\nendpoint = tcp:host=127.0.0.1:port={esl}\nheartbeat_sec = 5\n"
            f"[log]\nformat = {log_format}\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "--nodaemon", "--pidfile=", "dialgw", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=1) as reply:
                    if json.load(reply)["status"] == "ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(process.stdout.read().decode(errors="replace"))
            time.sleep(0.1)
        return process, api

    def stop(self, process: subprocess.Popen) -> tuple[int, list[str]]:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        return process.returncode, output.decode("utf-8", "replace").splitlines()

    def test_sighup_is_harmless_and_sigterm_exits_cleanly(self) -> None:
        process, api = self.start("text")
        process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=2) as reply:
            self.assertEqual(reply.status, 200)
        code, lines = self.stop(process)
        self.assertIn(code, (0, -signal.SIGTERM), lines)
        self.assertTrue(any("SIGHUP received" in line for line in lines), lines)
        self.assertTrue(any("Main loop terminated" in line for line in lines), lines)

    def test_json_logs(self) -> None:
        process, _ = self.start("json")
        code, lines = self.stop(process)
        self.assertIn(code, (0, -signal.SIGTERM))
        records = [json.loads(line) for line in lines if line.strip()]
        self.assertTrue(records)
        self.assertTrue(any(r.get("log_namespace") == "dialgw.service" for r in records))
        self.assertTrue(all("log_format" in r for r in records))
