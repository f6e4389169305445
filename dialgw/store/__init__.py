"""The store on SQLite (one node) or PostgreSQL (several) behind one adbapi layer.

Open it with `open_store` from ``[database]`` settings (or
`open_sqlite_store` / `open_postgresql_store`); every `Store` method
returns a Deferred. `Store` combines one store per domain (apps,
sessions, events, idempotency, maintenance), each over `StoreBase`.
"""

from __future__ import annotations

from dialgw.store.apps import UNSET, hash_api_key
from dialgw.store.base import SchemaTooNewError, StoreBase, StoreError, StoreNotEmptyError
from dialgw.store.records import (
    DELIVERY_STATES,
    IDEMPOTENCY_TTL_SEC,
    PREVIOUS_SECRET_TTL_SEC,
    App,
    AttemptResult,
    Delivery,
    IdempotencyRecord,
    Session,
    SessionEvent,
)
from dialgw.store.store import (
    Store,
    open_postgresql_store,
    open_sqlite_store,
    open_store,
)

__all__ = [
    "App",
    "AttemptResult",
    "Delivery",
    "DELIVERY_STATES",
    "IDEMPOTENCY_TTL_SEC",
    "IdempotencyRecord",
    "PREVIOUS_SECRET_TTL_SEC",
    "SchemaTooNewError",
    "Session",
    "SessionEvent",
    "Store",
    "StoreBase",
    "StoreError",
    "StoreNotEmptyError",
    "UNSET",
    "hash_api_key",
    "open_postgresql_store",
    "open_sqlite_store",
    "open_store",
]
