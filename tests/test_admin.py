"""Tests for dialgw-admin against a temporary config and SQLite file.

Store commands run through `dialgw.admin.run` under trial's reactor (the
code `main` hands to ``task.react``); `main` itself is tested in-process for
everything that needs no reactor, and once in a subprocess end to end.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import uuid

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dialgw.admin import main, run
from dialgw.store import Session, open_sqlite_store
from dialgw.store.schema import DATA_TABLES
from tests import pg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
[node]
id = acW68

[database]
path = {path}

[freeswitch:fs1]
endpoint = tcp:host=127.0.0.1:port=8021
"""


class AdminTests(TestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        self.db_path = os.path.join(self.directory, "dialgw.sqlite")
        self.config = os.path.join(self.directory, "dialgw.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(path=self.db_path))

    async def admin(self, *argv: str) -> tuple[int, object, str]:
        """Run one command; its exit code, parsed stdout (or None) and stderr."""
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--config", self.config, *argv], out, err)
        return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()

    async def ok(self, *argv: str) -> object:
        code, out, err = await self.admin(*argv)
        self.assertEqual((code, err), (0, ""), argv)
        return out

    async def fails(self, code: int, *argv: str) -> str:
        """Assert the command fails with ``code`` and one error line; return it."""
        got, out, err = await self.admin(*argv)
        self.assertEqual(got, code, f"{argv}: {err}")
        self.assertIsNone(out, argv)
        self.assertTrue(err.startswith("dialgw-admin: error: "), err)
        self.assertEqual(err.count("\n"), 1, err)
        return err

    async def create(self, name: str = "shop", *caller_ids: str) -> dict:
        numbers = caller_ids or ("0721234567",)
        args = ["app", "create", "--name", name, "--webhook-url", "https://example.com/hooks"]
        for number in numbers:
            args += ["--caller-id", number]
        return await self.ok(*args)

    async def test_create_prints_secrets_once(self) -> None:
        created = await self.create("shop", "0721234567", "021234567")
        self.assertRegex(created["app_id"], r"^app_[A-Za-z0-9_-]{16}$")
        self.assertRegex(created["api_key"], r"^dgk_")
        self.assertRegex(created["webhook_secret"], r"^whsec_")
        self.assertEqual(created["caller_ids"], ["021234567", "0721234567"])
        self.assertEqual((created["name"], created["webhook_url"], created["enabled"]),
                         ("shop", "https://example.com/hooks", True))
        shown = await self.ok("app", "show", created["app_id"])
        listed = await self.ok("app", "list")
        for view in (shown, listed[0]):
            self.assertNotIn("api_key", view)
            self.assertNotIn("webhook_secret", view)
            self.assertNotIn(created["api_key"], json.dumps(view))
            self.assertNotIn(created["webhook_secret"], json.dumps(view))
        self.assertEqual(shown["live_sessions"], 0)
        self.assertEqual([a["app_id"] for a in listed], [created["app_id"]])
        # The key works against the store the daemon uses.
        store = await open_sqlite_store(reactor, self.db_path)
        self.addCleanup(store.close)
        self.assertIsNotNone(await store.authenticate(created["app_id"], created["api_key"]))

    async def test_update(self) -> None:
        app_id = (await self.create())["app_id"]
        updated = await self.ok("app", "update", app_id, "--name", "renamed", "--webhook-url", "http://h:8080/x",
                                "--disable", "--dials-per-sec", "2.5", "--burst", "4", "--max-concurrent", "7")
        self.assertEqual(
            (updated["name"], updated["webhook_url"], updated["enabled"], updated["dials_per_sec"],
             updated["burst"], updated["max_concurrent"]),
            ("renamed", "http://h:8080/x", False, 2.5, 4, 7),
        )
        updated = await self.ok("app", "update", app_id, "--enable", "--burst", "default")
        self.assertEqual((updated["enabled"], updated["burst"], updated["dials_per_sec"]), (True, None, 2.5))

    async def test_rotate_key(self) -> None:
        created = await self.create()
        rotated = await self.ok("app", "rotate-key", created["app_id"])
        self.assertEqual(rotated["app_id"], created["app_id"])
        self.assertNotEqual(rotated["api_key"], created["api_key"])
        store = await open_sqlite_store(reactor, self.db_path)
        self.addCleanup(store.close)
        self.assertIsNone(await store.authenticate(created["app_id"], created["api_key"]))
        self.assertIsNotNone(await store.authenticate(created["app_id"], rotated["api_key"]))

    async def test_rotate_webhook_secret(self) -> None:
        created = await self.create()
        rotated = await self.ok("app", "rotate-webhook-secret", created["app_id"])
        self.assertRegex(rotated["webhook_secret"], r"^whsec_")
        self.assertNotEqual(rotated["webhook_secret"], created["webhook_secret"])
        self.assertRegex(rotated["previous_webhook_secret_expires_at"], r"Z$")
        shown = await self.ok("app", "show", created["app_id"])
        self.assertEqual(shown["previous_webhook_secret_expires_at"], rotated["previous_webhook_secret_expires_at"])

    async def test_caller_ids(self) -> None:
        app_id = (await self.create())["app_id"]
        added = await self.ok("app", "caller-id", "add", app_id, "0527121102")
        self.assertEqual(added["caller_ids"], ["0527121102", "0721234567"])
        removed = await self.ok("app", "caller-id", "remove", app_id, "0721234567")
        self.assertEqual(removed["caller_ids"], ["0527121102"])
        err = await self.fails(1, "app", "caller-id", "remove", app_id, "0721234567")
        self.assertIn("0721234567 is not on the caller-ID list", err)
        await self.fails(2, "app", "caller-id", "add", app_id, "056123456")
        await self.fails(1, "app", "caller-id", "add", "app_unknown", "0527121102")

    async def test_delete(self) -> None:
        app_id = (await self.create())["app_id"]
        self.assertEqual(await self.ok("app", "delete", app_id), {"app_id": app_id, "deleted": True})
        await self.fails(1, "app", "show", app_id)
        self.assertEqual(await self.ok("app", "list"), [])

    async def test_delete_refuses_live_sessions_without_force(self) -> None:
        app_id = (await self.create())["app_id"]
        store = await open_sqlite_store(reactor, self.db_path)
        channel = str(uuid.uuid4())
        await store.create_session(
            Session(session_uuid=f"acW68-{channel}", app_id=app_id, node_id="acW68", fs_node="fs1",
                    channel_uuid=channel, job_uuid=None, to_number="0527121102", from_number="0721234567",
                    timeout_sec=30, max_duration_sec=3600, metadata_json="{}", started_at=1.0),
            1.0, None)
        store.close()
        err = await self.fails(1, "app", "delete", app_id)
        self.assertIn("1 live session(s)", err)
        self.assertEqual((await self.ok("app", "show", app_id))["live_sessions"], 1)
        await self.ok("app", "delete", app_id, "--force")
        await self.fails(1, "app", "show", app_id)

    async def test_demo_app_creates_then_rotates(self) -> None:
        first = await self.ok("demo-app")
        second = await self.ok("demo-app")
        self.assertEqual(first["app_id"], second["app_id"])
        self.assertEqual((first["created"], second["created"]), (True, False))
        self.assertNotEqual(first["api_key"], second["api_key"])
        self.assertEqual(first["webhook_secret"], second["webhook_secret"])
        shown = await self.ok("app", "show", first["app_id"])
        self.assertEqual((shown["name"], shown["caller_ids"], shown["webhook_url"]),
                         ("demo", ["0721234567"], "http://127.0.0.1:8099/webhooks"))

    async def test_unknown_app_is_exit_1(self) -> None:
        for argv in (["app", "show", "app_unknown"], ["app", "rotate-key", "app_unknown"],
                     ["app", "rotate-webhook-secret", "app_unknown"], ["app", "delete", "app_unknown"],
                     ["app", "update", "app_unknown", "--enable"]):
            err = await self.fails(1, *argv)
            self.assertIn("no app with id app_unknown", err)

    async def test_usage_errors_are_exit_2(self) -> None:
        url = ["--webhook-url", "https://example.com/h"]
        cases = [
            ("no command", []),
            ("unknown command", ["app", "frobnicate"]),
            ("create without caller id", ["app", "create", "--name", "x", *url]),
            ("create without name", ["app", "create", *url, "--caller-id", "0721234567"]),
            ("bad caller id", ["app", "create", "--name", "x", *url, "--caller-id", "+972721234567"]),
            ("ftp webhook", ["app", "create", "--name", "x", "--webhook-url", "ftp://h/x", "--caller-id", "0721234567"]),
            ("webhook without host", ["app", "create", "--name", "x", "--webhook-url", "http:///x",
                                      "--caller-id", "0721234567"]),
            ("webhook with space", ["app", "create", "--name", "x", "--webhook-url", "http://h/a b",
                                    "--caller-id", "0721234567"]),
            ("empty name", ["app", "create", "--name", " ", *url, "--caller-id", "0721234567"]),
            ("nothing to update", ["app", "update", "app_x"]),
            ("enable and disable", ["app", "update", "app_x", "--enable", "--disable"]),
            ("zero rate", ["app", "update", "app_x", "--dials-per-sec", "0"]),
            ("burst not int", ["app", "update", "app_x", "--burst", "1.5"]),
            ("caller-id verb", ["app", "caller-id", "replace", "app_x", "0721234567"]),
        ]
        for name, argv in cases:
            got, out, err = await self.admin(*argv)
            self.assertEqual(got, 2, f"{name}: {err}")
            self.assertTrue(err.startswith("dialgw-admin: error: ") and err.count("\n") == 1, f"{name}: {err!r}")
        self.assertFalse(os.path.exists(self.db_path) and await self.ok("app", "list"), "nothing was created")

    async def test_missing_database_directory_is_exit_1(self) -> None:
        with open(self.config, "w") as f:
            f.write(CONFIG.format(path=os.path.join(self.directory, "nope", "db.sqlite")))
        err = await self.fails(1, "app", "list")
        self.assertIn("does not exist", err)

    # --- main(), in process: no reactor needed for these

    def main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def test_check_config_good(self) -> None:
        code, out, err = self.main("--config", self.config, "check-config")
        self.assertEqual((code, err), (0, ""))
        summary = json.loads(out)
        self.assertEqual((summary["ok"], summary["node"], summary["freeswitch"]), (True, "acW68", ["fs1"]))

    def test_check_config_shipped_files(self) -> None:
        for name in ("dialgw.conf", "dialgw-dev.conf"):
            code, out, err = self.main("--config", os.path.join(REPO, "etc", name), "check-config")
            self.assertEqual((code, err), (0, ""), name)

    def test_check_config_bad_is_one_line_exit_2(self) -> None:
        with open(self.config, "a") as f:
            f.write("max_cps = abc\n")
        code, out, err = self.main("--config", self.config, "check-config")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "dialgw-admin: error: [freeswitch:fs1] max_cps: must be an integer between 1 and "
                              "10000, got 'abc'\n")

    def test_missing_config_is_exit_2(self) -> None:
        code, out, err = self.main("--config", os.path.join(self.directory, "missing.conf"), "app", "list")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("cannot read config file", err)
        self.assertEqual(err.count("\n"), 1)

    def test_usage_error_in_main_is_one_line_exit_2(self) -> None:
        code, out, err = self.main("--config", self.config, "app", "create", "--name", "x")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertTrue(err.startswith("dialgw-admin: error: the following arguments are required"), err)

    async def test_main_runs_store_commands_under_react(self) -> None:
        """The console script path: a fresh process, task.react, exit codes."""

        def admin(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "dialgw.admin", "--config", self.config, *argv],
                capture_output=True, text=True, cwd=REPO, timeout=60,
                env={**os.environ, "PYTHONPATH": REPO},
            )

        created = await deferToThread(admin, "app", "create", "--name", "cli", "--webhook-url", "http://h/x",
                                      "--caller-id", "0721234567")
        self.assertEqual((created.returncode, created.stderr), (0, ""))
        app_id = json.loads(created.stdout)["app_id"]
        missing = await deferToThread(admin, "app", "show", "app_unknown")
        self.assertEqual((missing.returncode, missing.stdout), (1, ""))
        self.assertEqual(missing.stderr, "dialgw-admin: error: no app with id app_unknown\n")
        shown = await self.ok("app", "show", app_id)
        self.assertEqual(shown["name"], "cli")


