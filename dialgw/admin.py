"""``dialgw-admin``: manage apps in the store and check the config file.

Every command prints one JSON value on stdout. A mistake prints one line,
``dialgw-admin: error: ...``, on stderr and exits 2 (usage or config) or 1
(not found, or the command failed). Only ``app create``, the rotations and
``demo-app`` ever print a secret.

``migrate-to-postgresql --dsn DSN`` copies the SQLite database into an
empty PostgreSQL database, for a gateway moving to several nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred

from dialgw.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_config
from dialgw.numbers import is_valid_number
from dialgw.store import (
    UNSET,
    App,
    Store,
    StoreError,
    StoreNotEmptyError,
    open_postgresql_store,
    open_sqlite_store,
    open_store,
)
from dialgw.store.dialect import describe_dsn
from dialgw.timefmt import rfc3339

PROG = "dialgw-admin"

DEMO_APP_NAME = "demo"
DEMO_CALLER_ID = "0721234567"
DEMO_WEBHOOK_URL = "http://127.0.0.1:8099/webhooks"


class AdminError(Exception):
    """A one-line error for stderr, with the exit code it ends in."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise AdminError(message, 2)


# --- argument types: each raises ArgumentTypeError with what is wrong


def _app_name(text: str) -> str:
    if not text.strip() or len(text) > 100 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"a name is 1 to 100 printable characters, got {text!r}")
    return text


def _webhook_url(text: str) -> str:
    if len(text) > 2048 or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"not a usable webhook URL: {text!r}")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a usable webhook URL: {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"a webhook URL is http:// or https:// with a host, got {text!r}")
    return text


def _caller_id(text: str) -> str:
    if not is_valid_number(text):
        raise argparse.ArgumentTypeError(
            f"not an Israeli domestic number (digits only, e.g. 0721234567): {text!r}"
        )
    return text


def _limit_number(text: str) -> float | None:
    if text == "default":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= 100000):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (at most 100000) or 'default', got {text!r}")
    return value


def _limit_int(text: str) -> int | None:
    if text == "default":
        return None
    if not text.isascii() or not text.isdigit() or not (1 <= int(text) <= 10_000_000):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 or 'default', got {text!r}")
    return int(text)


