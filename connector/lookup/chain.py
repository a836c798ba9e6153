"""The provider chain: ask providers in order, first match wins, inside one deadline per call.

- **Cache.** Each cacheable provider's answer is cached on its own (`AnswerCache`); a provider
  that answers from memory (files) is always asked, so a reloaded inventory decides the next
  call. Found and not-found answers have their own TTLs; a failure is never cached.
- **Budget.** One deadline covers the whole chain: each provider gets what is left of it (its
  own ``budget`` still applies inside), and one that runs out is a provider failure, not a hang.
- **Failures.** ``on_failure = "deny"`` stops at the first provider that fails before a match:
  the caller answers ``inventory-unavailable`` rather than let a lower-priority inventory decide.
  ``"next"`` moves on and lets a later provider's match decide.
- **Coalescing.** Concurrent lookups of one identifier share one run of the chain when it has a
  remote (cacheable) provider; a chain of in-memory providers is simply run (a task per call
  would cost more than the lookups).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from connector.lookup.cache import AnswerCache
from connector.observe import NO_HOOKS, Hook, LookupEvent
from providers.base import DeviceRecord, Provider, ProviderError
from providers.identifiers import DeviceIdentifier

OnFailure = Literal["deny", "next"]

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
        cached: Whether the match came from the cache; for a miss, whether any answer did.
    """

    record: DeviceRecord | None
    failures: tuple[ProviderFailure, ...] = ()
    cached: bool = False


@dataclass(frozen=True, slots=True)
class _Answer:
    record: DeviceRecord | None
    cached: bool


class ProviderChain:
    """An ordered list of providers consulted for one webhook."""

    def __init__(
        self,
        providers: Sequence[Provider],
        cache: AnswerCache | None = None,
        *,
        budget: float,
        on_failure: OnFailure = "deny",
        hooks: Hook = NO_HOOKS,
    ) -> None:
        self._providers = tuple(providers)
        self._cache = cache
        self._budget = budget
        self._on_failure = on_failure
        self._hooks = hooks
        self._coalesce = any(p.cacheable for p in self._providers)
        self._inflight: dict[str, asyncio.Task[LookupResult]] = {}
        self.coalesced = 0
        """Lookups that waited for a run already under way, since start (for metrics)."""

    async def lookup(self, identifier: DeviceIdentifier) -> LookupResult:
        """The first provider's match; concurrent callers for one identifier share the work."""
        if not self._coalesce:
            return await self._ask_all(identifier)
        key = identifier.normalized
        task = self._inflight.get(key)
        if task is None or task.done():  # a done task awaits its callback; its answer is old
            cached = await self._from_memory(identifier)
            if cached is not None:
                return cached
            task = asyncio.create_task(self._ask_all(identifier))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        else:
            self.coalesced += 1
        # Shielded: one caller giving up must not cancel the lookup the others wait for (its
        # answers still reach the cache).
        return await asyncio.shield(task)

    async def _from_memory(self, identifier: DeviceIdentifier) -> LookupResult | None:
        """The chain's answer when the in-process cache holds every answer it needs, else None.

        The common case of a call (a device seen minutes ago) then costs no task: nothing is
        asked that could wait, so there is nothing to share or to bound by the budget. The
        lookup events are the ones `_ask_all` reports for cache hits.
        """
        cache = self._cache
        if cache is None or not cache.in_memory:
            return None
        hits: list[tuple[Provider, DeviceRecord | None, float]] = []
        for provider in self._providers:
            started = time.monotonic()
            hit = await cache.get(provider.name, identifier) if provider.cacheable else None
            if hit is None:
                return None
            hits.append((provider, hit.record, started))
            if hit.record is not None:
                break
        for provider, record, started in hits:
            self._observed(provider, _Answer(record, cached=True), started)
        record = hits[-1][1]
        return LookupResult(record, (), cached=True)

    def _forget(self, key: str, done: asyncio.Task[LookupResult]) -> None:
        if self._inflight.get(key) is done:  # not a newer run of the same identifier
            del self._inflight[key]

    async def _ask_all(self, identifier: DeviceIdentifier) -> LookupResult:
        deadline = time.monotonic() + self._budget
        failures: list[ProviderFailure] = []
        any_cached = False
        for provider in self._providers:
            answer = await self._ask(provider, identifier, deadline)
            if isinstance(answer, ProviderFailure):
                failures.append(answer)
                if self._on_failure == "deny":
                    break
                continue
            any_cached = any_cached or answer.cached
            if answer.record is not None:
                return LookupResult(answer.record, tuple(failures), answer.cached)
        return LookupResult(None, tuple(failures), any_cached)

    async def _ask(
        self, provider: Provider, identifier: DeviceIdentifier, deadline: float
    ) -> _Answer | ProviderFailure:
        """One provider's answer within what is left of the deadline, from the cache if it may."""
        started = time.monotonic()
        left = deadline - started
        cache = self._cache if provider.cacheable else None
        if left <= 0:
            message = f"not asked: the {self._budget:g}s decision budget was spent"
            return self._failed(provider, message, "timeout", started)
        deadline_cm = asyncio.timeout(left)
        try:
            async with deadline_cm:
                hit = await cache.get(provider.name, identifier) if cache else None
                if hit is not None:
                    return self._observed(provider, _Answer(hit.record, cached=True), started)
                record = await provider.lookup(identifier)
        except TimeoutError as exc:
            if not deadline_cm.expired():  # not ours: a provider bug, as any other exception
                return self._crashed(provider, exc, started)
            message = (
                f"no answer within the {left:.3g}s left of the {self._budget:g}s decision budget"
            )
            return self._failed(provider, message, "timeout", started)
        except ProviderError as exc:
            return self._failed(provider, exc.message, "error", started)
        except Exception as exc:  # a provider bug: fail closed (`_crashed`)
            return self._crashed(provider, exc, started)
        if cache is not None:
            await self._remember(cache, provider, identifier, record, deadline)
        return self._observed(provider, _Answer(record, cached=False), started)

    async def _remember(
        self,
        cache: AnswerCache,
        provider: Provider,
        identifier: DeviceIdentifier,
        record: DeviceRecord | None,
        deadline: float,
    ) -> None:
        """Cache an answer within what is left of the deadline: a slow cache store costs the
        cache entry, never the answer already in hand, nor time past the budget."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                await cache.put(provider.name, identifier, record)
        except TimeoutError:
            log.warning("lookup.cache_write_timeout", provider=provider.name)

    def _observed(self, provider: Provider, answer: _Answer, started: float) -> _Answer:
        found = answer.record is not None
        self._hooks.lookup(
            LookupEvent(
                provider=provider.name,
                found=found,
                outcome="found" if found else "not_found",
                latency=time.monotonic() - started,
                cached=answer.cached,
            )
        )
        return answer

    def _crashed(self, provider: Provider, exc: Exception, started: float) -> ProviderFailure:
        """A provider bug: a failure like any other (fail closed, or the next provider with
        ``on_failure = "next"``), with its traceback logged."""
        log.error("provider.lookup_crashed", provider=provider.name, exc_info=exc)
        return self._failed(provider, f"internal error ({type(exc).__name__})", "error", started)

    def _failed(
        self,
        provider: Provider,
        message: str,
        outcome: Literal["error", "timeout"],
        started: float,
    ) -> ProviderFailure:
        self._hooks.lookup(
            LookupEvent(
                provider=provider.name,
                found=False,
                outcome=outcome,
                latency=time.monotonic() - started,
                error=message,
            )
        )
        return ProviderFailure(provider.name, message)
