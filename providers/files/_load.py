"""Read a file into an `InventoryIndex` off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from providers.base import DeviceRecord
from providers.files._parse import build_index, parse_csv, parse_json
from providers.files._settings import CsvSettings, JsonSettings


class InventoryIndex:
    """Records by normalised serial and UDID; built whole, then swapped in by reference."""

    __slots__ = ("_by_key", "devices")

    def __init__(self, by_key: dict[str, DeviceRecord]) -> None:
        self._by_key = by_key
        self.devices = len({id(r) for r in by_key.values()})

    def get(self, key: str) -> DeviceRecord | None:
        """The record for a normalised identifier."""
        return self._by_key.get(key)

    def records(self) -> Iterator[DeviceRecord]:
        """Every device once."""
        seen: set[int] = set()
        for record in self._by_key.values():
            if id(record) not in seen:
                seen.add(id(record))
                yield record


async def load_index(
    path: Path, settings: CsvSettings | JsonSettings, provider: str
) -> InventoryIndex:
    """Parse and index the file in a worker thread."""
    return await asyncio.to_thread(_load, path, settings, provider)


def _load(path: Path, settings: CsvSettings | JsonSettings, provider: str) -> InventoryIndex:
    # utf-8-sig: spreadsheet exports start with a byte-order mark.
    text = path.read_text(encoding="utf-8-sig")
    source = str(path)
    if isinstance(settings, CsvSettings):
        rows = parse_csv(text, source=source, group_delimiter=settings.group_delimiter)
    else:
        rows = parse_json(text, source=source)
    return InventoryIndex(build_index(rows, provider=provider, source=source))
