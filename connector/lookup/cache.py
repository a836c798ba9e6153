"""The lookup cache: provider answers as bytes under string keys, behind an async protocol.

A `LookupCache` is what a shared store (Redis, PostgreSQL) can implement: ``get``/``set`` of
bytes with a time to live, no Python objects and no tuples. `MemoryCache`, the default, keeps
them in process. `AnswerCache` is the one place that knows the key format, the record codec
and which TTL an answer gets; the chain talks only to it.

Only answers of providers with ``cacheable = True`` (remote APIs) are stored, one entry per
provider and identifier: a file inventory is asked directly, so a reload decides the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from cachetools import TLRUCache
from pydantic import TypeAdapter, ValidationError

from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier

KEY_PREFIX = "posture:lookup:v3"
"""Leads every key; the version changes with the codec or the key's layout, so old entries are
never misread (v2: the identifier's kind joined the key; v3: `GroupRef.directory`)."""

_ANSWER: TypeAdapter[DeviceRecord | None] = TypeAdapter(DeviceRecord | None)
DECODED_ENTRIES = 4096
"""Decoded answers kept per `AnswerCache` (all dropped at once when full)."""


class LookupCache(Protocol):
    """Bytes under string keys with a time to live.

    Implementations bound their own I/O and never raise: a store that cannot answer behaves
    like an empty one (a miss is asked upstream; a lost write only costs a later lookup).
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0)."""
        ...

    async def clear(self) -> None:
        """Forget every entry (an operator's flush)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """The in-process `LookupCache`: a cachetools TTL cache with a time to live per entry."""

    def __init__(self, max_entries: int, *, timer: Callable[[], float] = time.monotonic) -> None:
        self._entries: TLRUCache[str, tuple[bytes, float]] = TLRUCache(
            max_entries, ttu=lambda _key, value, now: now + value[1], timer=timer
        )

    async def get(self, key: str) -> bytes | None:
        """The live value under `key`."""
        # Indexing rather than `.get`: a hit then costs one expiry check instead of a timer
        # context, a membership test and the index (a third of the time); misses ask upstream.
        try:
            return self._entries[key][0]
        except KeyError:  # absent or expired (TLRUCache's __missing__)
            return None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds, evicting the entry closest to expiry when full."""
        self._entries[key] = (value, ttl)

    async def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    async def aclose(self) -> None:
        """Nothing to release."""


def encode_answer(record: DeviceRecord | None) -> bytes:
    """A provider's answer as JSON: the record (datetimes in ISO 8601), or ``null``."""
    return _ANSWER.dump_json(record)


def decode_answer(data: bytes) -> DeviceRecord | None:
    """The answer `encode_answer` wrote; raises `ValueError` for anything else.

    An answer a release before `GroupRef.directory` wrote (a synced generation, a shared
    cache) does not say which groups came from a directory whose users name groups: each group
    it knows by name only counts as one, so an id-shaped name in it never grants (a Jamf group
    known by name only may be denied until the next sync or lookup)."""
    try:
        record = _ANSWER.validate_json(data, strict=True)
    except ValidationError as exc:
        raise ValueError(f"not a cached answer: {exc.error_count()} problem(s)") from None
    if record is not None and record.last_contact and record.last_contact.tzinfo is None:
        raise ValueError("not a cached answer: last_contact has no time zone")
    if record is not None and record.groups and b'"directory":' not in data:
        groups = tuple(g if g.id else replace(g, directory=True) for g in record.groups)
        record = replace(record, groups=groups)
    return record


def cache_key(provider: str, identifier: DeviceIdentifier) -> str:
    """The key of one provider's answer for one identifier of one kind (case variants share
    it). The kind is part of it: the same digits are a serial to one webhook and a YubiKey
    serial to another, and a provider answers the two differently."""
    return f"{KEY_PREFIX}:{provider}:{identifier.kind.value}:{identifier.normalized}"


@dataclass(frozen=True, slots=True)
class Cached:
    """An answer found in the cache.

    Attributes:
        record: The cached record, or None for a cached "not in this inventory".
    """

    record: DeviceRecord | None


class AnswerCache:
    """Provider answers in a `LookupCache`: found and not-found live for different TTLs."""

    def __init__(self, store: LookupCache, *, found_ttl: float, not_found_ttl: float) -> None:
        self._store = store
        self._found_ttl = found_ttl
        self._not_found_ttl = not_found_ttl
        # Decoding is pure and records are frozen: the same bytes give the same answer, so a hit
        # is decoded once (and keeps one record object while the entry is unchanged).
        self._decoded: dict[bytes, Cached] = {}

    @property
    def in_memory(self) -> bool:
        """Whether reading it never waits (the in-process store)."""
        return isinstance(self._store, MemoryCache)

    async def get(self, provider: str, identifier: DeviceIdentifier) -> Cached | None:
        """The cached answer, or None (absent, expired, or unreadable)."""
        data = await self._store.get(cache_key(provider, identifier))
        if data is None:
            return None
        cached = self._decoded.get(data)
        if cached is not None:
            return cached
        try:
            cached = Cached(decode_answer(data))
        except ValueError:
            return None  # written by something else: ask the provider instead
        if len(self._decoded) >= DECODED_ENTRIES:
            self._decoded.clear()
        self._decoded[data] = cached
        return cached

    async def put(
        self, provider: str, identifier: DeviceIdentifier, record: DeviceRecord | None
    ) -> None:
        """Remember a provider's answer (never a failure); a TTL of 0 stores nothing."""
        ttl = self._found_ttl if record is not None else self._not_found_ttl
        if ttl > 0:
            await self._store.set(cache_key(provider, identifier), encode_answer(record), ttl)

    async def clear(self) -> None:
        """Forget every answer."""
        await self._store.clear()

    async def aclose(self) -> None:
        """Close the store."""
        await self._store.aclose()
