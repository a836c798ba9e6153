"""`FileProvider`: serve the last good inventory, load a changed file only once it has settled.

The watcher polls the file every `reload_interval` seconds and compares (size, mtime_ns, inode):

- a change is loaded only once it has settled: unchanged since the previous poll, or else
  unchanged over a short wait within this poll (`SETTLE_WAIT`, at most half the interval, on
  the event loop's timer), and the stamp taken after reading still matches the one taken before;
  otherwise the read is discarded and retried at the next poll. Settling within one poll is what
  lets an exporter that replaces the file more often than `reload_interval` be loaded at all: two
  polls in a row would never see one stamp. A tool that rewrites the file in place, or pauses
  mid-row, is never read half-way unless it pauses for longer than that wait (write a temporary
  file and rename it over the inventory, which is atomic). A change still not loaded after
  `UNSETTLED_POLLS` polls is logged once (`provider.reload_unsettled`).
- a broken version keeps the last good inventory; the same version is not parsed again, and
  each distinct error is logged once. A version that could not be read (permissions, an I/O
  error) is tried again at every poll.
- a vanished file keeps the last good inventory for `missing_grace` seconds, then the provider
  turns not ready and lookups raise `ProviderNotReady` (the chain denies: fail closed). So does
  a file whose file system stops answering (`providers.files._stat`: the stat runs off the
  event loop and gives up after `STAT_TIMEOUT`), while decisions go on. A read that hangs is
  not bounded: it holds this provider's checks (not its lookups) until it returns.

Each state change is logged once, never once per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import structlog

from providers.base import DeviceRecord, ProviderError, ProviderNotReady
from providers.files._image import InventoryIndex
from providers.files._load import PROCESS_ABOVE, load_index
from providers.files._schema import InventoryFileError, InventoryUnreadable, describe
from providers.files._settings import CsvSettings, JsonSettings
from providers.files._stat import STAT_TIMEOUT, Stamp, Stamper
from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("providers.files")

SETTLE_WAIT = 1.0
"""Seconds a changed file must keep its stamp within one poll to count as settled (capped at
half the `reload_interval`): long enough for a writer's next chunk, short beside an interval."""
UNSETTLED_POLLS = 3
"""Polls in a row that find a change that has not settled before it is logged."""
RETRY_LIMIT = 300.0
"""Most seconds between two reads of a version that could not be read (not for its content: an
I/O error, a worker killed for its memory). The next poll reads it again; after each further
failure in a row the wait grows by powers of two of `reload_interval`, up to this."""


class _ChangedWhileReading(Exception):
    """When the file's stamp after the read differs from the one before it."""

    def __init__(self, stamp: Stamp | None) -> None:
        super().__init__("changed while reading")
        self.stamp = stamp


