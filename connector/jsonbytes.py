"""JSON bytes for any Python value orjson can render, and for text that is not valid Unicode.

orjson is fast, and refuses a lone surrogate. Text carries one when it came from bytes that
were not UTF-8 (aiohttp keeps a header's bytes that way) or from an upstream's JSON with a
``\\udc80`` escape (Python's decoder keeps it). Such text must still be answered and logged: the
standard library's encoder writes it escaped, as a JSON reader (Go's among them) expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def dumps(value: object, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """`value` as compact JSON bytes: orjson's, or the standard library's (ASCII, escaped) when
    orjson refuses it; anything neither can render raises as orjson would."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError:
        try:
            return json.dumps(value, default=default, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            pass
        raise
