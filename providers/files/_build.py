"""Build a compact inventory image from a file, fast, with the reference parsers as the judge.

Rows are checked column by column: a check runs once per distinct value (a million devices share
a handful of `managed` or `owner_type` values), and the one column with unbounded values
(`last_contact`) is validated in one pydantic call. A row that any check doubts, a duplicate
identifier or an unusual file shape sends the whole file through the reference parsers, which
raise the error with its line number exactly as before; line numbers are never computed
otherwise. Rows are stored raw (the CSV row text, the JSON values as a JSON array) and converted by
`InventoryRow` at lookup, so a fast check can refuse too much but never change a value.

Run this in a worker (thread or process): it holds the interpreter for the whole parse. A worker
process may parse a large JSON file in parts, one per core (`_split`): each part is checked as
above, the parts' sorted keys are merged, and any doubt sends the file down the one-part path.
"""

from __future__ import annotations

import array
import codecs
import csv
import functools
import io
import itertools
import operator
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Annotated, Any, Literal, Required

import pydantic_core
from pydantic import ConfigDict, Field, Strict, StrictBool, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from providers.files._image import (
    JSON_FIELDS,
    Image,
    ImageKind,
    has_duplicates,
    index_keys,
    pack,
)
from providers.files._parse import (
    build_index,
    check_csv_header,
    devices_of,
    json_devices,
    parse_csv,
    parse_json,
)
from providers.files._schema import InventoryRow
from providers.files._split import forked, piece, split_devices

_CHUNK = 50_000
_CSV_TYPED = ("managed", "supervised", "owner_type", "last_contact")
_DATETIMES = TypeAdapter(list[datetime])
_ALL_FIELDS = itemgetter(*JSON_FIELDS)
_SERIAL, _UDID, _GROUPS = (itemgetter(JSON_FIELDS.index(f)) for f in ("serial", "udid", "groups"))


class _Doubt(Exception):
    """When the fast checks cannot vouch for the file: the reference parser decides."""


def build_image(
    data: bytes,
    *,
    kind: ImageKind,
    source: str,
    group_delimiter: str = ";",
    keep: list[object] | None = None,
    parts: int = 1,
) -> Image:
    """Validate and pack a whole file; raises `InventoryFileError` (with the line) if invalid.

    `keep` receives the parsed document: a worker that exits right after saves freeing it.
    `parts` > 1 parses a JSON file in that many processes (forks: a single-threaded worker only).
    """
    if kind == "csv":
        text = data.decode("utf-8-sig")
        try:
            return _csv_image(text, source, group_delimiter)
        except _Doubt:
            rows = parse_csv(text, source=source, group_delimiter=group_delimiter)
            build_index(rows, provider="", source=source)
            return _csv_image(text, source, group_delimiter, trusted=True)
    try:
        image = _json_in_parts(data, parts, keep) if parts > 1 else None
        return image or _json_image(data, source, keep=keep)
    except _Doubt:
        text = data.decode("utf-8-sig")
        build_index(parse_json(text, source=source), provider="", source=source)
        return _json_image(data, source, trusted=True)


def _packed(
    kind: ImageKind,
    meta: dict[str, Any],
    records: list[bytes],
    ids: tuple[list[str], list[str]],
    trusted: bool,
) -> Image:
    keys = index_keys(*ids)
    if not trusted and has_duplicates(keys, *ids):
        raise _Doubt
    return pack(kind, meta, records, keys)


# -- CSV ---------------------------------------------------------------------------------------


def _csv_image(text: str, source: str, delimiter: str, *, trusted: bool = False) -> Image:
    plain = not any(c in text for c in '"\r\0')
    if plain:
        lines = text.split("\n")
        header = lines[0].split(",") if lines[0] else []
    else:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
    # plain: a record is the row's line; quoted: its cells as a JSON array (decoding a line of
    # a quoted file would need the quoting rules, and re-quoting costs more)
    meta = {"columns": header, "group_delimiter": delimiter, "rows": "text" if plain else "json"}
    if not header:
        if not trusted:
            raise _Doubt
        return pack("csv", meta, [], [])
    check_csv_header(header, source)
    column = {name: i for i, name in enumerate(header)}  # a repeated column: the last counts
    needed = {n: column[n] for n in (*_CSV_TYPED, "serial", "udid") if n in column}
    chunks = (
        _plain_chunks(lines, len(header), max(needed.values(), default=0) + 1)
        if plain
        else _quoted_chunks(reader)
    )
    ids: tuple[list[str], list[str]] = ([], [])
    records: list[bytes] = []
    for encoded, split, regular in chunks:
        new, rows = encoded, split
        if not regular and set(map(len, rows)) != {len(header)}:
            if not trusted and max(map(len, rows)) > len(header):
                raise _Doubt  # more fields than header columns
            rows = [r + [""] * (len(header) - len(r)) for r in split]
        columns = {name: list(map(itemgetter(i), rows)) for name, i in needed.items()}
        if not trusted:
            _check_csv_columns(columns)
        blank = [""] * len(rows)
        serials = list(map(str.strip, columns.get("serial", blank)))
        udids = list(map(str.strip, columns.get("udid", blank)))
        present = list(map(operator.or_, map(bool, serials), map(bool, udids)))
        if not all(present):
            for i in itertools.compress(range(len(rows)), map(operator.not_, present)):
                cells = split[i] if not plain else new[i].decode().split(",")
                if not trusted and any(cell.strip() for cell in cells):
                    raise _Doubt  # a device without serial or udid
            # rows of blank cells (spreadsheet padding) describe no device
            new = list(itertools.compress(new, present))
            serials = list(itertools.compress(serials, present))
            udids = list(itertools.compress(udids, present))
        records.extend(new)
        ids[0].extend(serials)
        ids[1].extend(udids)
    return _packed("csv", meta, records, ids, trusted)


