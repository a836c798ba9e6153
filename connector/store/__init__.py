"""The shared state of every replica: inventory generations, sync state, leases, audit, challenges.

Nothing outside this package knows which database is behind it: `open_store` reads
``[store]`` and hands back a `Store`.
"""

from connector.store._model import (
    AMBIGUOUS,
    AuditEntry,
    AuditQuery,
    Challenge,
    FailedRule,
    Generation,
    SchemaTooNew,
    StoredAnswer,
    StoredDevice,
    StoreError,
    StoreRefused,
    SyncState,
)
from connector.store._recorder import AuditRecorder
from connector.store._schema import LATEST
from connector.store._settings import StoreSettings, connect_store, open_store
from connector.store._store import Store

__all__ = [
    "AMBIGUOUS",
    "LATEST",
    "AuditEntry",
    "AuditQuery",
    "AuditRecorder",
    "Challenge",
    "FailedRule",
    "Generation",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreRefused",
    "StoreSettings",
    "StoredAnswer",
    "StoredDevice",
    "SyncState",
    "connect_store",
    "open_store",
]
