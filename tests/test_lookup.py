"""The provider chain and its cache: order, failures, TTLs, budget, one upstream call per identifier."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from connector.lookup import (
    AnswerCache,
    LookupResult,
    MemoryCache,
    OnFailure,
    ProviderChain,
    ProviderFailure,
)
from connector.observe import StructlogHook
from providers.base import DeviceRecord, Provider
from providers.identifiers import classify
from providers.memory import MemoryProvider

MAC = classify("C02A00000001")
OTHER = classify("C02A00000002")


class Clock:
    """A hand-driven monotonic clock for TTLCache."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock | None = None, *, found: float = 300, missing: float = 60) -> AnswerCache:
    store = MemoryCache(100, timer=clock or Clock())
    return AnswerCache(store, found_ttl=found, not_found_ttl=missing)


def _remote(name: str, *serials: str, failure: str | None = None) -> MemoryProvider:
    """A memory provider standing in for a remote API: its answers may be cached."""
    provider = MemoryProvider.of_serials(name, *serials, cacheable=True)
    provider.failure = failure
    return provider


def _chain(
    providers: Sequence[Provider],
    cache: AnswerCache | None = None,
    *,
    budget: float = 5.0,
    on_failure: OnFailure = "deny",
) -> ProviderChain:
    return ProviderChain(
        providers, cache, budget=budget, on_failure=on_failure, hooks=StructlogHook()
    )


async def test_first_match_wins() -> None:
    """Providers are asked in order and the first record ends the search."""
    first, second = _remote("jamf", "C02A00000001"), _remote("csv", "C02A00000001")
    result = await _chain([first, second], _cache()).lookup(MAC)
    assert result == LookupResult(DeviceRecord(provider="jamf", serial="C02A00000001"))
    assert second.calls == []


async def test_later_match_after_an_earlier_miss() -> None:
    """A miss moves on to the next provider."""
    first, second = _remote("jamf"), _remote("csv", "C02A00000001")
    result = await _chain([first, second], _cache()).lookup(MAC)
    assert result.record is not None
    assert result.record.provider == "csv"
    assert (first.calls, second.calls) == (["C02A00000001"], ["C02A00000001"])


async def test_later_match_after_an_earlier_failure_lists_it() -> None:
    """With `next`, a failing provider does not stop the chain; the match reports the failure."""
    first, second = _remote("jamf", failure="upstream answered 503"), _remote("csv", "C02A00000001")
    with capture_logs() as logs:
        result = await _chain([first, second], _cache(), on_failure="next").lookup(MAC)
    assert result.record is not None
    assert result.record.provider == "csv"
    assert result.failures == (ProviderFailure("jamf", "upstream answered 503"),)
    failed = [e for e in logs if e["event"] == "provider.lookup_failed"]
    assert len(failed) == 1
    assert (failed[0]["provider"], failed[0]["error"]) == ("jamf", "upstream answered 503")


async def test_all_miss_is_none_without_failures() -> None:
    """When every provider answers and none knows the device, the result is a clean miss."""
    chain = _chain([_remote("jamf"), _remote("csv")], _cache())
    assert await chain.lookup(MAC) == LookupResult(None)


async def test_failure_and_miss_lists_the_failure() -> None:
    """A miss after a failure is not definitive: the failure is reported for a fail-closed deny."""
    chain = _chain([_remote("jamf"), _remote("intune", failure="upstream answered 503")], _cache())
    result = await chain.lookup(MAC)
    assert result.record is None
    assert [f.provider for f in result.failures] == ["intune"]


async def test_found_answers_live_for_found_ttl() -> None:
    """A match is served from the cache until `found_ttl` passes, then asked again."""
    clock, provider = Clock(), _remote("csv", "C02A00000001")
    chain = _chain([provider], _cache(clock, found=300, missing=10))
    assert (await chain.lookup(MAC)).cached is False
    clock.now += 299
    hit = await chain.lookup(MAC)
    assert (hit.cached, hit.record is not None) == (True, True)
    clock.now += 2
    assert (await chain.lookup(MAC)).cached is False
    assert len(provider.calls) == 2


