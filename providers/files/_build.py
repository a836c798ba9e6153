"""Build a compact inventory image from a file, fast, with the reference parsers as the judge.

Rows are checked column by column: a check runs once per distinct value (a million devices share
a handful of `managed` or `owner_type` values), and the one column with unbounded values
(`last_contact`) is validated in one pydantic call. A row that any check doubts, a duplicate
identifier or an unusual file shape sends the whole file through the reference parsers, which
raise the error with its line number exactly as before; line numbers are never computed
otherwise. Rows are stored raw (the CSV row text, the JSON values as a JSON array) and converted by
`InventoryRow` at lookup, so a fast check can refuse too much but never change a value.

The fast builders are `_build_csv` and `_build_json` (which may parse a large file in parts, one
per core, in a worker process). Run this in a worker (thread or process): it holds the
interpreter for the whole parse.
"""

from __future__ import annotations

import csv

from providers.files._build_csv import csv_image
from providers.files._build_json import json_image, json_in_parts
from providers.files._fast import Doubt
from providers.files._image import Image, ImageKind
from providers.files._parse import build_index, parse_csv, parse_json


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
            return csv_image(text, source, group_delimiter)
        except (Doubt, csv.Error):  # the reference parser words the error, with its line
            rows = parse_csv(text, source=source, group_delimiter=group_delimiter)
            build_index(rows, provider="", source=source)
            return csv_image(text, source, group_delimiter, trusted=True)
    try:
        image = json_in_parts(data, parts, keep) if parts > 1 else None
        return image or json_image(data, source, keep=keep)
    except Doubt:
        text = data.decode("utf-8-sig")
        build_index(parse_json(text, source=source), provider="", source=source)
        return json_image(data, source, trusted=True)
