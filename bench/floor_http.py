"""The HTTP floor: a bare Klein server, to compare dialgw's API with.

    python bench/floor_http.py PORT DB_PATH

``POST /api/v1/dial`` parses the JSON body, does one INSERT through adbapi
into a SQLite file (WAL, synchronous=NORMAL, busy_timeout, one connection:
the settings dialgw uses) and answers 202 with a small JSON body once the
row is committed. ``GET /status`` answers a fixed JSON body (the bare Klein
GET). Nothing else: no auth, no validation, no limits, no ESL.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import uuid

from klein import Klein
from twisted.enterprise import adbapi
from twisted.internet import reactor
from twisted.web.server import Site

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions (session_uuid TEXT PRIMARY KEY, app_id TEXT, to_number TEXT, "
    "from_number TEXT, timeout_sec INTEGER, metadata_json TEXT, status TEXT, started_at REAL)"
)


def prepare(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")


def make_app(pool: adbapi.ConnectionPool) -> Klein:
    app = Klein()

    @app.route("/api/v1/dial", methods=["POST"])
    async def dial(request):
        body = json.loads(request.content.read())
        session_uuid = f"floor-{uuid.uuid4()}"
        await pool.runOperation(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, 'dialing', ?)",
            (session_uuid, request.getHeader("X-App-ID"), body["to"], body["from"],
             int(body.get("timeout_sec", 30)), json.dumps(body.get("metadata", {})), time.time()),
        )
        request.setResponseCode(202)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"session_uuid": session_uuid, "status": "dialing"}).encode()

    @app.route("/status", methods=["GET"])
    def status(request):
        request.setHeader("Content-Type", "application/json")
        return b'{"status":"ok"}'

    return app


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with sqlite3.connect(path) as db:
        prepare(db)
        db.execute(SCHEMA)
    pool = adbapi.ConnectionPool(
        "sqlite3", path, cp_min=1, cp_max=1, check_same_thread=False, cp_openfun=prepare
    )
    reactor.listenTCP(port, Site(make_app(pool).resource()), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