def _dsn(text: str) -> str:
    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError("a PostgreSQL connection string, e.g. 'host=127.0.0.1 dbname=dialgw "
                                         "user=dialgw'")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``dialgw-admin`` command line."""
    parser = _Parser(prog=PROG, description="Manage dialgw apps and check the configuration.")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, metavar="PATH",
                        help=f"the dialgw config file (default {DEFAULT_CONFIG_PATH})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("check-config", help="validate the config file")
    commands.add_parser("demo-app", help="development: create the demo app, or rotate its key")
    migrate = commands.add_parser(
        "migrate-to-postgresql",
        help="copy the SQLite database ([database] path) into an empty PostgreSQL database")
    migrate.add_argument("--dsn", required=True, type=_dsn, metavar="DSN",
                         help="libpq connection string of the target, e.g. 'host=127.0.0.1 dbname=dialgw "
                              "user=dialgw'")

    app = commands.add_parser("app", help="manage apps").add_subparsers(
        dest="app_command", required=True, metavar="APP_COMMAND")

    create = app.add_parser("create", help="create an app; prints its API key once")
    create.add_argument("--name", required=True, type=_app_name)
    create.add_argument("--webhook-url", required=True, type=_webhook_url)
    create.add_argument("--caller-id", required=True, action="append", type=_caller_id, metavar="NUMBER",
                        help="a number the app may call from (repeat for more)")

    app.add_parser("list", help="list apps")
    app.add_parser("show", help="show one app").add_argument("app_id")

    update = app.add_parser("update", help="change an app")
    update.add_argument("app_id")
    update.add_argument("--name", type=_app_name)
    update.add_argument("--webhook-url", type=_webhook_url)
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument("--disable", dest="enabled", action="store_const", const=False)
    update.add_argument("--dials-per-sec", type=_limit_number, default=UNSET, metavar="N",
                        help="dial rate (or 'default' for the config's)")
    update.add_argument("--burst", type=_limit_int, default=UNSET, metavar="N")
    update.add_argument("--max-concurrent", type=_limit_int, default=UNSET, metavar="N")

    app.add_parser("rotate-key", help="replace the API key; prints the new key").add_argument("app_id")
    app.add_parser("rotate-webhook-secret",
                   help="replace the webhook secret; the old one signs too for 24 h").add_argument("app_id")
    delete = app.add_parser("delete", help="delete an app with its sessions")
    delete.add_argument("app_id")
    delete.add_argument("--force", action="store_true", help="delete even while calls are live")

    caller_id = app.add_parser("caller-id", help="change an app's caller-ID allow-list").add_subparsers(
        dest="caller_id_command", required=True, metavar="add|remove")
    for name in ("add", "remove"):
        sub = caller_id.add_parser(name)
        sub.add_argument("app_id")
        sub.add_argument("number", type=_caller_id)
    return parser


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    """Parse the command line and load the config; AdminError (code 2) if either is wrong."""
    args = build_parser().parse_args(list(argv))
    try:
        settings = load_config(args.config)
    except ConfigError as e:
        raise AdminError(str(e), 2) from None
    return args, settings


def app_view(app: App, now: float) -> dict[str, Any]:
    """An app as printed: no key hash, no webhook secret."""
    rotating = app.previous_secret_expires_at if len(app.signing_secrets(now)) > 1 else None
    return {
        "app_id": app.app_id,
        "name": app.name,
        "webhook_url": app.webhook_url,
        "caller_ids": sorted(app.caller_ids),
        "enabled": app.enabled,
        "dials_per_sec": app.dials_per_sec,
        "burst": app.burst,
        "max_concurrent": app.max_concurrent,
        "created_at": rfc3339(app.created_at),
        "previous_webhook_secret_expires_at": rfc3339(rotating),
    }


async def _existing(store: Store, app_id: str) -> App:
    app = await store.get_app(app_id)
    if app is None:
        raise AdminError(f"no app with id {app_id}")
    return app


async def execute(store: Store, args: argparse.Namespace, now: float) -> Any:
    """Run one store command; return what to print."""
    if args.command == "demo-app":
        return await _demo_app(store, now)
    command = args.app_command
    if command == "create":
        app, api_key = await store.create_app(args.name, args.webhook_url, set(args.caller_id), now)
        return {**app_view(app, now), "api_key": api_key, "webhook_secret": app.webhook_secret}
    if command == "list":
        return [app_view(app, now) for app in await store.list_apps()]
    if command == "show":
        app = await _existing(store, args.app_id)
        return {**app_view(app, now), "live_sessions": await store.count_live_sessions(app.app_id)}
    if command == "update":
        changes = {
            key: value
            for key, value in (("name", args.name), ("webhook_url", args.webhook_url), ("enabled", args.enabled))
            if value is not None
        }
        changes.update(
            (key, value)
            for key, value in (("dials_per_sec", args.dials_per_sec), ("burst", args.burst),
                               ("max_concurrent", args.max_concurrent))
            if value is not UNSET
        )
        if not changes:
            raise AdminError("nothing to update: give --name, --webhook-url, --enable, --disable or a limit", 2)
        updated = await store.update_app(args.app_id, **changes)
        if updated is None:
            raise AdminError(f"no app with id {args.app_id}")
        return app_view(updated, now)
    if command == "rotate-key":
        new_key = await store.rotate_key(args.app_id)
        if new_key is None:
            raise AdminError(f"no app with id {args.app_id}")
        return {"app_id": args.app_id, "api_key": new_key}
    if command == "rotate-webhook-secret":
        secret = await store.rotate_webhook_secret(args.app_id, now)
        if secret is None:
            raise AdminError(f"no app with id {args.app_id}")
        app = await _existing(store, args.app_id)
        return {"app_id": app.app_id, "webhook_secret": secret,
                "previous_webhook_secret_expires_at": rfc3339(app.previous_secret_expires_at)}
    if command == "delete":
        app = await _existing(store, args.app_id)
        live = await store.count_live_sessions(app.app_id)
        if live and not args.force:
            raise AdminError(f"app {app.app_id} has {live} live session(s); disable it and let them end, "
                             "or use --force")
        await store.delete_app(app.app_id)
        return {"app_id": app.app_id, "deleted": True}
    if command == "caller-id":
        app = await _existing(store, args.app_id)
        if args.caller_id_command == "add":
            await store.add_caller_id(app.app_id, args.number)
        elif not await store.remove_caller_id(app.app_id, args.number):
            raise AdminError(f"{args.number} is not on the caller-ID list of app {app.app_id}")
        return app_view(await _existing(store, app.app_id), now)
    raise AdminError(f"unknown command {command!r}", 2)  # argparse prevents this


async def _demo_app(store: Store, now: float) -> dict[str, Any]:
    """Create the ``demo`` app, or give the existing one a new key."""
    existing = [app for app in await store.list_apps() if app.name == DEMO_APP_NAME]
    if existing:
        app = existing[0]
        api_key = await store.rotate_key(app.app_id)
        created = False
    else:
        app, api_key = await store.create_app(DEMO_APP_NAME, DEMO_WEBHOOK_URL, {DEMO_CALLER_ID}, now)
        created = True
    return {"app_id": app.app_id, "api_key": api_key, "webhook_secret": app.webhook_secret, "created": created}


def _print(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def _print_error(error: AdminError, err: TextIO) -> int:
    err.write(f"{PROG}: error: {error.message}\n")
    err.flush()
    return error.code


async def migrate_to_postgresql(reactor: Any, sqlite_path: str, dsn: str) -> dict[str, Any]:
    """Copy the SQLite database at ``sqlite_path`` into the empty PostgreSQL database ``dsn``.

    The target gets the schema, then every row in one transaction (all or
    nothing); a target already holding dialgw data is refused. The source
    is only read (after bringing its schema up to date, as the daemon
    would). Returns what to print: the rows copied per table.
    """
    if not os.path.isfile(sqlite_path):
        raise AdminError(f"no SQLite database at {sqlite_path} (the [database] path of the config)")
    try:
        source = await open_sqlite_store(reactor, sqlite_path)
    except StoreError as e:
        raise AdminError(str(e)) from None
    source.close()
    try:
        target = await open_postgresql_store(reactor, dsn)
    except StoreError as e:
        raise AdminError(str(e)) from None
    where = describe_dsn(dsn)
    try:
        copied = await target.copy_from_sqlite(sqlite_path)
    except StoreNotEmptyError as e:
        raise AdminError(f"refusing to copy into {where}: {e}") from None
    except Exception as e:
        raise AdminError(f"copy into {where} failed, no rows were copied: {e}") from None
    finally:
        target.close()
    return {"source": os.path.abspath(sqlite_path), "target": where, "copied": copied}


async def run_store_command(reactor: Any, args: argparse.Namespace, settings: Settings,
                            stdout: TextIO, stderr: TextIO) -> int:
    """Open the store, run the command, print its result; the exit code."""
    if args.command == "migrate-to-postgresql":
        try:
            result = await migrate_to_postgresql(reactor, settings.database.path, args.dsn)
        except AdminError as e:
            return _print_error(e, stderr)
        _print(result, stdout)
        return 0
    try:
        store = await open_store(reactor, settings.database)
    except StoreError as e:
        return _print_error(AdminError(str(e)), stderr)
    try:
        result = await execute(store, args, reactor.seconds())
    except AdminError as e:
        return _print_error(e, stderr)
    except Exception as e:
        return _print_error(AdminError(f"{args.command} failed: {e}"), stderr)
    finally:
        store.close()
    _print(result, stdout)
    return 0


async def run(reactor: Any, argv: Sequence[str], stdout: TextIO | None = None,
              stderr: TextIO | None = None) -> int:
    """The whole command inside a running reactor; the exit code.

    `main` hands store commands to this through ``task.react``; tests call
    it under trial's reactor.
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    code, args, settings = _answer_without_store(argv, out, err)
    if code is not None:
        return code
    return await run_store_command(reactor, args, settings, out, err)


