"""The compact inventory image and the index that answers lookups from it.

An image is one flat buffer, built whole by a worker and handed over by reference, so the event
loop never builds a million objects and a lookup sees either the old image or the new one.
Layout (little-endian)::

    header   magic "PCI1", kind, devices, keys, meta length
    meta     JSON: the CSV header and group delimiter
    keys     u64 per identifier, sorted: crc32 of the normalised identifier << 31
             | record << 1 | is_udid
    offsets  u64 per record + 1: where each record starts in `data`
    data     records: the CSV row's line (quoted files: its cells as a JSON array) or the JSON
             values as an array (UTF-8)

A lookup hashes the identifier, bisects `keys`, decodes the candidate records and keeps the one
whose serial or UDID matches: records are converted by `InventoryRow` on the way out.
"""

from __future__ import annotations

import array
import bisect
import csv
import io
import itertools
import json
import operator
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal

import pydantic_core
from pydantic import ValidationError

from providers.base import DeviceRecord, ProviderError
from providers.files._schema import InventoryRow, csv_cells

ImageKind = Literal["csv", "json"]
JSON_FIELDS = tuple(InventoryRow.model_fields)
_MAGIC = b"PCI1"
_HEADER = struct.Struct("<4sIQQQ")
_KINDS: dict[str, int] = {"csv": 1, "json": 2}
_SLOT_MASK = (1 << 31) - 1
_RECENT = 1024


def key_hash(key: str) -> int:
    """The hash of a normalised identifier, the same in every process."""
    return zlib.crc32(key.encode())


def index_keys(serials: list[str], udids: list[str]) -> list[int]:
    """Sorted keys ``hash << 31 | record << 1 | is_udid`` of every non-blank identifier.

    `serials[i]` and `udids[i]` are record i's stripped identifiers ("" when blank); they are
    normalised (upper case) here. Plain ints sort in C: no key function, no tuples.
    """
    keys: list[int] = []
    for which, ids in enumerate((serials, udids)):
        joined = "\n".join(ids)
        upper = ids if joined.upper() == joined else list(map(str.upper, ids))
        hashes = map(zlib.crc32, map(str.encode, upper))
        shifted = map(operator.lshift, hashes, repeat(31))
        packed = list(map(operator.or_, shifted, range(which, 2 * len(ids), 2)))
        keys.extend(packed if all(upper) else itertools.compress(packed, upper))
    keys.sort()
    return keys


def has_duplicates(keys: list[int], serials: list[str], udids: list[str]) -> bool:
    """Whether a normalised identifier occurs twice among the `index_keys`."""
    hashes = list(map(operator.rshift, keys, repeat(31)))
    ids = (serials, udids)
    for i in itertools.compress(range(1, len(keys)), map(operator.eq, hashes, hashes[1:])):
        a = keys[i] & _SLOT_MASK
        j = i - 1
        while j >= 0 and hashes[j] == hashes[i]:  # equal hashes are rare: compare the ids
            b = keys[j] & _SLOT_MASK
            if ids[a & 1][a >> 1].upper() == ids[b & 1][b >> 1].upper():
                return True
            j -= 1
    return False


def _matchable(identifier: str | None) -> str | None:
    """A record's serial or UDID as a lookup key matches it: upper case, and only when ASCII.
    Attested identifiers are ASCII, and Unicode's upper case maps other letters onto ASCII
    ones (``'ﬁ'.upper() == 'FI'``): a row with such a serial must not answer for another."""
    return identifier.upper() if identifier and identifier.isascii() else None


@dataclass(frozen=True, slots=True)
class Image:
    """A packed image as parts to write out (no copy) or join.

    Attributes:
        parts: The byte strings, in order.
        size: Their total length.
        devices: Records in the image.
    """

    parts: tuple[bytes | memoryview, ...]
    size: int
    devices: int


