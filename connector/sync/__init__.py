"""Sync mode: list providers into the store (`Syncer`) and answer from it (`SyncedProvider`)."""

from connector.sync._engine import (
    LeaseLost,
    Page,
    PagedLister,
    Syncer,
    copy_name,
    device_key,
    record_keys,
    utc,
)
from connector.sync._reader import SyncedProvider

__all__ = [
    "LeaseLost",
    "Page",
    "PagedLister",
    "SyncedProvider",
    "Syncer",
    "copy_name",
    "device_key",
    "record_keys",
    "utc",
]