async def test_not_found_answers_live_for_not_found_ttl() -> None:
    """A miss is cached for the shorter `not_found_ttl`, so a newly enrolled device shows soon."""
    clock, provider = Clock(), _remote("csv")
    chain = _chain([provider], _cache(clock, found=300, missing=10))
    await chain.lookup(MAC)
    clock.now += 9
    assert await chain.lookup(MAC) == LookupResult(None, cached=True)
    clock.now += 2
    provider.add(DeviceRecord(provider="csv", serial="C02A00000001"))
    result = await chain.lookup(MAC)
    assert (result.cached, result.record is not None) == (False, True)
    assert len(provider.calls) == 2


async def test_failures_are_never_cached() -> None:
    """An answer with a failure and no match is asked again on the next lookup."""
    provider = _remote("jamf", "C02A00000001", failure="upstream answered 503")
    chain = _chain([provider], _cache())
    assert (await chain.lookup(MAC)).failures
    provider.failure = None
    result = await chain.lookup(MAC)
    assert (result.record is not None, result.cached) == (True, False)
    assert len(provider.calls) == 2


@pytest.mark.parametrize(
    ("found", "missing", "devices"),
    [(0, 60, ("C02A00000001",)), (300, 0, ())],
    ids=["found-ttl-0", "not-found-ttl-0"],
)
async def test_zero_ttl_disables_that_cache(
    found: float, missing: float, devices: tuple[str, ...]
) -> None:
    """A TTL of 0 turns that half of the cache off."""
    provider = _remote("csv", *devices)
    chain = _chain([provider], _cache(found=found, missing=missing))
    await chain.lookup(MAC)
    assert (await chain.lookup(MAC)).cached is False
    assert len(provider.calls) == 2


async def test_cache_is_keyed_by_provider_and_normalized_identifier() -> None:
    """Different providers never share answers; case variants of a UDID do."""
    cache = _cache()
    jamf, csv = _remote("jamf"), _remote("csv", "00008110-000A1C2E3F40801E")
    jamf_chain, csv_chain = _chain([jamf], cache), _chain([csv], cache)
    upper, lower = classify("00008110-000A1C2E3F40801E"), classify("00008110-000a1c2e3f40801e")
    assert (await jamf_chain.lookup(upper)).record is None
    assert (await csv_chain.lookup(upper)).record is not None
    assert (await csv_chain.lookup(lower)).cached is True
    assert len(csv.calls) == 1


async def test_clear_forgets_everything() -> None:
    """`clear` drops found and not-found answers."""
    provider = _remote("csv", "C02A00000001")
    cache = _cache()
    chain = _chain([provider], cache)
    await chain.lookup(MAC)
    await chain.lookup(OTHER)
    await cache.clear()
    assert not (await chain.lookup(MAC)).cached
    assert not (await chain.lookup(OTHER)).cached


async def test_concurrent_lookups_share_one_call() -> None:
    """N simultaneous lookups of one identifier reach the provider once and get one answer."""
    provider = _remote("jamf", "C02A00000001")
    provider.gate = asyncio.Event()
    chain = _chain([provider], _cache())
    tasks = [asyncio.create_task(chain.lookup(MAC)) for _ in range(20)]
    other = asyncio.create_task(chain.lookup(OTHER))
    await provider.arrived.get()
    await provider.arrived.get()
    provider.gate.set()
    results = await asyncio.gather(*tasks)
    assert (await other).record is None
    assert sorted(provider.calls) == ["C02A00000001", "C02A00000002"]
    assert {r.record for r in results} == {DeviceRecord(provider="jamf", serial="C02A00000001")}


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    """One caller giving up leaves the shared lookup running for the rest."""
    provider = _remote("jamf", "C02A00000001")
    provider.gate = asyncio.Event()
    chain = _chain([provider], _cache())
    quitter = asyncio.create_task(chain.lookup(MAC))
    stayer = asyncio.create_task(chain.lookup(MAC))
    await provider.arrived.get()
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    provider.gate.set()
    result = await stayer
    assert result.record is not None
    assert provider.calls == ["C02A00000001"]


async def test_answer_is_cached_even_when_every_waiter_gave_up() -> None:
    """The shared lookup finishes and caches its answer although its only caller was cancelled."""
    provider = _remote("jamf", "C02A00000001")
    provider.gate = asyncio.Event()
    chain = _chain([provider], _cache())
    quitter = asyncio.create_task(chain.lookup(MAC))
    await provider.arrived.get()
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    provider.gate.set()
    await provider.returned.wait()
    result = await chain.lookup(MAC)
    assert (result.record is not None, result.cached) == (True, True)
    assert provider.calls == ["C02A00000001"]
