"""The API contract: ``docs/openapi.yaml`` = `dialgw.api.openapi.SPEC` = what
``GET /api/v1/openapi.json`` serves = what the gateway does.

The last is checked by schemathesis (every check, bounded examples, a fixed
seed) run as a subprocess against a whole gateway and the FreeSWITCH
simulator on 127.0.0.1; the reactor keeps serving while it runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

import yaml
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

import dialgw
from dialgw.api.openapi import NUMBER_PATTERN, SPEC, build
from tests.gateway import NOW, Harness

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(dialgw.__file__))), "docs", "openapi.yaml")

#: Per API operation; the whole run stays well under a minute.
MAX_EXAMPLES = 40
CALLER_ID = "0721234567"

#: schemathesis' own settings: its positive-data check otherwise expects every
#: well-formed dial to pass, but the spec (and the gateway) refuse a valid
#: dial whose Idempotency-Key was used with another body (422, documented).
SCHEMATHESIS_TOML = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "422", "429", "5xx"]
"""

#: Loaded by schemathesis (SCHEMATHESIS_HOOKS): a generated `from` that is a
#: valid number becomes the app's allowed caller ID, so well-formed dials get
#: past the allow-list (403) and the sessions they create are read, listed and
#: cancelled through the spec's links. Valid stays valid: negative cases stay
#: negative.
HOOKS = f"""\
import re

import schemathesis

NUMBER = re.compile({NUMBER_PATTERN!r})


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict) and isinstance(body.get("from"), str) and NUMBER.search(body["from"]):
        body["from"] = {CALLER_ID!r}
    return body
"""


def statuses(report: str) -> Counter:
    """(method, status) of every response in a schemathesis NDJSON report."""
    seen: Counter = Counter()
    with open(report, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            for interaction in finished["recorder"].get("interactions", {}).values():
                response = interaction.get("response")
                if response is not None:
                    seen[(interaction["request"]["method"], response["status_code"])] += 1
    return seen


class DocumentTests(TestCase):
    def test_docs_file_is_the_generated_document(self) -> None:
        with open(DOCS, encoding="utf-8") as handle:
            self.assertEqual(yaml.safe_load(handle), build(), "run: python -m dialgw.api.openapi > docs/openapi.yaml")

    def test_spec_is_valid_openapi(self) -> None:
        import schemathesis

        self.assertEqual(SPEC["openapi"], "3.0.3")
        schemathesis.openapi.from_dict(build()).validate()

    def test_every_route_is_documented(self) -> None:
        from dialgw.api.app import DialAPI

        routes = {
            (rule.rule.replace("<string:session_uuid>", "{session_uuid}"), method.lower())
            for rule in DialAPI.app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}
        }
        documented = {(path, method) for path, item in SPEC["paths"].items() for method in item if method != "parameters"}
        self.assertEqual(routes, documented)


class LiveContractTests(TestCase):
    timeout = 300

    async def setUp(self) -> None:
        self.harness = Harness(self, start=NOW)
        # The clock does not move during the run: every originate falls in
        # one simulated second, which the switch's own limits must allow.
        self.harness.simulator.sessions_per_second = 100000
        self.harness.simulator.max_sessions = 100000
        sim_port = await self.harness.start_simulator()
        # Room for every dial schemathesis makes: the clock does not move, so
        # no call ends and no token comes back during the run.
        self.gateway = await self.harness.start_gateway(sim_port, max_channels="100000")
        self.app, self.key = await self.harness.store.create_app(
            "contract", "http://127.0.0.1:9/hook", [CALLER_ID], NOW
        )
        await self.harness.store.update_app(self.app.app_id, dials_per_sec=1000.0, burst=100000, max_concurrent=100000)
        self.port = self.gateway.api_port.getHost().port

    async def test_served_document_is_the_spec(self) -> None:
        reply = await self.harness.http.request("GET", "/api/v1/openapi.json")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["content-type"], "application/json")
        self.assertEqual(reply.json(), SPEC)
        self.assertTrue(reply.headers["x-request-id"])

    async def test_schemathesis_finds_nothing(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.mkdir(workdir)
        config = os.path.join(workdir, "schemathesis.toml")
        with open(config, "w") as handle:
            handle.write(SCHEMATHESIS_TOML)
        with open(os.path.join(workdir, "dialgw_contract_hooks.py"), "w") as handle:
            handle.write(HOOKS)
        args = [
            "-m", "schemathesis.cli", "--config-file", config, "run",
            f"http://127.0.0.1:{self.port}/api/v1/openapi.json",
            "--checks", "all",
            # DELETE hangs a call up; the session stays readable (200, status
            # `ended`), as SPEC §1 and the document say. use_after_free assumes
            # DELETE removes the resource, which is not this API's meaning.
            "--exclude-checks", "use_after_free",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", "1",
            "--workers", "1",
            "--generation-database", "none",
            "--request-timeout", "10",
            "--no-color",
            "--report", "ndjson", "--report-dir", workdir,
            "-H", f"X-App-ID: {self.app.app_id}",
            "-H", f"X-API-Key: {self.key}",
        ]
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
        env["SCHEMATHESIS_HOOKS"] = "dialgw_contract_hooks"
        env["PYTHONPATH"] = os.pathsep.join([workdir, *filter(None, [env.get("PYTHONPATH")])])
        started = time.monotonic()
        out, err, code = await getProcessOutputAndValue(sys.executable, args, env=env, path=workdir, reactor=reactor)
        elapsed = time.monotonic() - started
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        self.assertEqual(code, 0, text)
        self.assertLess(elapsed, 120, text)
        reports = [name for name in os.listdir(workdir) if name.endswith(".ndjson")]
        self.assertEqual(len(reports), 1, reports)
        seen = statuses(os.path.join(workdir, reports[0]))
        print(f"schemathesis: {sum(seen.values())} responses in {elapsed:.1f} s: {sorted(seen.items())}")
        self.assertEqual([key for key in seen if key[1] >= 500 and key[1] != 503], [], text)
        # The run reached the API's core, not only its refusals.
        for wanted in [("POST", 202), ("GET", 200), ("DELETE", 202), ("POST", 400), ("GET", 404)]:
            self.assertIn(wanted, seen, sorted(seen.items()))
