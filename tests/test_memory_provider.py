"""The in-memory provider: a real `Provider` with switches for tests and the lab."""

from __future__ import annotations

import pytest

from providers.base import DeviceRecord, Provider, ProviderError, ProviderNotReady
from providers.identifiers import classify
from providers.memory import MemoryProvider

PHONE = DeviceRecord(provider="mem", serial="F17ZK8XJN72Q", udid="00008110-000A1C2E3F40801E")


async def test_it_is_a_provider_answering_by_serial_or_udid() -> None:
    """It satisfies the Provider protocol and finds a record under either identifier, any case."""
    provider = MemoryProvider("mem", [PHONE], cacheable=True)
    assert isinstance(provider, Provider)
    assert (provider.name, provider.ready, provider.cacheable) == ("mem", True, True)
    assert await provider.lookup(classify("F17ZK8XJN72Q")) == PHONE
    assert await provider.lookup(classify("00008110-000a1c2e3f40801e")) == PHONE
    assert await provider.lookup(classify("C02A00000001")) is None
    assert provider.calls == ["F17ZK8XJN72Q", "00008110-000a1c2e3f40801e", "C02A00000001"]


async def test_a_serial_other_than_ascii_answers_for_nothing() -> None:
    """As every real provider: Unicode upper-cases 'ﬁ' to 'FI', an attested identifier is ASCII."""
    provider = MemoryProvider("mem", [DeviceRecord(provider="mem", serial="ABCDEFGH\ufb01")])
    assert await provider.lookup(classify("ABCDEFGHFI")) is None


async def test_remove_drops_every_key_and_listing_shows_each_device_once() -> None:
    """`remove` by one identifier forgets the record under both; `iter_devices` never repeats."""
    other = DeviceRecord(provider="mem", serial="C02A00000001")
    provider = MemoryProvider("mem", [PHONE, other])
    assert [r async for r in provider.iter_devices()] == [PHONE, other]
    provider.remove("f17zk8xjn72q")
    assert await provider.lookup(classify("00008110-000A1C2E3F40801E")) is None
    assert [r async for r in provider.iter_devices()] == [other]


async def test_failure_switch_and_readiness() -> None:
    """A set `failure` raises ProviderError; a provider built not ready raises until started."""
    provider = MemoryProvider("mem", [PHONE], ready=False)
    with pytest.raises(ProviderNotReady):
        await provider.lookup(classify("F17ZK8XJN72Q"))
    await provider.start()
    provider.failure = "upstream answered 503"
    with pytest.raises(ProviderError, match="upstream answered 503"):
        await provider.lookup(classify("F17ZK8XJN72Q"))
    provider.failure = None
    assert await provider.lookup(classify("F17ZK8XJN72Q")) == PHONE
