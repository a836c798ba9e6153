"""The fast JSON builder: devices checked a chunk at a time by one strict pydantic schema.

The schema (`_Row`) is stricter than `InventoryRow`, so it accepts a subset of what the reference
accepts. A worker process may parse a large file in parts, one per core (`_split`): each part is
checked the same way, the parts' sorted keys are merged, and any doubt sends the file down the
one-part path.
"""

from __future__ import annotations

import array
import codecs
import functools
import itertools
import operator
from datetime import datetime
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Annotated, Any, Literal, Required

import pydantic_core
from pydantic import ConfigDict, Field, Strict, StrictBool, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from providers.files._fast import CHUNK, Doubt, packed
from providers.files._image import JSON_FIELDS, Image, has_duplicates, index_keys, pack
from providers.files._parse import devices_of, json_devices
from providers.files._split import forked, piece, split_devices

_ALL_FIELDS = itemgetter(*JSON_FIELDS)
_SERIAL, _UDID, _GROUPS = (itemgetter(JSON_FIELDS.index(f)) for f in ("serial", "udid", "groups"))


def json_image(
    data: bytes, source: str, *, trusted: bool = False, keep: list[object] | None = None
) -> Image:
    try:
        document = pydantic_core.from_json(data.removeprefix(codecs.BOM_UTF8), cache_strings="keys")
    except ValueError:
        # the reference wording for syntax errors (and not-UTF-8); else a shape it accepts
        devices = json_devices(data.decode("utf-8-sig"), source=source)
    else:
        devices = devices_of(document, source)
    if keep is not None:
        keep.append(devices)
    records, serials, udids = _json_rows(devices, trusted)
    return packed("json", {}, records, (serials, udids), trusted)


_Part = tuple[list[bytes], list[str], list[str], list[int]]
"""One part's records, serials, UDIDs and `index_keys` (records numbered from 0 in the part)."""
_Shipped = tuple[bytes, list[str], list[str], bytes]
"""A child's part but its records: sizes and keys as u64 arrays, serials, UDIDs."""


def json_in_parts(data: bytes, parts: int, keep: list[object] | None) -> Image | None:
    """The image built by `parts` processes, or None: no cut found, or a part did not parse.

    None sends the file down the whole-file path, which words any syntax error; a doubt about
    a device is raised as in the whole-file path.
    """
    data = data.removeprefix(codecs.BOM_UTF8)
    spans = split_devices(data, parts)
    if spans is None:
        return None

    def part(span: tuple[int, int]) -> _Part | None:
        try:
            devices = pydantic_core.from_json(piece(data, span), cache_strings="keys")
        except ValueError:
            return None
        if not isinstance(devices, list) or not devices:
            return None
        if keep is not None:
            keep.append(devices)
        records, serials, udids = _json_rows(devices, trusted=False)
        return records, serials, udids, index_keys(serials, udids)

    def child(span: tuple[int, int]) -> tuple[_Shipped | str, list[bytes]]:
        try:
            done = part(span)
        except Doubt:
            return "doubt", []
        if done is None:
            return "unparsed", []
        records, serials, udids, keys = done
        sizes = array.array("Q", map(len, records)).tobytes()
        return (sizes, serials, udids, array.array("Q", keys).tobytes()), records

    waits = [forked(functools.partial(child, span)) for span in spans[1:]]
    try:
        mine = part(spans[0])
    except BaseException:
        mine = None
        raise
    finally:
        theirs = [wait(mine is None) or ("died", b"") for wait in waits]
    if any(shipped == "doubt" for shipped, _ in theirs):
        raise Doubt
    shipped = [(s, run) for s, run in theirs if not isinstance(s, str)]
    if mine is None or len(shipped) < len(theirs):
        return None
    own, serials, udids, keys = mine
    records: list[bytes | memoryview] = list(own)
    sizes = array.array("Q", map(len, records))
    for (their_sizes, their_serials, their_udids, their_keys), run in shipped:
        base = len(sizes) << 1  # record numbers sit above the is_udid bit
        keys.extend(map(operator.add, array.array("Q", their_keys), repeat(base)))
        records.append(run)
        sizes.frombytes(their_sizes)
        serials.extend(their_serials)
        udids.extend(their_udids)
    keys.sort()  # sorted runs: a merge
    if has_duplicates(keys, serials, udids):
        raise Doubt
    return pack("json", {}, records, keys, sizes=sizes)


