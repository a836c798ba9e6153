"""The lookup cache seam: string keys, bytes values with a TTL, and the record codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.lookup import (
    AnswerCache,
    Cached,
    LookupCache,
    MemoryCache,
    ProviderChain,
    cache_key,
    decode_answer,
    encode_answer,
)
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import classify
from providers.memory import MemoryProvider
from tests.test_lookup import Clock

MAC = classify("C02A00000001")

FULL = DeviceRecord(
    provider="jamf",
    record_id="42",
    serial="C02A00000001",
    udid="00008110-000A1C2E3F40801E",
    name="MBP ☕ Anika",
    model="MacBook Pro",
    platform="macOS",
    os_version="15.3.2",
    managed=True,
    supervised=False,
    compliance="compliant",
    owner_type="company",
    jailbroken=False,
    last_contact=datetime(2026, 11, 20, 9, 26, 41, 123456, tzinfo=timezone(timedelta(hours=-5))),
    user=UserRecord(username="asharma", email="anika@example.com", department=None, id="7"),
    groups=(
        GroupRef("All Managed", "1", smart=True),
        GroupRef("Pilot"),
        GroupRef("x", None, False),
    ),
)


@pytest.mark.parametrize(
    "record",
    [FULL, DeviceRecord(provider="csv", udid="00008110-000A1C2E3F40801E"), None],
    ids=["every-field", "mostly-none", "not-found"],
)
def test_codec_round_trips_a_record(record: DeviceRecord | None) -> None:
    """Encoding then decoding gives back an equal record: datetimes, groups, user, Nones."""
    data = encode_answer(record)
    assert isinstance(data, bytes)
    decoded = decode_answer(data)
    assert decoded == record
    assert _offset(decoded) == _offset(record)  # the same instant, and the same zone


def _offset(record: DeviceRecord | None) -> timedelta | None:
    return record.last_contact.utcoffset() if record and record.last_contact else None


_text = st.none() | st.text(max_size=12)
_records = st.builds(
    DeviceRecord,
    provider=st.text(min_size=1, max_size=12),
    serial=_text,
    managed=st.none() | st.booleans(),
    last_contact=st.none() | st.datetimes(timezones=st.just(UTC)),
    user=st.none() | st.builds(UserRecord, username=_text, email=_text),
    groups=st.lists(
        st.builds(GroupRef, name=st.text(max_size=8), id=_text, smart=st.none() | st.booleans()),
        max_size=3,
    ).map(tuple),
)


@given(_records)
def test_codec_round_trips_any_record(record: DeviceRecord) -> None:
    """Any record, including odd text and empty groups, survives the codec unchanged."""
    assert decode_answer(encode_answer(record)) == record


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'"C02A00000001"',
        b'{"serial": "C02A00000001"}',
        b'{"provider": "jamf", "managed": "yes"}',
        b'{"provider": "jamf", "last_contact": "2026-11-20T09:26:41"}',
    ],
    ids=["empty", "truncated", "string", "no-provider", "wrong-type", "naive-datetime"],
)
def test_codec_refuses_what_it_did_not_write(data: bytes) -> None:
    """Bytes that are not an encoded answer raise ValueError rather than become a record."""
    with pytest.raises(ValueError, match="not a cached answer"):
        decode_answer(data)


def test_an_answer_from_before_directory_groups_holds_name_only_groups_to_their_ids() -> None:
    """A record an earlier release stored (no `directory` in its groups) cannot say which groups
    a directory's users named: each group known by name only counts as one, so an id-shaped
    name in it never grants; groups with an id are as they were, and new answers round-trip."""
    stored = (
        b'{"provider":"fleet","serial":"C02FLEET0001","groups":['
        b'{"name":"12345","id":null,"smart":null},{"name":"All Macs","id":"57","smart":true}]}'
    )
    record = decode_answer(stored)
    assert record is not None
    assert [(g.name, g.directory) for g in record.groups] == [("12345", True), ("All Macs", False)]
    fresh = DeviceRecord(provider="files", serial="C02FLEET0001", groups=(GroupRef("12345"),))
    assert decode_answer(encode_answer(fresh)) == fresh


def test_keys_are_strings_per_provider_and_normalized_identifier() -> None:
    """A key names the codec version, the provider and the upper-cased identifier."""
    lower = classify("00008110-000a1c2e3f40801e")
    assert cache_key("jamf", lower) == "posture:lookup:v3:jamf:udid:00008110-000A1C2E3F40801E"
    assert cache_key("jamf", MAC) != cache_key("intune", MAC)


async def test_memory_cache_keeps_each_entry_for_its_own_ttl() -> None:
    """Each value expires after the TTL it was stored with, on the injected clock."""
    clock = Clock()
    store: LookupCache = MemoryCache(10, timer=clock)
    await store.set("long", b"1", 300)
    await store.set("short", b"2", 10)
    clock.now += 9
    assert (await store.get("long"), await store.get("short")) == (b"1", b"2")
    clock.now += 2
    assert (await store.get("long"), await store.get("short")) == (b"1", None)
    clock.now += 290
    assert await store.get("long") is None


async def test_memory_cache_is_bounded_and_clears() -> None:
    """The store holds at most `max_entries` values; `clear` empties it."""
    store = MemoryCache(2, timer=Clock())
    for key in ("a", "b", "c"):
        await store.set(key, key.encode(), 60)
    assert sum([await store.get(k) is not None for k in ("a", "b", "c")]) == 2
    await store.clear()
    assert [await store.get(k) for k in ("a", "b", "c")] == [None, None, None]


async def test_unreadable_entry_is_a_miss() -> None:
    """A value the codec refuses is treated as absent, so the provider is asked."""
    store = MemoryCache(10, timer=Clock())
    await store.set(cache_key("jamf", MAC), b'{"managed": true}', 60)
    answers = AnswerCache(store, found_ttl=300, not_found_ttl=60)
    assert await answers.get("jamf", MAC) is None
    await answers.put("jamf", MAC, None)
    assert await answers.get("jamf", MAC) == Cached(None)


async def test_instances_sharing_a_store_share_answers() -> None:
    """Two chains with their own AnswerCache over one store (two replicas) reuse each other's."""
    store = MemoryCache(10, timer=Clock())
    first = MemoryProvider("jamf", [FULL], cacheable=True)
    second = MemoryProvider("jamf", [FULL], cacheable=True)
    for provider in (first, second):
        answers = AnswerCache(store, found_ttl=300, not_found_ttl=60)
        result = await ProviderChain([provider], answers, budget=5).lookup(MAC)
        assert result.record == FULL
    assert (len(first.calls), len(second.calls)) == (1, 0)