def _answer_without_store(argv: Sequence[str], out: TextIO, err: TextIO) -> tuple[int | None, Any, Any]:
    """Parse; usage and config errors, ``--help`` and ``check-config`` are
    answered here (their exit code), else ``(None, args, settings)``."""
    try:
        args, settings = parse_arguments(argv)
    except AdminError as e:
        return _print_error(e, err), None, None
    except SystemExit as e:  # --help
        return int(e.code or 0), None, None
    if args.command == "check-config":
        _print(_config_summary(args.config, settings), out)
        return 0, args, settings
    return None, args, settings


def _config_summary(path: str, settings: Settings) -> dict[str, Any]:
    return {
        "config": path,
        "ok": True,
        "node": settings.node.id,
        "api": settings.api.listen,
        "database": settings.database.backend,
        "freeswitch": [fs.name for fs in settings.freeswitch],
        "simulator": settings.simulator is not None,
    }


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """The ``dialgw-admin`` console script; returns the exit code.

    Usage errors, config errors and ``check-config`` need no reactor; the
    store commands run under ``twisted.internet.task.react``.
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    code, args, settings = _answer_without_store(sys.argv[1:] if argv is None else argv, out, err)
    if code is not None:
        return code

    from twisted.internet.task import react

    async def command(reactor: Any) -> None:
        code = await run_store_command(reactor, args, settings, out, err)
        if code:
            raise SystemExit(code)

    try:
        react(lambda reactor: Deferred.fromCoroutine(command(reactor)))
    except SystemExit as e:
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