def _json_rows(devices: list[Any], trusted: bool) -> tuple[list[bytes], list[str], list[str]]:
    """The devices' records and stripped serials and UDIDs; `_Doubt` if a check fails."""
    ids: tuple[list[str], list[str]] = ([], [])
    records: list[bytes] = []
    for start in range(0, len(devices), CHUNK):
        chunk = devices[start : start + CHUNK]
        if not trusted and set(map(type, chunk)) - {dict}:
            raise Doubt
        rows = _complete_rows(chunk)
        if rows is None:
            if not trusted:
                _check_sparse_chunk(chunk)
            rows = list(
                zip(*(map(methodcaller("get", f), chunk) for f in JSON_FIELDS), strict=True)
            )
        elif not trusted and None in map(_GROUPS, rows):
            raise Doubt  # "groups": null
        if not trusted:
            try:
                _ROWS.validate_python(rows)
            except ValidationError:
                raise Doubt from None
        serials = _stripped(list(map(_SERIAL, rows)))
        udids = _stripped(list(map(_UDID, rows)))
        blanks = "" in serials and "" in udids  # else every device has one: no closer look
        if (
            not trusted
            and blanks
            and not all(map(operator.or_, map(bool, serials), map(bool, udids)))
        ):
            raise Doubt  # a device without serial or udid
        records.extend(map(pydantic_core.to_json, rows))
        ids[0].extend(serials)
        ids[1].extend(udids)
    return records, *ids


def _stripped(values: list[Any]) -> list[str]:
    if set(map(type, values)) == {str}:
        return list(map(str.strip, values))
    return [v.strip() if isinstance(v, str) else "" for v in values]


def _complete_rows(chunk: list[dict[str, Any]]) -> list[tuple[Any, ...]] | None:
    """The values in field order if every device has exactly the schema's keys, else None."""
    if set(map(len, chunk)) != {len(JSON_FIELDS)}:
        return None
    try:
        return list(map(_ALL_FIELDS, chunk))
    except KeyError:
        return None


def _check_sparse_chunk(chunk: list[dict[str, Any]]) -> None:
    """Devices that leave keys out: no unknown key, and no explicit ``"groups": null``."""
    if set(itertools.chain.from_iterable(chunk)) - set(JSON_FIELDS):
        raise Doubt
    if None in map(methodcaller("get", "groups", ()), chunk):
        raise Doubt


_Str = StrictStr | None
_Name = Annotated[StrictStr, Field(min_length=1)]


class _FastUser(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    username: _Str
    email: _Str
    full_name: _Str
    department: _Str
    title: _Str


class _FastGroup(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    name: Required[_Name]
    id: _Str
    smart: StrictBool | None


_Groups = list[_Name | _FastGroup]
_Row = tuple[
    _Str,  # serial
    _Str,  # udid
    _Str,  # name
    _Str,  # model
    _Str,  # platform
    _Str,  # os_version
    StrictBool | None,  # managed
    StrictBool | None,  # supervised
    _Str,  # compliance
    Literal["company", "personal"] | None,  # owner_type
    Annotated[datetime, Strict(False)] | None,  # last_contact: the reference's lax parsing
    _FastUser | None,  # user
    _Groups | None,  # groups (None: left out; an explicit null is refused before)
]
# Strict where the reference is lax: accepts a subset of what `InventoryRow` accepts.
_ROWS = TypeAdapter(list[_Row], config=ConfigDict(strict=True))
