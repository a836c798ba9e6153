"""The reference parsers: every row through `InventoryRow`, with its line number.

They define what a valid file is and word every error. The provider loads through the faster
`_build` path, which falls back to these to report a broken file exactly as they would.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from providers.base import DeviceRecord
from providers.files._schema import (
    CSV_COLUMNS,
    InventoryFileError,
    InventoryRow,
    csv_cells,
    validate_row,
)
from providers.unicode import may_hold_surrogates, valid_tree

_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_ -]{0,39}")


def parse_csv(
    text: str, *, source: str, group_delimiter: str = ";"
) -> list[tuple[int, InventoryRow]]:
    """Parse a CSV inventory; the header names the columns, `groups` is a delimited list."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        check_csv_header(reader.fieldnames or (), source)
        rows: list[tuple[int, InventoryRow]] = []
        for raw in reader:
            line = reader.line_num - _line_breaks(raw)  # where a multi-line record starts
            if None in raw:
                raise InventoryFileError(f"{source}:{line}: more fields than header columns")
            cells = csv_cells(raw, group_delimiter)
            if cells is not None:
                rows.append((line, validate_row(cells, source, line)))
    except csv.Error as exc:  # a cell longer than the csv module reads (128 KiB), say
        # line_num counts the lines read before the one that failed
        raise InventoryFileError(f"{source}:{reader.line_num + 1}: {exc}") from None
    return rows


def _line_breaks(raw: dict[str | None, Any]) -> int:
    """Line breaks inside the quoted cells of a CSV record."""
    breaks = 0
    for cell in raw.values():
        for text in cell if isinstance(cell, list) else (cell,):
            if text:
                breaks += text.count("\n")
    return breaks


def check_csv_header(columns: Iterable[str], source: str) -> None:
    """Refuse a header that could not mean what it says: no header at all (an empty file, most
    likely one an exporter truncated and has not written yet, would deny every device), no
    identifier column, a column the schema does not know (a typo would silently drop data), or
    a column named twice (which of two cells counts would be a guess)."""
    columns = list(columns)
    if not columns:
        raise InventoryFileError(f"{source}:1: no header line (an empty file is not an inventory)")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        # Named only when it looks like a column name: a file given by mistake (a .env, say)
        # must not put its first line into the logs.
        named = [c for c in unknown if _COLUMN_NAME.fullmatch(c)]
        if len(named) < len(unknown):
            hidden = len(unknown) - len(named)
            named.append(f"{hidden} not shown (not like a column name: is this a CSV inventory?)")
        raise InventoryFileError(f"{source}:1: unknown column(s) {', '.join(named)}")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InventoryFileError(f"{source}:1: column(s) named twice: {', '.join(repeated)}")
    if "serial" not in columns and "udid" not in columns:
        raise InventoryFileError(f"{source}:1: no serial or udid column")


def parse_json(text: str, *, source: str) -> list[tuple[int, InventoryRow]]:
    """Parse a JSON inventory: ``{"devices": [...]}`` or a bare list of device objects."""
    devices = json_devices(text, source=source)
    lines = element_lines(text)
    rows = []
    for index, item in enumerate(devices):
        line = next(lines, 1)
        rows.append((line, validate_element(item, index, source, line)))
    return rows


_MAX_DIGITS = sys.get_int_max_str_digits()
# Only from a run's first digit: from every digit, a run just short of the length would be
# scanned again at each of its positions (seconds of a held GIL for a file under 1 MiB).
_LONG_NUMBER = re.compile(f"(?<![0-9])[0-9]{{{_MAX_DIGITS + 1},}}")
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_DEEPEST = 512
"""Nesting (of arrays and objects) where a document too deep to read is said to go too deep."""


def json_devices(text: str, *, source: str) -> list[Any]:
    """The device list of a JSON inventory, with the document-level checks."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryFileError(f"{source}:{exc.lineno}: {exc.msg} (column {exc.colno})") from None
    except ValueError:  # an integer longer than Python converts
        long = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, long.start()) + 1 if long else 1
        raise InventoryFileError(
            f"{source}:{line}: a number of more than {_MAX_DIGITS:,} digits"
        ) from None
    except RecursionError:
        line = text.count("\n", 0, _too_deep(text)) + 1
        raise InventoryFileError(
            f"{source}:{line}: arrays and objects nested more than {_DEEPEST} deep"
        ) from None
    if may_hold_surrogates(text):  # a lone one: U+FFFD, as for an upstream's JSON
        document = valid_tree(document)
    return devices_of(document, source)


def _too_deep(text: str) -> int:
    """Where the nesting of `text` first passes `_DEEPEST` (skipping strings), else 0."""
    depth = 0
    for token in _NESTING.finditer(text):
        bracket = token[0]
        if bracket in "[{":
            depth += 1
            if depth > _DEEPEST:
                return token.start()
        elif bracket in "]}":
            depth -= 1
    return 0


def devices_of(document: Any, source: str) -> list[Any]:
    """``document["devices"]`` or the bare list; anything else is an error at line 1."""
    devices = document.get("devices") if isinstance(document, dict) else document
    if isinstance(document, dict) and set(document) - {"devices"}:
        extra = ", ".join(sorted(set(document) - {"devices"}))
        raise InventoryFileError(f"{source}:1: unknown top-level key(s) {extra}")
    if not isinstance(devices, list):
        raise InventoryFileError(f'{source}:1: expected {{"devices": [...]}} or a list of devices')
    return devices


def validate_element(item: Any, index: int, source: str, line: int) -> InventoryRow:
    """Validate ``devices[index]``, which starts on `line`."""
    if not isinstance(item, dict):
        raise InventoryFileError(f"{source}:{line}: devices[{index}] is not an object")
    return validate_row(item, source, line, f"devices[{index}]")


def element_lines(text: str) -> Iterator[int]:
    """Line numbers where the device objects start, in one pass (best effort)."""
    decoder = json.JSONDecoder()
    start = text.find("[")
    if start < 0:
        return
    line, counted = 1, 0
    pos = start + 1
    length = len(text)
    while pos < length:
        while pos < length and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= length or text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        yield line
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return


def build_index(
    rows: Iterable[tuple[int, InventoryRow]], *, provider: str, source: str
) -> dict[str, DeviceRecord]:
    """Index records by normalised serial and UDID; a duplicate identifier is an error."""
    index: dict[str, DeviceRecord] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        record = row.to_record(provider)
        for key in (row.serial, row.udid):
            if not key:
                continue
            norm = key.upper()
            if norm in seen:
                raise InventoryFileError(
                    f"{source}:{line}: identifier {key} already on line {seen[norm]}"
                )
            seen[norm] = line
            index[norm] = record
    return index
