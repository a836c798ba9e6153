"""CSV and JSON inventories: a file the admin keeps, validated at load, reloaded when it changes.

A reload parses the whole file first and swaps the index only if every row is valid, so a broken
edit keeps the last good inventory (and logs `provider.reload_failed` with the line at fault).
See `_provider` for when a changed or vanished file is (not) loaded.
"""

from __future__ import annotations

from providers.files._image import InventoryIndex
from providers.files._parse import build_index, parse_csv, parse_json
from providers.files._provider import FileProvider
from providers.files._schema import InventoryFileError, InventoryRow
from providers.files._settings import CsvSettings, JsonSettings

__all__ = [
    "CsvSettings",
    "FileProvider",
    "InventoryFileError",
    "InventoryIndex",
    "InventoryRow",
    "JsonSettings",
    "build_index",
    "parse_csv",
    "parse_json",
]