class FileProvider:
    """A CSV or JSON inventory kept in memory and reloaded when the file changes."""

    def __init__(
        self,
        name: str,
        settings: CsvSettings | JsonSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        process_above: int = PROCESS_ABOVE,
        settle_wait: float = SETTLE_WAIT,
        stat_timeout: float = STAT_TIMEOUT,
    ) -> None:
        self._name = name
        self._settings = settings
        self._stamp = Stamper(settings.path, timeout=stat_timeout)  # off the event loop
        self._clock = clock
        self._process_above = process_above  # larger files are parsed in a worker process
        interval = settings.reload_interval
        self._settle_wait = min(settle_wait, interval / 2) if interval > 0 else settle_wait
        self._unsettled = 0  # polls in a row that found a change not yet settled
        self._index: InventoryIndex | None = None
        self._loaded: Stamp | None = None  # the version the index came from
        self._seen: Stamp | None = None  # the version the previous poll saw
        self._failed: Stamp | None = None  # a version that did not load: not parsed again
        self._retry: tuple[Stamp, float, int] | None = None  # unread: (version, when, tries)
        self._missing_since: float | None = None
        self._logged_error: str | None = None
        self._down = False  # not ready after a failed start or a vanished file: log recovery
        self._started = False
        self._closed = False  # closed (retired by a reload): a start still under way must not watch
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self.loaded_at: float | None = None
        """Unix time the current inventory was loaded (for metrics and the admin page)."""

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True while an inventory is loaded (and, if the file vanished, within the grace)."""
        return self._index is not None

    @property
    def cacheable(self) -> bool:
        """An in-memory index answers at once: caching it would only serve stale answers."""
        return False

    @property
    def device_count(self) -> int:
        """Distinct devices in the current inventory."""
        return self._index.devices if self._index is not None else 0

    async def start(self) -> None:
        """Load the file, then watch it; raises `ProviderNotReady` while nothing is loaded.

        The first call loads the file as it is (a stable read) so the service can be ready at
        once. A later call (the service retries providers that are not ready) is a poll: a file
        that reappears must settle first, like any other change.
        """
        async with self._lock:
            if not self._started:
                self._started = True
                try:
                    await self._load_now()
                    self._down = self._index is None
                finally:
                    watch = self._settings.reload_interval > 0 and not self._closed
                    if watch and self._watcher is None:
                        self._watcher = asyncio.create_task(
                            self._watch(), name=f"watch-{self._name}"
                        )
            else:
                await self._poll()
        if self._index is None:
            raise ProviderNotReady(self._name, self._logged_error or "inventory not loaded")

    async def reload(self) -> bool:
        """One poll of the file; returns whether a new inventory was swapped in."""
        async with self._lock:
            return await self._poll()

    async def _load_now(self) -> None:
        try:
            stamp = await self._stamp()
        except OSError as exc:
            self._report(exc)
            if isinstance(exc, FileNotFoundError):
                self._missing_since = self._clock()  # logged as load_failed; not again per poll
            return
        self._seen = stamp
        await self._load(stamp)

    async def _poll(self) -> bool:
        path = self._settings.path
        try:
            stamp = await self._stamp()
        except OSError as exc:
            self._vanished(exc)
            return False
        if self._missing_since is not None:
            log.info(
                "provider.file_restored",
                provider=self._name,
                path=str(path),
                missing_for=round(self._clock() - self._missing_since, 3),
            )
            self._missing_since = None
        if stamp in (self._loaded, self._failed) or self._waits(stamp):
            self._seen, self._unsettled = stamp, 0
            return False
        if stamp != self._seen and not await self._settles(stamp):
            return self._not_settled()
        self._seen = stamp
        return await self._load(stamp)

    async def _settles(self, stamp: Stamp) -> bool:
        """Whether a change first seen at this poll keeps its stamp over `SETTLE_WAIT`: a writer
        still busy in place changes it; a file replaced whole (renamed over) does not."""
        self._seen = stamp
        if self._settle_wait > 0:  # 0 (tests): only the stamp across the read is checked
            await asyncio.sleep(self._settle_wait)
        try:
            self._seen = await self._stamp()
        except OSError:
            self._seen = None  # gone for a moment (replaced by delete and create): next poll
        return self._seen == stamp

    def _not_settled(self) -> bool:
        """Count a poll whose change did not settle; say so once it has happened
        `UNSETTLED_POLLS` times in a row (a writer that never pauses, a file that never stops
        changing): the old inventory is serving meanwhile. Returns False (nothing swapped)."""
        log.debug("provider.reload_deferred", provider=self._name, path=str(self._settings.path))
        self._unsettled += 1
        if self._unsettled == UNSETTLED_POLLS:
            log.warning(
                "provider.reload_unsettled",
                provider=self._name,
                path=str(self._settings.path),
                polls=self._unsettled,
                kept="previous" if self._index is not None else "none",
            )
        return False

    async def _load(self, stamp: Stamp) -> bool:
        """Read and index the version `stamp`; swap it in only if it was stable and valid."""
        path = self._settings.path
        try:
            index = await load_index(
                path,
                self._settings,
                self._name,
                size=stamp.size,
                process_above=self._process_above,
                background=self._index is not None,
            )
            try:
                after: Stamp | None = await self._stamp()
            except OSError:  # not reached just now (a slow mount): no verdict on this version
                after = None
            if after != stamp:
                raise _ChangedWhileReading(after)
        except _ChangedWhileReading as changed:
            # A writer is still busy (or the file could not be looked at after the read):
            # discard, and retry once the new stamp has settled.
            self._seen = changed.stamp
            return self._not_settled()
        except (OSError, InventoryUnreadable, MemoryError) as exc:
            # Reading failed, not the content (a permission fixed by chmod, which leaves the
            # stamp as it was; an I/O error; a worker the OOM killer ended): this version is
            # read again, at the next poll and then less and less often (`RETRY_LIMIT`).
            self._unsettled = 0
            tries = self._retry[2] + 1 if self._retry and self._retry[0] == stamp else 1
            wait = self._settings.reload_interval * (2 ** min(tries - 1, 16) - 1)
            self._retry = (stamp, self._clock() + min(wait, RETRY_LIMIT), tries)
            self._report(exc)
            return False
        except InventoryFileError as exc:
            self._unsettled = 0
            self._failed = stamp  # its content is wrong: reading it again changes nothing
            self._report(exc)
            return False
        except Exception as exc:  # a bug must not end the watcher: keep serving, say so once
            log.exception("provider.reload_crashed", provider=self._name, path=str(path))
            self._unsettled = 0
            self._failed = stamp
            self._report(InventoryFileError(f"{path}: cannot be loaded ({type(exc).__name__})"))
            return False
        self._index = index  # one reference swap: a lookup sees the old or the new index
        self._loaded = stamp
        self._unsettled = 0
        self.loaded_at = time.time()
        self._failed = self._retry = None
        self._logged_error = None
        log.info("provider.loaded", provider=self._name, path=str(path), devices=index.devices)
        if self._down:
            self._down = False
            log.info("provider.ready", provider=self._name)
        return True

    def _waits(self, stamp: Stamp) -> bool:
        """Whether `stamp` is a version that could not be read and is not due again yet."""
        retry = self._retry
        return retry is not None and retry[0] == stamp and self._clock() < retry[1]

    def _report(self, exc: Exception) -> None:
        """Log a failure once per distinct message, as a load or a reload failure."""
        message = describe(exc, self._settings.path)
        if message == self._logged_error:
            return
        self._logged_error = message
        if self._index is None:
            log.error("provider.load_failed", provider=self._name, error=message)
        else:
            log.error("provider.reload_failed", provider=self._name, error=message, kept="previous")

    def _vanished(self, exc: OSError) -> None:
        """The file is gone: keep the last good inventory for `missing_grace`, then fail closed."""
        now = self._clock()
        grace = self._settings.missing_grace
        self._seen, self._unsettled = None, 0
        if self._missing_since is None:
            self._missing_since = now
            log.warning(
                "provider.file_missing",
                provider=self._name,
                path=str(self._settings.path),
                error=describe(exc, self._settings.path),
                grace=grace if self._index is not None else 0,
            )
        if self._index is not None and now - self._missing_since >= grace:
            self._index = None
            self._loaded = None
            self._down = True
            self._logged_error = f"{self._settings.path}: missing for over {grace:g} s"
            log.error("provider.not_ready", provider=self._name, error=self._logged_error)

    async def _watch(self) -> None:
        crashed: str | None = None  # the last bug's kind, logged once until a poll goes well
        while True:
            await asyncio.sleep(self._settings.reload_interval)
            try:
                await self.reload()
            except ProviderError:
                pass
            except Exception as exc:  # a bug must not end the watching: the next poll tries
                if type(exc).__name__ != crashed:
                    crashed = type(exc).__name__
                    log.exception(
                        "provider.reload_crashed",
                        provider=self._name,
                        path=str(self._settings.path),
                    )
            else:
                crashed = None

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Find the device by serial or UDID, case-insensitively."""
        index = self._index
        if index is None:
            raise ProviderNotReady(self._name, self._logged_error or "inventory not loaded")
        return index.get(identifier.normalized)

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device once."""
        if self._index is not None:
            for record in self._index.records():
                yield record

    async def aclose(self) -> None:
        """Stop watching the file (for good: a start still under way will not watch it)."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
