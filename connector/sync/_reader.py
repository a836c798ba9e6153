"""The read side of sync mode: a provider that answers from the current synced generation.

Every lookup reads the store, not a local copy, so a generation another replica committed
decides the very next call on every replica; that is why it is not `cacheable`. A generation
older than ``max_staleness`` answers nothing; its age counts from when its listing began, so
its oldest page decides, also in a sync resumed later. In ``"sync"`` mode the provider is then
not ready and decisions fail closed (``inventory-unavailable``); in ``"sync+live"`` mode the
upstream is asked instead, as it is for a device the copy does not know (one enrolled minutes
ago) and when the database cannot be reached.

It reads the copy listed under its own settings (`connector.sync.copy_name`), never one listed
under others, nor one an earlier release listed (named for the provider alone, its settings
unknown): until its own copy is complete it is not ready, as at a first start (a rolling
upgrade keeps the replicas of the earlier release serving meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from connector.store import AMBIGUOUS, Generation, Store, StoreError
from connector.sync._engine import KEYED_KINDS, device_key
from providers.base import DeviceRecord, Provider, ProviderError, ProviderNotReady
from providers.identifiers import DeviceIdentifier
from providers.sync_options import SyncOptions

log = structlog.get_logger("connector.sync")


class SyncedProvider:
    """A `Provider` over the store's copy of `name`, with the live provider behind it."""

    def __init__(
        self,
        name: str,
        options: SyncOptions,
        store: Store,
        *,
        decode: Callable[[bytes], DeviceRecord | None],
        live: Provider | None,
        key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self.key = key or name
        """The copy it reads (`connector.sync.copy_name`)."""
        self._options = options
        self._store = store
        self._decode = decode
        self._live = live if options.mode == "sync+live" else None
        self._clock = clock
        self._completed_at: float | None = None
        self.last_generation: int | None = None
        """The generation that answered last (for the audit log and readiness report)."""

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def cacheable(self) -> bool:
        """Never: the store is read per call so that a new generation decides at once."""
        return False

    @property
    def fresh(self) -> bool:
        """Whether the last known generation's listing began within ``max_staleness``."""
        done = self._completed_at
        return done is not None and self._clock() - done <= self._options.max_staleness

    @property
    def ready(self) -> bool:
        """Fresh copy; in sync+live mode a ready upstream is enough."""
        return self.fresh or (self._live is not None and self._live.ready)

    async def start(self) -> None:
        """Read the current generation (and start the live provider in sync+live mode)."""
        live_error: ProviderError | None = None
        if self._live is not None and not self._live.ready:
            try:
                await self._live.start()
            except ProviderError as exc:
                live_error = exc
        try:
            await self._refresh()
        except StoreError as exc:
            raise ProviderNotReady(self._name, f"store: {exc}") from None
        if not self.ready:
            raise live_error or ProviderNotReady(self._name, self._stale_reason())

    def _began(self, age: float) -> float:
        """When a copy `age` seconds old (by the database's clock) began, on this replica's
        clock: its freshness then never depends on how far this replica's clock is off."""
        return self._clock() - age

    async def _refresh(self) -> None:
        """Learn the answering copy's age; a copy that is gone (dropped as stale by a replica
        on other settings) leaves the provider not ready, not answering "not found"."""
        current = await self.answering_copy()
        self._completed_at = self._began(current.age) if current is not None else None
        self.last_generation = current.id if current is not None else None

    async def answering_copy(self) -> Generation | None:
        """The generation lookups read (None before the first complete sync)."""
        return await self._store.current_generation(self.key)

    def _stale_reason(self) -> str:
        if self._completed_at is None:
            return "no complete sync yet"
        age = self._clock() - self._completed_at
        limit = self._options.max_staleness
        return f"the last complete sync began {age:.0f}s ago (max_staleness {limit:g}s)"

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """The synced record; the live provider on a miss or a stale copy in sync+live mode."""
        if identifier.kind not in KEYED_KINDS:  # never in the copy, whatever its digits
            return await self._live.lookup(identifier) if self._live is not None else None
        try:
            key = device_key(identifier.kind, identifier.normalized)
            found = await self._store.find_device(self.key, key)
            if found is None:
                await self._refresh()  # how old is the copy that does not know the device?
        except StoreError as exc:
            return await self._fallback(identifier, f"store: {exc}")
        if found is not None:
            self._completed_at = self._began(found.age)
            self.last_generation = found.generation
        if not self.fresh:
            return await self._fallback(identifier, self._stale_reason())
        if found is not None:
            if found.payload == AMBIGUOUS:
                raise ProviderError(
                    self._name,
                    "records of this device share the latest contact in the synced copy: "
                    "which one is current cannot be told",
                )
            return self._decode(found.payload)
        return await self._live.lookup(identifier) if self._live is not None else None

    async def _fallback(self, identifier: DeviceIdentifier, reason: str) -> DeviceRecord | None:
        """The upstream in sync+live mode; a fail-closed error in sync mode."""
        if self._live is None:
            raise ProviderNotReady(self._name, reason)
        log.info("sync.live_fallback", provider=self._name, reason=reason)
        return await self._live.lookup(identifier)

    async def aclose(self) -> None:
        """Close the live provider; the store belongs to the app."""
        if self._live is not None:
            await self._live.aclose()
