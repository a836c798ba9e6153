"""Per-provider sync keys: whether decisions ask the upstream live or read a synced copy.

A provider's config table inherits these (``[providers.jamf] mode = "sync"``). The provider
itself never syncs: the connector's sync engine lists it (`providers.base.DeviceLister`) into
the store, and a store-backed reader answers lookups.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SyncMode = Literal["live", "sync", "sync+live"]


class SyncOptions(BaseModel):
    """``mode``, ``sync_interval``, ``max_staleness`` (seconds).

    Every sync lists the whole inventory, so a device removed upstream is gone from the next
    generation; there is no incremental sync whose misses a periodic full resync would repair.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: SyncMode = Field(
        default="live",
        description='"live": ask the upstream per decision; "sync": read only the synced copy; '
        '"sync+live": the synced copy first, the upstream on a miss',
    )
    sync_interval: float = Field(default=900.0, ge=10, description="seconds between syncs")
    max_staleness: float = Field(
        default=7200.0,
        ge=30,
        description="seconds after the last complete sync began at which the copy stops answering",
    )

    @model_validator(mode="after")
    def _staleness_covers_a_sync(self) -> SyncOptions:
        if self.mode != "live" and self.max_staleness <= self.sync_interval:
            raise ValueError(
                "max_staleness must be longer than sync_interval, or every sync gap "
                "would make the provider not ready"
            )
        return self


PACING_KEYS = frozenset(
    {
        "connect_timeout",
        "read_timeout",
        "budget",
        "retries",
        "backoff",
        "max_connections",
        "max_answer_bytes",
        "token_margin",
        "department_ttl",
        "group_ttl",
    }
)
"""Keys that only pace or bound the calls to an upstream: never what it lists."""


def listing_of(settings: SyncOptions, *, layout: int) -> str:
    """What a synced copy is listed under: a digest of the provider's table without its sync
    keys, its `PACING_KEYS` and its secrets (dumped masked: a rotated secret lists the same
    devices), and of `layout`, how the store keys the copy's rows.

    Any other change (another URL or tenant, fewer device classes, other groups read, rows
    keyed otherwise) makes the copy another inventory, kept apart in the store. A key is left
    out only when it surely changes nothing listed: a change to any other key costs a sync,
    never a wrong answer.
    """
    table = settings.model_dump(exclude=set(SyncOptions.model_fields) | PACING_KEYS)
    table = {"layout": layout, "table": _canonical(table)}
    text = json.dumps(table, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _canonical(value: Any) -> Any:
    """`value` with every set in one order: a set's own order changes from process to process
    (string hashing is randomised), and so would a digest of it. Secrets stay masked."""
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_canonical(item) for item in value), key=repr)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value
