"""Text that is valid Unicode: a lone surrogate becomes U+FFFD, as Go (step-ca) reads it.

Python keeps what UTF-8 cannot hold as lone surrogates: a JSON escape such as ``\\udc80``
(`json.loads`) and a header's bytes that are not UTF-8 (aiohttp's surrogateescape). orjson,
pydantic's serializer, the databases and `str.encode` refuse such text, so it is made valid
where it enters (upstream JSON) and where it leaves (log lines, replies, the audit log).
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (a split pair is joined again)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` for a terminal: control characters (C0, DEL, C1: ESC and CSI start the sequences
    that move the cursor, clear the screen or set the title) and the marks that reorder text
    shown (bidirectional overrides and isolates) written as ``\\xNN`` or ``\\uNNNN`` escapes,
    so whoever chose a value (an identifier, a header) cannot redraw what an operator sees."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSHOWABLE.sub(_escape, valid_text(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def ascii_digits(text: str) -> bool:
    """Whether `text` is one or more ASCII digits, what `int` and `float` are then sure to read.

    `str.isdigit` also takes other characters Unicode calls digits: the superscript two, which
    `int` and `float` refuse, and the Arabic-Indic one, which they read as 1; neither is a
    number in any wire format or file we read.
    """
    return text.isascii() and text.isdigit()


def ascii_int(text: str, *, max_digits: int = 18) -> int | None:
    """`text` as a non-negative integer when it is 1 to `max_digits` ASCII digits, else None.

    Upstream ids and Unix times fit in 18 digits; a longer run is no number we read (and past
    4,300 digits `int` raises).
    """
    return int(text) if len(text) <= max_digits and ascii_digits(text) else None


def valid_tree(value: Any) -> Any:
    """Parsed JSON (or a log event) with `valid_text` applied to every string, keys included;
    other values are returned as they are."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_tree(k): valid_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_tree(v) for v in value]
    if isinstance(value, tuple):
        return tuple(valid_tree(v) for v in value)
    return value


def may_hold_surrogates(json_text: str) -> bool:
    """Whether JSON text has a ``\\uD800``-``\\uDFFF`` escape: the only way `json.loads`
    makes a lone surrogate from a `str` (decode bytes strictly first: `json.loads` given bytes
    lets surrogates encoded in them through). A cheap scan before any walk of the tree."""
    return "\\ud" in json_text or "\\uD" in json_text