_Chunk = tuple[list[bytes], list[list[str]], bool]
"""Records, their cells, and whether every row is known to have the header's width."""


def _plain_chunks(lines: list[str], width: int, splits: int) -> Iterator[_Chunk]:
    """Rows of a CSV without quotes or CR: a row is a line, its cells split at commas.

    When every row has the header's width only the first `splits` cells are split apart; the
    rest stays one string (checked by `InventoryRow` at lookup, like every stored cell).
    """
    commas = width - 1
    for start in range(1, len(lines), _CHUNK):
        texts = [line for line in lines[start : start + _CHUNK] if line]
        if not texts:
            continue
        records = list(map(str.encode, texts))
        if set(map(methodcaller("count", ","), texts)) == {commas}:
            yield records, list(map(methodcaller("split", ",", splits), texts)), True
        else:
            yield records, list(map(methodcaller("split", ","), texts)), False


def _quoted_chunks(reader: Iterable[list[str]]) -> Iterator[_Chunk]:
    """Rows of any CSV (the `csv` module's parse); a record is the cells as a JSON array."""
    rows = (row for row in reader if row)
    while chunk := list(itertools.islice(rows, _CHUNK)):
        yield list(map(pydantic_core.to_json, chunk)), chunk, False


def _check_csv_columns(columns: dict[str, list[str]]) -> None:
    """Typed columns: each distinct cell once through the reference model."""
    for name, cells in columns.items():
        if name == "last_contact":
            _datetimes_valid(v for v in set(cells) if v.strip())
        elif name in _CSV_TYPED:
            for value in set(cells):
                if value.strip():
                    _reference_accepts({name: value})


def _reference_accepts(cells: dict[str, Any]) -> None:
    try:
        InventoryRow.model_validate(cells)
    except ValidationError:
        raise _Doubt from None


def _datetimes_valid(values: Iterable[str]) -> None:
    try:
        _DATETIMES.validate_python(list(values))
    except ValidationError:
        raise _Doubt from None


# -- JSON --------------------------------------------------------------------------------------


def _json_image(
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
    return _packed("json", {}, records, (serials, udids), trusted)


_Part = tuple[list[bytes], list[str], list[str], list[int]]
"""One part's records, serials, UDIDs and `index_keys` (records numbered from 0 in the part)."""
_Shipped = tuple[bytes, list[str], list[str], bytes]
"""A child's part but its records: sizes and keys as u64 arrays, serials, UDIDs."""


def _json_in_parts(data: bytes, parts: int, keep: list[object] | None) -> Image | None:
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
        except _Doubt:
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
        raise _Doubt
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
        raise _Doubt
    return pack("json", {}, records, keys, sizes=sizes)


def _json_rows(devices: list[Any], trusted: bool) -> tuple[list[bytes], list[str], list[str]]:
    """The devices' records and stripped serials and UDIDs; `_Doubt` if a check fails."""
    ids: tuple[list[str], list[str]] = ([], [])
    records: list[bytes] = []
    for start in range(0, len(devices), _CHUNK):
        chunk = devices[start : start + _CHUNK]
        if not trusted and set(map(type, chunk)) - {dict}:
            raise _Doubt
        rows = _complete_rows(chunk)
        if rows is None:
            if not trusted:
                _check_sparse_chunk(chunk)
            rows = list(
                zip(*(map(methodcaller("get", f), chunk) for f in JSON_FIELDS), strict=True)
            )
        elif not trusted and None in map(_GROUPS, rows):
            raise _Doubt  # "groups": null
        if not trusted:
            try:
                _ROWS.validate_python(rows)
            except ValidationError:
                raise _Doubt from None
        serials = _stripped(list(map(_SERIAL, rows)))
        udids = _stripped(list(map(_UDID, rows)))
        blanks = "" in serials and "" in udids  # else every device has one: no closer look
        if (
            not trusted
            and blanks
            and not all(map(operator.or_, map(bool, serials), map(bool, udids)))
        ):
            raise _Doubt  # a device without serial or udid
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
        raise _Doubt
    if None in map(methodcaller("get", "groups", ()), chunk):
        raise _Doubt


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
