"""The SQLite store (later also PostgreSQL) behind one adbapi layer.

Open it with `open_sqlite_store` (or `open_store` from ``[database]``
settings); every `Store` method returns a Deferred.
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
    hash_api_key,
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
    "UNSET",
    "hash_api_key",
    "open_sqlite_store",
    "open_store",
]
