"""The store on SQLite (one node) or PostgreSQL (several) behind one adbapi layer.

Open it with `open_store` from ``[database]`` settings (or
`open_sqlite_store` / `open_postgresql_store`); every `Store` method
returns a Deferred.
"""

from __future__ import annotations

from dialgw.store.records import (
    DELIVERY_STATES,
    EVENT_FOR_STATUS,
    IDEMPOTENCY_TTL_SEC,
    PREVIOUS_SECRET_TTL_SEC,
    STATUSES,
    App,
    AttemptResult,
    Delivery,
    IdempotencyRecord,
    Session,
    SessionEvent,
)
from dialgw.store.store import (
    UNSET,
    SchemaTooNewError,
    Store,
    StoreError,
    StoreNotEmptyError,
    hash_api_key,
    open_postgresql_store,
    open_sqlite_store,
    open_store,
)

__all__ = [
    "App",
    "AttemptResult",
    "Delivery",
    "DELIVERY_STATES",
    "EVENT_FOR_STATUS",
    "IDEMPOTENCY_TTL_SEC",
    "IdempotencyRecord",
    "PREVIOUS_SECRET_TTL_SEC",
    "STATUSES",
    "SchemaTooNewError",
    "Session",
    "SessionEvent",
    "Store",
    "StoreError",
    "StoreNotEmptyError",
    "UNSET",
    "hash_api_key",
    "open_postgresql_store",
    "open_sqlite_store",
    "open_store",
]
