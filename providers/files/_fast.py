"""What the fast builders share: the doubt that hands a file to the reference parsers, and packing.

A fast check may refuse too much, never too little: whatever it cannot vouch for raises `Doubt`,
and `build_image` then lets the reference parsers decide (with their line numbers).
"""

from __future__ import annotations

from typing import Any

from providers.files._image import Image, ImageKind, has_duplicates, index_keys, pack

CHUNK = 50_000
"""Rows handed to each fast check at a time."""


class Doubt(Exception):
    """When the fast checks cannot vouch for the file: the reference parser decides."""


def packed(
    kind: ImageKind,
    meta: dict[str, Any],
    records: list[bytes],
    ids: tuple[list[str], list[str]],
    trusted: bool,
) -> Image:
    """The records packed with their index; a duplicate identifier is a doubt (the reference
    parser names both lines)."""
    keys = index_keys(*ids)
    if not trusted and has_duplicates(keys, *ids):
        raise Doubt
    return pack(kind, meta, records, keys)
