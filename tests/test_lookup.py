"""The provider chain and its cache: order, failures, TTLs, and one upstream call per identifier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from connector.lookup import LookupCache, LookupResult, ProviderChain, ProviderFailure
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, classify

MAC = classify("C02A00000001")
OTHER = classify("C02A00000002")


class FakeProvider:
    """A provider with an in-memory inventory, a failure switch, a call log and an optional gate."""

    def __init__(self, name: str, devices: tuple[str, ...] = (), *, failing: bool = False) -> None:
        self._name = name
        self.devices = {d.upper(): DeviceRecord(provider=name, serial=d) for d in devices}
        self.failing = failing
        self.calls: list[str] = []
        self.arrived: asyncio.Queue[str] = asyncio.Queue()  # one item per call, on entry
        self.returned = asyncio.Event()  # set when a call has finished
        self.gate: asyncio.Event | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def ready(self) -> bool:
        return True

    @property
    def cacheable(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        self.calls.append(identifier.value)
        self.arrived.put_nowait(identifier.value)
        if self.gate is not None:
            await self.gate.wait()
        self.returned.set()
        if self.failing:
            raise ProviderError(self._name, "upstream answered 503")
        return self.devices.get(identifier.normalized)

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        for record in self.devices.values():
            yield record

    async def aclose(self) -> None:
        return None


class Clock:
    """A hand-driven monotonic clock for TTLCache."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock | None = None, *, found: float = 300, missing: float = 60) -> LookupCache:
    return LookupCache(
        found_ttl=found, not_found_ttl=missing, max_entries=100, timer=clock or Clock()
    )


async def test_first_match_wins() -> None:
    """Providers are asked in order and the first record ends the search."""
    first, second = FakeProvider("jamf", ("C02A00000001",)), FakeProvider("csv", ("C02A00000001",))
    result = await ProviderChain([first, second], _cache()).lookup(MAC)
    assert result == LookupResult(DeviceRecord(provider="jamf", serial="C02A00000001"))
    assert second.calls == []


async def test_later_match_after_an_earlier_miss() -> None:
    """A miss moves on to the next provider."""
    first, second = FakeProvider("jamf"), FakeProvider("csv", ("C02A00000001",))
    result = await ProviderChain([first, second], _cache()).lookup(MAC)
    assert result.record is not None
    assert result.record.provider == "csv"
    assert (first.calls, second.calls) == (["C02A00000001"], ["C02A00000001"])


async def test_later_match_after_an_earlier_failure_lists_it() -> None:
    """A failing provider does not stop the chain; the match still reports the failure."""
    first, second = FakeProvider("jamf", failing=True), FakeProvider("csv", ("C02A00000001",))
    with capture_logs() as logs:
        result = await ProviderChain([first, second], _cache()).lookup(MAC)
    assert result.record is not None
    assert result.record.provider == "csv"
    assert result.failures == (ProviderFailure("jamf", "upstream answered 503"),)
    failed = [e for e in logs if e["event"] == "provider.lookup_failed"]
    assert len(failed) == 1
    assert (failed[0]["provider"], failed[0]["error"]) == ("jamf", "upstream answered 503")


async def test_all_miss_is_none_without_failures() -> None:
    """When every provider answers and none knows the device, the result is a clean miss."""
    chain = ProviderChain([FakeProvider("jamf"), FakeProvider("csv")], _cache())
    assert await chain.lookup(MAC) == LookupResult(None)


async def test_failure_and_miss_lists_the_failure() -> None:
    """A miss after a failure is not definitive: the failure is reported for a fail-closed deny."""
    chain = ProviderChain([FakeProvider("jamf"), FakeProvider("intune", failing=True)], _cache())
    result = await chain.lookup(MAC)
    assert result.record is None
    assert [f.provider for f in result.failures] == ["intune"]


async def test_found_answers_live_for_found_ttl() -> None:
    """A match is served from the cache until `found_ttl` passes, then asked again."""
    clock, provider = Clock(), FakeProvider("csv", ("C02A00000001",))
    chain = ProviderChain([provider], _cache(clock, found=300, missing=10))
    assert (await chain.lookup(MAC)).cached is False
    clock.now += 299
    hit = await chain.lookup(MAC)
    assert (hit.cached, hit.record is not None) == (True, True)
    clock.now += 2
    assert (await chain.lookup(MAC)).cached is False
    assert len(provider.calls) == 2


async def test_not_found_answers_live_for_not_found_ttl() -> None:
    """A miss is cached for the shorter `not_found_ttl`, so a newly enrolled device shows soon."""
    clock, provider = Clock(), FakeProvider("csv")
    chain = ProviderChain([provider], _cache(clock, found=300, missing=10))
    await chain.lookup(MAC)
    clock.now += 9
    assert await chain.lookup(MAC) == LookupResult(None, cached=True)
    clock.now += 2
    provider.devices["C02A00000001"] = DeviceRecord(provider="csv", serial="C02A00000001")
    result = await chain.lookup(MAC)
    assert (result.cached, result.record is not None) == (False, True)
    assert len(provider.calls) == 2


async def test_failures_are_never_cached() -> None:
    """An answer with a failure and no match is asked again on the next lookup."""
    provider = FakeProvider("jamf", ("C02A00000001",), failing=True)
    chain = ProviderChain([provider], _cache())
    assert (await chain.lookup(MAC)).failures
    provider.failing = False
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
    provider = FakeProvider("csv", devices)
    chain = ProviderChain([provider], _cache(found=found, missing=missing))
    await chain.lookup(MAC)
    assert (await chain.lookup(MAC)).cached is False
    assert len(provider.calls) == 2


async def test_cache_is_keyed_by_chain_and_normalized_identifier() -> None:
    """Chains over different providers never share answers; case variants of a UDID do."""
    cache = _cache()
    jamf, csv = FakeProvider("jamf"), FakeProvider("csv", ("00008110-000A1C2E3F40801E",))
    jamf_chain, csv_chain = ProviderChain([jamf], cache), ProviderChain([csv], cache)
    upper, lower = classify("00008110-000A1C2E3F40801E"), classify("00008110-000a1c2e3f40801e")
    assert (await jamf_chain.lookup(upper)).record is None
    assert (await csv_chain.lookup(upper)).record is not None
    assert (await csv_chain.lookup(lower)).cached is True
    assert len(csv.calls) == 1


async def test_clear_forgets_everything() -> None:
    """`clear` drops found and not-found answers."""
    provider = FakeProvider("csv", ("C02A00000001",))
    cache = _cache()
    chain = ProviderChain([provider], cache)
    await chain.lookup(MAC)
    await chain.lookup(OTHER)
    cache.clear()
    assert not (await chain.lookup(MAC)).cached
    assert not (await chain.lookup(OTHER)).cached


async def test_concurrent_lookups_share_one_call() -> None:
    """N simultaneous lookups of one identifier reach the provider once and get one answer."""
    provider = FakeProvider("jamf", ("C02A00000001",))
    provider.gate = asyncio.Event()
    chain = ProviderChain([provider], _cache())
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
    provider = FakeProvider("jamf", ("C02A00000001",))
    provider.gate = asyncio.Event()
    chain = ProviderChain([provider], _cache())
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
    provider = FakeProvider("jamf", ("C02A00000001",))
    provider.gate = asyncio.Event()
    chain = ProviderChain([provider], _cache())
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
