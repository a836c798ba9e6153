"""JSON bytes from orjson, for text that is not valid Unicode too.

orjson refuses a lone surrogate, and text carries one when it came from bytes that were not
UTF-8 (aiohttp keeps a header's bytes that way). Such text must still be logged and answered:
it is written with U+FFFD in place of each lone surrogate, as step-ca (Go) reads it, and
otherwise exactly as orjson writes it (options, NaN as null, dataclasses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from providers.unicode import valid_tree


def dumps(value: object, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """`value` as JSON bytes, lone surrogates replaced when orjson refuses them; anything else
    orjson cannot render raises as orjson does."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(valid_tree(value), default=default, option=option)