class MigrateToPostgreSQLTests(TestCase):
    """``migrate-to-postgresql``: the SQLite file into a fresh PostgreSQL database."""

    def setUp(self) -> None:
        self.dsn = pg.create_database(self)
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        self.db_path = os.path.join(self.directory, "dialgw.sqlite")
        self.config = os.path.join(self.directory, "dialgw.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(path=self.db_path))

    async def admin(self, *argv: str, config: str | None = None) -> tuple[int, object, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--config", config or self.config, *argv], out, err)
        return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()

    async def ok(self, *argv: str, config: str | None = None) -> object:
        code, out, err = await self.admin(*argv, config=config)
        self.assertEqual((code, err), (0, ""), argv)
        return out

    async def fails(self, *argv: str) -> str:
        code, out, err = await self.admin(*argv)
        self.assertEqual((code, out), (1, None), err)
        self.assertTrue(err.startswith("dialgw-admin: error: ") and err.count("\n") == 1, err)
        return err

    async def fill(self) -> dict:
        created = await self.ok("app", "create", "--name", "shop", "--webhook-url", "https://example.com/h",
                                "--caller-id", "0721234567", "--caller-id", "021234567")
        await self.ok("app", "update", created["app_id"], "--burst", "4")
        await self.ok("app", "rotate-webhook-secret", created["app_id"])
        store = await open_sqlite_store(reactor, self.db_path)
        try:
            channel = str(uuid.uuid4())
            await store.create_session(
                Session(session_uuid=f"acW68-{channel}", app_id=created["app_id"], node_id="acW68", fs_node="fs1",
                        channel_uuid=channel, job_uuid=None, to_number="0527121102", from_number="0721234567",
                        timeout_sec=30, max_duration_sec=3600, metadata_json='{"a": "\u05d0"}', started_at=1.5),
                1.5, None)
            await store.record_transition(f"acW68-{channel}", "dialing", "answered", 2.25)
        finally:
            store.close()
        return created

    def sqlite_rows(self, table: str) -> list:
        db = sqlite3.connect(self.db_path)
        try:
            return sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        finally:
            db.close()

    async def test_copies_every_table_then_the_gateway_runs_on_postgresql(self) -> None:
        created = await self.fill()
        result = await self.ok("migrate-to-postgresql", "--dsn", self.dsn)
        self.assertEqual(result["source"], self.db_path)
        self.assertRegex(result["target"], r"^PostgreSQL database dialgw_test_[0-9a-f]+ on 127\.0\.0\.1")
        self.assertEqual(result["copied"], {"apps": 1, "app_caller_ids": 2, "sessions": 1, "session_events": 2,
                                            "webhook_attempts": 0, "idempotency_keys": 0})
        for table in DATA_TABLES:
            self.assertEqual(sorted(pg.query(self.dsn, f"SELECT * FROM {table}"), key=repr),
                             self.sqlite_rows(table), table)
        # The user then switches [database] to postgresql: same apps, same key.
        pg_config = os.path.join(self.directory, "pg.conf")
        with open(pg_config, "w") as f:
            f.write(CONFIG.format(path=self.db_path).replace(
                "[database]\n", f"[database]\nbackend = postgresql\ndsn = {self.dsn}\n"))
        self.assertEqual(await self.ok("app", "list", config=pg_config), await self.ok("app", "list"))
        shown = await self.ok("app", "show", created["app_id"], config=pg_config)
        self.assertEqual((shown["burst"], shown["live_sessions"]), (4, 1))

    async def test_a_target_holding_data_is_refused(self) -> None:
        await self.fill()
        await self.ok("migrate-to-postgresql", "--dsn", self.dsn)
        err = await self.fails("migrate-to-postgresql", "--dsn", self.dsn)
        self.assertIn("already holds dialgw data (apps: 1, app_caller_ids: 2, sessions: 1", err)
        self.assertEqual(pg.query(self.dsn, "SELECT COUNT(*) FROM apps"), [(1,)])

    async def test_no_sqlite_file_is_an_error_and_creates_none(self) -> None:
        err = await self.fails("migrate-to-postgresql", "--dsn", self.dsn)
        self.assertIn(f"no SQLite database at {self.db_path}", err)
        self.assertFalse(os.path.exists(self.db_path))

    async def test_unreachable_target_is_one_line(self) -> None:
        await self.fill()
        err = await self.fails("migrate-to-postgresql", "--dsn",
                               "host=127.0.0.1 port=1 dbname=dialgw user=dialgw password=pw connect_timeout=5")
        self.assertIn("cannot open PostgreSQL database dialgw on 127.0.0.1:1", err)
        self.assertNotIn("password", err)
