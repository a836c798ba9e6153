"""The provider chain: ask providers in order, first match wins, with a cache in front.

Found and not-found answers are cached separately (a new device should not wait out a long
"found" TTL to be recognised). A not-found is cached only when every provider answered; a
failure is never cached. Concurrent lookups of one identifier share one upstream call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from cachetools import TTLCache

from providers.base import DeviceRecord, Provider, ProviderError
from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("connector.lookup")


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    """A provider that could not answer.

    Attributes:
        provider: Its configured name.
        message: Why, safe to log.
    """

    provider: str
    message: str


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What the chain found.

    Attributes:
        record: The first match, or None.
        failures: Providers that failed before (or instead of) a match.
        cached: Whether the answer came from the cache.
    """

    record: DeviceRecord | None
    failures: tuple[ProviderFailure, ...] = ()
    cached: bool = False


class LookupCache:
    """TTL caches of found and not-found answers, shared by every chain of the app."""

    def __init__(
        self,
        *,
        found_ttl: float,
        not_found_ttl: float,
        max_entries: int,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._found: TTLCache[tuple[str, ...], DeviceRecord] | None = (
            TTLCache(max_entries, found_ttl, timer=timer) if found_ttl > 0 else None
        )
        self._missing: TTLCache[tuple[str, ...], bool] | None = (
            TTLCache(max_entries, not_found_ttl, timer=timer) if not_found_ttl > 0 else None
        )

    def get(self, key: tuple[str, ...]) -> LookupResult | None:
        """A cached answer, or None when there is none."""
        if self._found is not None and (record := self._found.get(key)) is not None:
            return LookupResult(record, cached=True)
        if self._missing is not None and key in self._missing:
            return LookupResult(None, cached=True)
        return None

    def put(self, key: tuple[str, ...], result: LookupResult) -> None:
        """Remember a definitive answer (a match, or no match with no failure)."""
        if result.record is not None:
            if self._found is not None:
                self._found[key] = result.record
        elif not result.failures and self._missing is not None:
            self._missing[key] = True

    def clear(self) -> None:
        """Forget everything (after an inventory reload, for instance)."""
        for cache in (self._found, self._missing):
            if cache is not None:
                cache.clear()


class ProviderChain:
    """An ordered list of providers consulted for one webhook."""

    def __init__(self, providers: Sequence[Provider], cache: LookupCache) -> None:
        self._providers = tuple(providers)
        self._names = tuple(p.name for p in self._providers)
        self._cache = cache
        self._inflight: dict[tuple[str, ...], asyncio.Task[LookupResult]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """Provider names, in order."""
        return self._names

    async def lookup(self, identifier: DeviceIdentifier) -> LookupResult:
        """The first provider's match, from the cache when fresh."""
        key = (*self._names, identifier.normalized)
        if (hit := self._cache.get(key)) is not None:
            return hit
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._ask_and_remember(key, identifier))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # Shielded: one caller giving up must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    async def _ask_and_remember(
        self, key: tuple[str, ...], identifier: DeviceIdentifier
    ) -> LookupResult:
        # Cached inside the task, in the step that finishes it: no window between the task
        # leaving `_inflight` and the answer reaching the cache, and an answer whose every
        # waiter gave up is still kept.
        result = await self._ask_all(identifier)
        self._cache.put(key, result)
        return result

    async def _ask_all(self, identifier: DeviceIdentifier) -> LookupResult:
        failures: list[ProviderFailure] = []
        for provider in self._providers:
            started = time.perf_counter()
            try:
                record = await provider.lookup(identifier)
            except ProviderError as exc:
                failures.append(ProviderFailure(provider.name, exc.message))
                log.warning(
                    "provider.lookup_failed",
                    provider=provider.name,
                    error=exc.message,
                    latency_ms=_ms(started),
                )
                continue
            log.debug(
                "provider.lookup",
                provider=provider.name,
                found=record is not None,
                latency_ms=_ms(started),
            )
            if record is not None:
                return LookupResult(record, tuple(failures))
        return LookupResult(None, tuple(failures))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
