"""An inventory held in a dict: the in-memory twin of every provider (tests, the lab).

It answers like a real provider and adds the switches a test needs to drive the chain: a
failure switch, a call log, and an optional gate that holds each lookup until it is opened
(a slow or hanging upstream without sleeping).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from providers.base import DeviceRecord, ProviderError, ProviderNotReady
from providers.identifiers import DeviceIdentifier, ascii_upper


class MemoryProvider:
    """A provider over `records`, indexed by serial and UDID (case-insensitively).

    Attributes:
        records: The index, normalised identifier → record; edit it (or use `add`/`remove`)
            to change the inventory between lookups.
        failure: When set, every lookup raises `ProviderError` with this message.
        calls: Identifiers asked for, in order (cache hits never reach this list).
        arrived: One item per lookup, put on entry (await it to know a lookup is in flight).
        returned: Set whenever a lookup has finished waiting at the gate.
        gate: When set, each lookup waits for this event before answering.
    """

    def __init__(
        self,
        name: str,
        records: Iterable[DeviceRecord] = (),
        *,
        cacheable: bool = False,
        ready: bool = True,
    ) -> None:
        self._name = name
        self._cacheable = cacheable
        self._ready = ready
        self.records: dict[str, DeviceRecord] = {}
        self.failure: str | None = None
        self.calls: list[str] = []
        self.arrived: asyncio.Queue[str] = asyncio.Queue()
        self.returned = asyncio.Event()
        self.gate: asyncio.Event | None = None
        for record in records:
            self.add(record)

    @classmethod
    def of_serials(cls, name: str, *serials: str, cacheable: bool = False) -> MemoryProvider:
        """A provider knowing bare records for `serials` (a shorthand for chain tests)."""
        return cls(
            name, (DeviceRecord(provider=name, serial=s) for s in serials), cacheable=cacheable
        )

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """Whether `start` has succeeded (True unless built with ``ready=False``)."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """As chosen at construction: True stands in for a remote API, False for a file."""
        return self._cacheable

    def add(self, record: DeviceRecord) -> None:
        """Index `record` under its serial and UDID (as a real provider matches them: only an
        ASCII one answers, `ascii_upper`)."""
        for key in map(ascii_upper, (record.serial, record.udid)):
            if key:
                self.records[key] = record

    def remove(self, identifier: str) -> None:
        """Drop the record known under `identifier` (both its keys)."""
        record = self.records.pop(identifier.upper(), None)
        if record is not None:
            for key in map(ascii_upper, (record.serial, record.udid)):
                if key:
                    self.records.pop(key, None)

    async def start(self) -> None:
        """Become ready."""
        self._ready = True

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Log the call, wait at the gate if there is one, then fail or answer."""
        self.calls.append(identifier.value)
        self.arrived.put_nowait(identifier.value)
        if self.gate is not None:
            await self.gate.wait()
        self.returned.set()
        if not self._ready:
            raise ProviderNotReady(self._name, "not started")
        if self.failure is not None:
            raise ProviderError(self._name, self.failure)
        return self.records.get(identifier.normalized)

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every record once."""
        seen: set[int] = set()
        for record in list(self.records.values()):
            if id(record) not in seen:
                seen.add(id(record))
                yield record

    async def aclose(self) -> None:
        """Nothing to release."""