def pack(
    kind: ImageKind,
    meta: dict[str, Any],
    records: Sequence[bytes | memoryview],
    keys: list[int],
    *,
    sizes: Iterable[int] | None = None,
) -> Image:
    """Lay out the records and their sorted `index_keys`.

    `sizes`: the records' sizes when `records` are runs of records joined (one per process).
    """
    sizes = map(len, records) if sizes is None else sizes
    offsets = array.array("Q", itertools.accumulate(sizes, initial=0))
    meta_bytes = json.dumps(meta).encode()
    meta_bytes += b" " * (-len(meta_bytes) % 8)
    devices = len(offsets) - 1
    header = _HEADER.pack(_MAGIC, _KINDS[kind], devices, len(keys), len(meta_bytes))
    parts = (header, meta_bytes, array.array("Q", keys).tobytes(), offsets.tobytes(), *records)
    return Image(parts, sum(map(len, parts)), devices)


class InventoryIndex:
    """Lookups over an image buffer (bytes or a read-only mmap); immutable once built."""

    __slots__ = (
        "_buffer",
        "_cached",
        "_columns",
        "_csv_text",
        "_data",
        "_delimiter",
        "_keys",
        "_offsets",
        "_provider",
    )

    def __init__(self, buffer: Any, provider: str) -> None:
        view = memoryview(buffer)
        magic, kind, records, keys, meta_len = _HEADER.unpack_from(view)
        if magic != _MAGIC:
            raise ValueError("not an inventory image")
        meta = json.loads(bytes(view[_HEADER.size : _HEADER.size + meta_len]))
        at = _HEADER.size + meta_len
        self._buffer = buffer  # keeps the mapping alive while an old index still answers
        self._keys = view[at : at + 8 * keys].cast("Q")
        at += 8 * keys
        self._offsets = view[at : at + 8 * (records + 1)].cast("Q")
        self._data = view[at + 8 * (records + 1) :]
        self._provider = provider
        # step-ca asks twice per enrolment (enriching, then authorizing): keep recent records.
        # The cache belongs to this image, so a reload can never serve a stale record.
        self._cached: dict[int, DeviceRecord] = {}
        self._columns: list[str] | None = meta["columns"] if kind == _KINDS["csv"] else None
        self._delimiter: str = meta.get("group_delimiter", ";")
        self._csv_text = meta.get("rows") == "text"

    @property
    def devices(self) -> int:
        """Distinct devices in the image."""
        return len(self._offsets) - 1

    def get(self, key: str) -> DeviceRecord | None:
        """The record whose normalised serial or UDID is `key`."""
        wanted = key_hash(key)
        keys = self._keys
        i = bisect.bisect_left(keys, wanted << 31)
        while i < len(keys) and keys[i] >> 31 == wanted:
            record = self._recent((keys[i] & _SLOT_MASK) >> 1)
            if key in (_matchable(record.serial), _matchable(record.udid)):
                return record
            i += 1
        return None

    def records(self) -> Iterator[DeviceRecord]:
        """Every device once, in file order."""
        for i in range(self.devices):
            yield self._record(i)

    def _recent(self, i: int) -> DeviceRecord:
        record = self._cached.get(i)
        if record is None:
            if len(self._cached) >= _RECENT:
                del self._cached[next(iter(self._cached))]  # the oldest
            record = self._cached[i] = self._record(i)
        return record

    def _record(self, i: int) -> DeviceRecord:
        raw = self._data[self._offsets[i] : self._offsets[i + 1]]
        try:
            if self._columns is not None:
                cells = _csv_row(raw, self._columns, self._delimiter, text=self._csv_text)
            else:
                cells = _json_row(raw)
            return InventoryRow.model_validate(cells).to_record(self._provider)
        except (ValidationError, ValueError) as exc:  # validated at load: a bug, fail closed
            raise ProviderError(self._provider, f"inventory record {i} unreadable") from exc


def _csv_row(raw: memoryview, columns: list[str], delimiter: str, *, text: bool) -> dict[str, Any]:
    if text:
        cells = next(csv.reader(io.StringIO(str(raw, "utf-8"))))
    else:
        cells = pydantic_core.from_json(bytes(raw))
    return csv_cells(dict(zip(columns, cells, strict=False)), delimiter) or {}


def _json_row(raw: memoryview) -> dict[str, Any]:
    values = pydantic_core.from_json(bytes(raw))
    return {k: v for k, v in zip(JSON_FIELDS, values, strict=True) if v is not None}
