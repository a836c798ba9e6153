"""The sync engine: list a provider into a new generation, then make it current atomically.

A provider's copy in the store is named for the settings it is listed under (`copy_name`,
``NAME@LISTING``): a copy made under other settings (another URL or tenant, fewer device classes)
is another inventory, never read or resumed under these; once stale it is dropped.

Only the replica that holds the copy's lease (``sync:NAME@LISTING`` in the store) syncs; it renews
the lease after every batch and abandons the sync, without committing, the moment it loses it.
A replica that dies mid-sync leaves a building generation behind: the next leader resumes it
from the saved cursor when the provider lists page by page (`PagedLister`), and otherwise
throws it away and starts over, since rows listed by a dead leader may describe devices that
have since gone. Nothing but a complete listing ever becomes current.

A generation is as fresh as its oldest page: the store dates a committed generation from when its
listing began, and readers measure ``max_staleness`` from there, so early pages listed long ago
(a device turned unmanaged since) never pass for fresh. A partial listing begun
``max_staleness`` ago or earlier is therefore not resumed: it would commit a copy too old to
answer. It is thrown away and the listing starts over.

A saved cursor is also given up, and the listing starts over in a new generation, when the
provider rejects it (`CursorRejected`: another configuration, an expired page link) or when
resuming from it failed `MAX_RESUMES` times in a row. After a failed attempt the next one waits
longer each time (`RETRY_FIRST` doubling, at most ``sync_interval``), so an upstream that
throttles or is down is not asked every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import structlog

from connector.store import Generation, Store, StoredDevice, StoreError, SyncState
from providers._listing import CursorTrail
from providers.base import CursorRejected, DeviceRecord, ProviderError
from providers.identifiers import IdentifierKind, ascii_upper
from providers.sync_options import SyncOptions, listing_of

log = structlog.get_logger("connector.sync")

BATCH = 500
"""Devices written per transaction (and per lease renewal; a third of the lease ttl at most)."""
MAX_RESUMES = 3
"""Failed attempts to resume from one saved cursor before the listing starts over."""
RETRY_FIRST = 10.0
"""Seconds before the first retry of a failed sync; doubled per further failure."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a paged listing.

    Attributes:
        records: The page's devices.
        next_cursor: Where the next page starts, or None after the last page.
    """

    records: Sequence[DeviceRecord]
    next_cursor: str | None


@runtime_checkable
class PagedLister(Protocol):
    """A provider that lists page by page, so an interrupted sync can resume."""

    async def list_page(self, cursor: str | None) -> Page:
        """The page at `cursor` (None: the first page)."""
        ...


class Lister(Protocol):
    """What the engine needs of a provider: its whole inventory, once."""

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device."""
        ...


class LeaseLost(Exception):
    """When another replica took the sync lease over during a sync."""


KEYED_KINDS = frozenset({IdentifierKind.SERIAL, IdentifierKind.UDID})
"""The identifier kinds `record_keys` indexes. A YubiKey serial with a device serial's digits
names another thing, which the synced upstreams (Jamf, Intune, ...) do not know."""

KEY_LAYOUT = 2
"""How a copy's rows are keyed, part of its name (`copy_name`), so that a copy keyed otherwise
is listed again rather than read: 2, the identifier's kind and value, a UDID without dashes
(`device_key`); 1 (before 2026-12-03), the value alone, where a UDID found a record whose
serial had its characters."""


def copy_name(name: str, options: SyncOptions) -> str:
    """The store's name for provider `name`'s synced copy under `options`: ``NAME@LISTING``
    (`providers.sync_options.listing_of`; a provider name never holds an ``@``).

    Settings that list another inventory (another URL or tenant, fewer device classes) make
    another copy, synced under a lease of its own: a copy answers only replicas that run the
    settings it was listed under, and during a rolling change each side keeps its own.
    """
    return f"{name}@{listing_of(options, layout=KEY_LAYOUT)}"


def device_key(kind: IdentifierKind, normalized: str) -> str:
    """A copy's row key: the kind, then the value (as `DeviceIdentifier.normalized`). A serial
    answers only a serial, a UDID only a UDID, as the live lookups compare the field of the
    identifier's kind: a Windows host's serial can be set to anything, an iPhone's UDID too.
    A UDID's dashes are left out: inventories keep some UDIDs without them (Workspace ONE),
    and no two UDIDs differ in dashes alone."""
    if kind is IdentifierKind.UDID:
        normalized = normalized.replace("-", "")
    return f"{kind.value}:{normalized}"


