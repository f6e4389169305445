"""Apps: their API keys, caller-ID allow-lists, limits and webhook secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from twisted.internet.defer import Deferred

from dialgw.store.base import StoreBase
from dialgw.store.dbapi import Cursor, Row
from dialgw.store.records import APP_COLUMNS, PREVIOUS_SECRET_TTL_SEC, App


class _Unset:
    """Marks an `AppsStore.update_app` limit that is left as it is."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


# Compared against when the app is unknown, so that an unknown app costs the
# same as a wrong key.
_DUMMY_HASH = hash_api_key("dgk_" + "0" * 32)


def new_app_id() -> str:
    """``app_`` and 16 URL-safe random characters."""
    return "app_" + secrets.token_urlsafe(12)


def new_api_key() -> str:
    """``dgk_`` and 192 random bits, URL-safe."""
    return "dgk_" + secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


_APP_COLUMNS = ", ".join(APP_COLUMNS)


class AppsStore(StoreBase):
    """The apps allowed to dial, each with what it may dial as and where its webhooks go."""

    def _get_app(self, txn: Cursor, app_id: str) -> App | None:
        row = self._one(txn, f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = ?", (app_id,))
        return self._with_caller_ids(txn, row) if row is not None else None

    def _with_caller_ids(self, txn: Cursor, row: Row) -> App:
        """The app of an `APP_COLUMNS` row, with its caller-ID allow-list."""
        numbers = self._all(txn, "SELECT number FROM app_caller_ids WHERE app_id = ?", (row["app_id"],))
        return App.from_row(row, frozenset(number["number"] for number in numbers))

    def create_app(self, name: str, webhook_url: str, caller_ids: frozenset[str] | set[str] | list[str],
                   now: float) -> Deferred[tuple[App, str]]:
        """Create an enabled app; fire with it and its API key (shown only now).

        Only the key's SHA-256 is stored. Inputs are stored as given: the
        caller (``dialgw-admin``) validates the URL and the numbers.
        """
        app_id, api_key, secret = new_app_id(), new_api_key(), new_webhook_secret()
        numbers = sorted(set(caller_ids))

        def create(txn: Cursor) -> tuple[App, str]:
            self._insert(txn, "apps", {
                "app_id": app_id,
                "name": name,
                "api_key_hash": hash_api_key(api_key),
                "webhook_url": webhook_url,
                "webhook_secret": secret,
                "enabled": 1,
                "created_at": now,
            })
            for number in numbers:
                self._insert(txn, "app_caller_ids", {"app_id": app_id, "number": number})
            app = self._get_app(txn, app_id)
            assert app is not None
            return app, api_key

        return self.run_interaction("create_app", create, write=True)

    def get_app(self, app_id: str) -> Deferred[App | None]:
        """The app, or None."""
        return self.run_interaction("get_app", self._get_app, app_id, write=False)

    def authenticate(self, app_id: str, api_key: str) -> Deferred[App | None]:
        """The app if it exists, is enabled and ``api_key`` is its key; else None.

        The key is hashed and compared in constant time whether or not the
        app exists.
        """
        return self.run_interaction("authenticate", self._authenticate, app_id, hash_api_key(api_key),
                                    write=False)

    def _authenticate(self, txn: Cursor, app_id: str, presented: str) -> App | None:
        """`authenticate`, given the hash of the key presented."""
        # One read of the app's row: its key hash, then the app itself.
        row = self._one(txn, f"SELECT api_key_hash, {_APP_COLUMNS} FROM apps WHERE app_id = ?", (app_id,))
        stored: str = row["api_key_hash"] if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(presented.encode("ascii"), stored.encode("ascii"))
        if row is None or not matches:
            return None
        app = self._with_caller_ids(txn, row)
        return app if app.enabled else None

    def list_apps(self) -> Deferred[list[App]]:
        """All apps, oldest first."""

        def list_apps(txn: Cursor) -> list[App]:
            numbers: dict[str, set[str]] = {}
            for row in self._all(txn, "SELECT app_id, number FROM app_caller_ids"):
                numbers.setdefault(row["app_id"], set()).add(row["number"])
            rows = self._all(txn, f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created_at, app_id")
            return [App.from_row(row, frozenset(numbers.get(row["app_id"], ()))) for row in rows]

        return self.run_interaction("list_apps", list_apps, write=False)

    def update_app(self, app_id: str, *, name: str | None = None, webhook_url: str | None = None,
                   enabled: bool | None = None, dials_per_sec: float | None = UNSET,
                   burst: int | None = UNSET, max_concurrent: int | None = UNSET) -> Deferred[App | None]:
        """Change the given fields; fire with the app as it now is, or None if unknown.

        ``name``, ``webhook_url`` and ``enabled`` change when not None. The
        limits change when given; None clears an override (the config
        default applies again).
        """
        changes: list[tuple[str, Any]] = []
        if name is not None:
            changes.append(("name", name))
        if webhook_url is not None:
            changes.append(("webhook_url", webhook_url))
        if enabled is not None:
            changes.append(("enabled", 1 if enabled else 0))
        for column, value in (("dials_per_sec", dials_per_sec), ("burst", burst),
                              ("max_concurrent", max_concurrent)):
            if value is not UNSET:
                changes.append((column, value))

        def update(txn: Cursor) -> App | None:
            if changes:
                assignments = ", ".join(f"{column} = ?" for column, _ in changes)
                self._execute(txn, f"UPDATE apps SET {assignments} WHERE app_id = ?",
                              (*[value for _, value in changes], app_id))
            return self._get_app(txn, app_id)

        return self.run_interaction("update_app", update, write=bool(changes))

    def rotate_key(self, app_id: str) -> Deferred[str | None]:
        """Replace the app's API key at once; fire with the new key, or None if unknown."""
        api_key = new_api_key()

        def rotate(txn: Cursor) -> str | None:
            self._execute(txn, "UPDATE apps SET api_key_hash = ? WHERE app_id = ?", (hash_api_key(api_key), app_id))
            return api_key if txn.rowcount == 1 else None

        return self.run_interaction("rotate_key", rotate, write=True)

    def rotate_webhook_secret(self, app_id: str, now: float) -> Deferred[str | None]:
        """New webhook secret; the old one keeps signing for 24 hours.

        Fires with the new secret, or None if the app is unknown. Which
        secrets sign when is `dialgw.store.records.signing_secrets`.
        """
        secret = new_webhook_secret()

        def rotate(txn: Cursor) -> str | None:
            self._execute(
                txn,
                "UPDATE apps SET previous_webhook_secret = webhook_secret, previous_secret_expires_at = ?, "
                "webhook_secret = ? WHERE app_id = ?",
                (now + PREVIOUS_SECRET_TTL_SEC, secret, app_id),
            )
            return secret if txn.rowcount == 1 else None

        return self.run_interaction("rotate_webhook_secret", rotate, write=True)

    def delete_app(self, app_id: str) -> Deferred[bool]:
        """Delete the app with everything it owns; fire with whether it existed.

        Its caller IDs, idempotency keys, sessions and their events (with
        any webhooks still pending) go with it: nothing is kept for
        history. Disable the app and let its calls end before deleting it;
        a call still live in FreeSWITCH is then no longer in the store.
        """

        def delete(txn: Cursor) -> bool:
            self._execute(txn, "DELETE FROM apps WHERE app_id = ?", (app_id,))
            return txn.rowcount == 1

        return self.run_interaction("delete_app", delete, write=True)

    def add_caller_id(self, app_id: str, number: str) -> Deferred[bool]:
        """Allow ``number`` as the app's caller ID; False if the app is unknown."""

        def add(txn: Cursor) -> bool:
            if self._one(txn, "SELECT 1 AS known FROM apps WHERE app_id = ?", (app_id,)) is None:
                return False
            self._insert(txn, "app_caller_ids", {"app_id": app_id, "number": number},
                         " ON CONFLICT (app_id, number) DO NOTHING")
            return True

        return self.run_interaction("add_caller_id", add, write=True)

    def remove_caller_id(self, app_id: str, number: str) -> Deferred[bool]:
        """Remove ``number`` from the allow-list; False if it was not on it."""

        def remove(txn: Cursor) -> bool:
            self._execute(txn, "DELETE FROM app_caller_ids WHERE app_id = ? AND number = ?", (app_id, number))
            return txn.rowcount == 1

        return self.run_interaction("remove_caller_id", remove, write=True)
