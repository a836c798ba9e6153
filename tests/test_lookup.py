"""The provider chain and its cache: order, failures, TTLs, budget, one upstream call per identifier."""

from __future__ import annotations

import asyncio
import re
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


# --- per-provider cache ---------------------------------------------------------------------


async def test_in_memory_providers_are_always_asked() -> None:
    """A provider that is not cacheable (a file) is asked on every lookup, so changes show."""
    provider = MemoryProvider.of_serials("csv", "C02A00000001")
    chain = _chain([provider], _cache())
    assert (await chain.lookup(MAC)).record is not None
    provider.remove("C02A00000001")
    assert await chain.lookup(MAC) == LookupResult(None)
    assert len(provider.calls) == 2


async def test_each_provider_answer_is_cached_on_its_own() -> None:
    """A remote miss is served from the cache while the file behind it is asked again."""
    jamf, csv = _remote("jamf"), MemoryProvider.of_serials("csv", "C02A00000001")
    chain = _chain([jamf, csv], _cache())
    await chain.lookup(MAC)
    result = await chain.lookup(MAC)
    assert (result.record is not None, result.cached) == (True, False)
    assert (len(jamf.calls), len(csv.calls)) == (1, 2)


async def test_a_cached_later_match_does_not_hide_an_earlier_failure() -> None:
    """With `next`, a failure is asked again on every lookup even when the match is cached."""
    jamf, intune = (
        _remote("jamf", failure="upstream answered 503"),
        _remote("intune", "C02A00000001"),
    )
    chain = _chain([jamf, intune], _cache(), on_failure="next")
    await chain.lookup(MAC)
    result = await chain.lookup(MAC)
    assert (result.cached, [f.provider for f in result.failures]) == (True, ["jamf"])
    assert (len(jamf.calls), len(intune.calls)) == (2, 1)


# --- on_failure ------------------------------------------------------------------------------


async def test_failure_before_a_match_stops_the_chain_by_default() -> None:
    """With `deny` (the default), a failing provider ends the lookup: a later one is not asked."""
    jamf, csv = _remote("jamf", failure="upstream answered 503"), _remote("csv", "C02A00000001")
    result = await _chain([jamf, csv], _cache()).lookup(MAC)
    assert result == LookupResult(None, (ProviderFailure("jamf", "upstream answered 503"),))
    assert csv.calls == []


async def test_failure_after_a_match_is_never_reached() -> None:
    """A match ends the chain before a later provider could fail."""
    jamf, intune = _remote("jamf", "C02A00000001"), _remote("intune", failure="down")
    result = await _chain([jamf, intune], _cache()).lookup(MAC)
    assert (result.record is not None, result.failures, intune.calls) == (True, (), [])


# --- budget ------------------------------------------------------------------------------------


async def test_one_deadline_covers_the_whole_chain() -> None:
    """Two hanging providers fail within one budget, not one budget each."""
    first, second = _remote("jamf"), _remote("intune", "C02A00000001")
    first.gate = second.gate = asyncio.Event()  # never opened: both would hang forever
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        result = await _chain([first, second], budget=0.3, on_failure="next").lookup(MAC)
    elapsed = loop.time() - started
    assert [f.provider for f in result.failures] == ["jamf", "intune"]
    assert result.record is None
    assert all("0.3s decision budget" in f.message for f in result.failures)
    outcomes = [e["outcome"] for e in logs if e["event"] == "provider.lookup_failed"]
    assert outcomes == ["timeout", "timeout"]
    assert elapsed < 0.55  # the second provider got what the first left, not a fresh 0.3 s


async def test_a_provider_gets_only_what_is_left_of_the_budget() -> None:
    """After a slow first answer, the next provider's wait is cut to the rest of the deadline."""
    first, second = _remote("jamf"), _remote("intune")
    first.gate, second.gate = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.15, first.gate.set)
    with capture_logs() as logs:
        result = await _chain([first, second], budget=0.4).lookup(MAC)
    [failure] = result.failures
    left = re.search(r"within the ([0-9.]+)s left of the 0.4s decision budget", failure.message)
    assert failure.provider == "intune"
    assert left is not None
    assert 0.1 < float(left[1]) < 0.3
    timeouts = [e for e in logs if e["event"] == "provider.lookup_failed"]
    assert [(e["provider"], e["outcome"]) for e in timeouts] == [("intune", "timeout")]


class StuckStore(MemoryCache):
    """A cache store whose writes never finish (a shared store that stopped answering)."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await asyncio.Event().wait()


async def test_a_stuck_cache_write_costs_the_entry_not_the_answer() -> None:
    """A cache write that hangs is cut at the decision budget: the answer found is returned and
    `lookup.cache_write_timeout` says why it was not cached."""
    cache = AnswerCache(StuckStore(100), found_ttl=300, not_found_ttl=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        result = await _chain([_remote("jamf", "C02A00000001")], cache, budget=0.3).lookup(MAC)
    assert result.record is not None
    assert result.failures == ()
    assert loop.time() - started < 1.0  # within the budget (and its scheduling), not forever
    [stuck] = [e for e in logs if e["event"] == "lookup.cache_write_timeout"]
    assert (stuck["provider"], stuck["log_level"]) == ("jamf", "warning")