def record_keys(record: DeviceRecord) -> tuple[str, ...]:
    """The keys a record answers to (`device_key`); a serial or UDID other than ASCII answers
    to none (`ascii_upper`)."""
    serial, udid = ascii_upper(record.serial), ascii_upper(record.udid)
    keys = (
        device_key(IdentifierKind.SERIAL, serial) if serial else None,
        device_key(IdentifierKind.UDID, udid) if udid else None,
    )
    return tuple(k for k in keys if k)


def record_rank(record: DeviceRecord) -> float:
    """Newest record wins: the last contact as Unix time (0 when unreported)."""
    return record.last_contact.timestamp() if record.last_contact else 0.0


class Syncer:
    """Keeps one provider's synced generation fresh; see the module docstring."""

    def __init__(
        self,
        name: str,
        lister: Lister,
        options: SyncOptions,
        store: Store,
        *,
        replica: str,
        encode: Callable[[DeviceRecord], bytes],
        key: str | None = None,
        lease_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.key = key or name
        """The copy's name in the store (`copy_name`): its generations, state and lease."""
        self._lister = lister
        self._options = options
        self._store = store
        self._replica = replica
        self._encode = encode
        self._lease_ttl = lease_ttl
        self._clock = clock
        self.lease = f"sync:{self.key}"
        """The store lease whose holder syncs this copy."""
        self._last_error: str | None = None
        self._resumes: tuple[str | None, int] = (None, 0)
        self._progress = SyncState(self.key)
        self._give_up_at = float("inf")
        self._lease_gone = False
        self.status: SyncState | None = None
        """The shared sync state as last read (for `/readyz`), None before the store answered."""
        self.current: Generation | None = None
        """The current generation as last read."""

    async def run(self) -> None:
        """Sync whenever due, forever, once the store is migrated; never raises."""
        await self._store.wait_ready()
        failures = 0
        while True:
            failures = 0 if await self.attempt() else failures + 1
            await asyncio.sleep(self.pause(failures))

    async def attempt(self) -> bool:
        """Sync if due, log a failure (once per distinct error) and refresh `status`; False when
        the attempt failed."""
        try:
            await self.sync_if_due()
        except Exception as exc:  # the loop must outlive any failure
            self._failed(exc)
            succeeded = False
        else:
            succeeded = True
        await self.observe()
        return succeeded

    def pause(self, failures: int) -> float:
        """Seconds until the next attempt after `failures` failed ones in a row."""
        tick = min(self._options.sync_interval, self._lease_ttl / 3)
        if not failures:
            return tick
        backoff = RETRY_FIRST * 2.0 ** min(failures - 1, 16)
        return min(self._options.sync_interval, max(tick, backoff))

    async def observe(self) -> None:
        """Read the shared sync state and current generation for the readiness report."""
        try:
            self.status = await self._store.load_sync_state(self.key)
            self.current = await self._store.current_generation(self.key)
        except StoreError:
            pass  # the store's own readiness says why

    async def sync_if_due(self) -> Generation | None:
        """Sync now if this replica leads and the last sync is older than the interval."""
        if not await self._store.acquire_lease(self.lease, self._replica, self._lease_ttl):
            return None
        state = await self._store.load_sync_state(self.key)
        due = (
            state.building is not None
            or state.last_success is None
            or self._clock() - state.last_success >= self._options.sync_interval
        )
        return await self.sync(state) if due else None

    async def sync(self, state: SyncState | None = None) -> Generation:
        """List everything into a new (or resumed) generation and make it current, under the
        copy's lease (taken here unless this replica holds it: `LeaseLost` while another
        does)."""
        if not await self._store.acquire_lease(self.lease, self._replica, self._lease_ttl):
            raise LeaseLost(self.name)
        state = state or await self._store.load_sync_state(self.key)
        started = time.perf_counter()
        generation, cursor, resumed = await self._generation_to_write(state)
        # An upstream whose pages never end (or a listing too slow to be of use) is stopped
        # once its copy would be too old to answer: counted from the listing's first page, for
        # a resumed one too (its earlier pages are that old).
        age = (await self._store.building_age(generation) or 0.0) if resumed else 0.0
        self._give_up_at = time.monotonic() + self._options.max_staleness - max(0.0, age)
        state = replace(state, building=generation, cursor=cursor, last_attempt=self._clock())
        await self._store.save_sync_state(state)
        self._progress = state
        log.info("sync.started", provider=self.name, generation=generation, resumed=resumed)
        self._resumes = (cursor, self._resumes[1] + 1 if self._resumes[0] == cursor else 1)
        self._lease_gone = False
        heartbeat = asyncio.create_task(self._hold_lease())
        try:
            try:
                await self._copy_in_time(generation, cursor, state)
            except CursorRejected as exc:
                log.warning(
                    "sync.restarted", provider=self.name, generation=generation, reason=exc.message
                )
                await self._store.abort_generation(generation)
                generation = await self._store.begin_generation(self.key)
                state = replace(state, building=generation, cursor=None)
                await self._store.save_sync_state(state)
                self._progress = state
                self._give_up_at = time.monotonic() + self._options.max_staleness
                await self._copy_in_time(generation, None, state)
            await self._renew()
            current = await self._store.commit_generation(self.key, generation)
        except LeaseLost:
            log.warning("sync.lease_lost", provider=self.name, generation=generation)
            raise
        except (ProviderError, StoreError) as exc:
            with contextlib.suppress(StoreError):  # the state is news, not the failure itself
                # Only while this replica leads: another one's state is never overwritten.
                if await self._store.renew_lease(self.lease, self._replica, self._lease_ttl):
                    await self._store.save_sync_state(
                        replace(self._progress, last_error=_reason(exc))  # the cursor reached
                    )
            raise
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # never raises: a cancellation of sync() still does
        self._resumes = (None, 0)
        now = self._clock()
        await self._store.save_sync_state(
            SyncState(self.key, last_success=now, last_attempt=state.last_attempt)
        )
        self._last_error = None
        await self._drop_stale_copies()
        log.info(
            "sync.completed",
            provider=self.name,
            generation=current.id,
            devices=current.devices,
            seconds=round(time.perf_counter() - started, 2),
        )
        return current

    async def _generation_to_write(self, state: SyncState) -> tuple[int, str | None, bool]:
        """The generation this sync writes, the cursor it starts at, and whether it resumes a
        partial listing (a paged one, at its saved cursor, unless `_unresumable`)."""
        paged = isinstance(self._lister, PagedLister)
        generation, cursor = state.building, state.cursor
        if generation is not None and paged and cursor is not None:
            reason = await self._unresumable(generation, cursor)
            if reason is not None:
                log.warning(
                    "sync.restarted", provider=self.name, generation=generation, reason=reason
                )
                cursor = None
        if generation is not None and not (paged and cursor is not None):
            await self._store.abort_generation(generation)
            generation, cursor = None, None
        if generation is None:
            return await self._store.begin_generation(self.key), None, False
        return generation, cursor, True

    async def _drop_stale_copies(self) -> None:
        """Forget this provider's copies listed under other settings once they are stale."""
        if self.key == self.name:
            return
        try:
            dropped = await self._store.drop_stale_copies(
                self.name,
                keep=self.key,
                max_age=self._options.max_staleness,
                holder=self._replica,
                lease_ttl=self._lease_ttl,
            )
        except StoreError as exc:  # tried again after the next sync
            log.warning("sync.cleanup_failed", provider=self.name, error=str(exc))
            return
        if dropped:
            log.info("sync.copies_dropped", provider=self.name, copies=len(dropped))

    async def _unresumable(self, generation: int, cursor: str) -> str | None:
        """Why the partial listing `generation` must start over rather than resume at `cursor`
        (None: resume it): resuming failed `MAX_RESUMES` times here, or its first pages are
        ``max_staleness`` old, so committing it could never answer (see the module docstring)."""
        if self._resumes[0] == cursor and self._resumes[1] >= MAX_RESUMES:
            return f"resuming from the saved cursor failed {MAX_RESUMES} times"
        age = await self._store.building_age(generation)
        if age is None:
            return "the partial generation is gone"
        limit = self._options.max_staleness
        if age >= limit:
            return f"the partial listing began {age:.0f}s ago (max_staleness {limit:g}s)"
        return None

    async def _copy_in_time(self, generation: int, cursor: str | None, state: SyncState) -> None:
        """`_copy`, stopped once the copy would be too old to answer (`_give_up_at`), a page
        that never ends included."""
        limit = asyncio.timeout(max(0.0, self._give_up_at - time.monotonic()))
        try:
            async with limit:
                await self._copy(generation, cursor, state)
        except TimeoutError:
            if limit.expired():
                raise self._too_old() from None
            raise

    def _too_old(self) -> ProviderError:
        limit = self._options.max_staleness
        return ProviderError(
            self.name,
            f"the listing has run for over max_staleness ({limit:g}s): a copy that old "
            "could not answer",
        )

    async def _copy(self, generation: int, cursor: str | None, state: SyncState) -> None:
        if isinstance(self._lister, PagedLister):
            await self._copy_pages(self._lister, generation, cursor, state)
        else:
            await self._copy_all(generation)

    async def _copy_all(self, generation: int) -> None:
        # Flush by size or by time: a slow listing of few devices must renew its lease too.
        batch: list[StoredDevice] = []
        flushed = time.monotonic()
        async for record in self._lister.iter_devices():
            batch.append(self._stored(record))
            if len(batch) >= BATCH or time.monotonic() - flushed >= self._lease_ttl / 3:
                flushed = time.monotonic()
                await self._flush(generation, batch)
                batch = []
        await self._flush(generation, batch)

    async def _copy_pages(
        self, lister: PagedLister, generation: int, cursor: str | None, state: SyncState
    ) -> None:
        """Write page after page; the next page is asked for while this one is written (one
        request at a time still), and its cursor is saved only once this one is stored."""
        trail = CursorTrail(self.name)  # an upstream whose pages loop fails the sync
        if cursor is not None:
            trail.follow(cursor)
        pending: asyncio.Future[Page] = asyncio.ensure_future(lister.list_page(cursor))
        try:
            while True:
                page = await pending
                cursor = page.next_cursor
                if cursor is not None:
                    trail.follow(cursor)
                    pending = asyncio.ensure_future(lister.list_page(cursor))
                await self._flush(generation, [self._stored(r) for r in page.records])
                self._progress = replace(state, cursor=cursor)
                await self._store.save_sync_state(self._progress)
                self._resumes = (cursor, 0)  # progress: the count is for failures at one cursor
                if cursor is None:
                    return
        finally:
            pending.cancel()  # a prefetch nobody will read; awaited so its error is not lost
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending

    async def _flush(self, generation: int, batch: list[StoredDevice]) -> None:
        if time.monotonic() > self._give_up_at:
            raise self._too_old()
        await self._renew()
        await self._store.add_devices(generation, batch)

    async def _renew(self) -> None:
        """Extend the lease before writing; `LeaseLost` once it has lapsed, even if nobody
        else took it meanwhile (another replica may have synced and let it go)."""
        if self._lease_gone or not await self._store.renew_lease(
            self.lease, self._replica, self._lease_ttl
        ):
            self._lease_gone = True
            raise LeaseLost(self.name)

    async def _hold_lease(self) -> None:
        """Renew the lease every third of its time for as long as the sync runs, a page that
        takes minutes (Intune's first reads a whole tenant's users) included; once it is
        lost, the sync stops at its next write (`_renew`)."""
        while not self._lease_gone:
            await asyncio.sleep(self._lease_ttl / 3)
            if time.monotonic() > self._give_up_at:
                return  # a listing past its time keeps no lease (`_copy_in_time` stops it)
            try:
                if not await self._store.renew_lease(self.lease, self._replica, self._lease_ttl):
                    self._lease_gone = True
            except StoreError:
                pass  # the store is away: the lease runs out unless it comes back in time

    def _stored(self, record: DeviceRecord) -> StoredDevice:
        return StoredDevice(record_keys(record), self._encode(record), record_rank(record))

    def _failed(self, exc: Exception) -> None:
        reason = _reason(exc)
        if reason != self._last_error:
            self._last_error = reason
            if isinstance(exc, ProviderError | StoreError | LeaseLost):
                log.error("sync.failed", provider=self.name, error=reason)
            else:
                log.exception("sync.failed", provider=self.name, error=reason)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ProviderError):
        return exc.message
    if isinstance(exc, LeaseLost):
        return "another replica took the sync over"
    return str(exc) or type(exc).__name__


def utc(timestamp: float) -> datetime:
    """A Unix time as an aware datetime (for readiness reports)."""
    return datetime.fromtimestamp(timestamp, UTC)
