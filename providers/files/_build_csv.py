"""The fast CSV builder: rows checked column by column, each distinct typed value once.

A check runs once per distinct value (a million devices share a handful of `managed` or
`owner_type` values), and `last_contact`, the one column with unbounded values, is validated in
one pydantic call. A record is the row's line, or its cells as a JSON array when the file quotes.
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
from collections.abc import Iterable, Iterator
from datetime import datetime
from operator import itemgetter, methodcaller
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from providers.files._fast import CHUNK, Doubt, packed
from providers.files._image import Image
from providers.files._parse import check_csv_header
from providers.files._schema import InventoryRow

_CSV_TYPED = ("managed", "supervised", "owner_type", "last_contact")
_DATETIMES = TypeAdapter(list[datetime])


def csv_image(text: str, source: str, delimiter: str, *, trusted: bool = False) -> Image:
    plain = not any(c in text for c in '"\r\0')
    if plain:
        lines = text.split("\n")
        if not trusted and max(map(len, lines)) > csv.field_size_limit():
            raise Doubt  # a cell may be longer than the csv module, which reads it later, allows
        header = lines[0].split(",") if lines[0] else []
    else:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
    # plain: a record is the row's line; quoted: its cells as a JSON array (decoding a line of
    # a quoted file would need the quoting rules, and re-quoting costs more)
    meta = {"columns": header, "group_delimiter": delimiter, "rows": "text" if plain else "json"}
    check_csv_header(header, source)
    column = {name: i for i, name in enumerate(header)}
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
                raise Doubt  # more fields than header columns
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
                    raise Doubt  # a device without serial or udid
            # rows of blank cells (spreadsheet padding) describe no device
            new = list(itertools.compress(new, present))
            serials = list(itertools.compress(serials, present))
            udids = list(itertools.compress(udids, present))
        records.extend(new)
        ids[0].extend(serials)
        ids[1].extend(udids)
    return packed("csv", meta, records, ids, trusted)


_Chunk = tuple[list[bytes], list[list[str]], bool]
"""Records, their cells, and whether every row is known to have the header's width."""


def _plain_chunks(lines: list[str], width: int, splits: int) -> Iterator[_Chunk]:
    """Rows of a CSV without quotes or CR: a row is a line, its cells split at commas.

    When every row has the header's width only the first `splits` cells are split apart; the
    rest stays one string (checked by `InventoryRow` at lookup, like every stored cell).
    """
    commas = width - 1
    for start in range(1, len(lines), CHUNK):
        texts = [line for line in lines[start : start + CHUNK] if line]
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
    while chunk := list(itertools.islice(rows, CHUNK)):
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
        raise Doubt from None


def _datetimes_valid(values: Iterable[str]) -> None:
    try:
        _DATETIMES.validate_python(list(values))
    except ValidationError:
        raise Doubt from None
