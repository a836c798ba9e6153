"""OS version ordering for the ``min_os_version`` rule.

Versions compare component by component as integers, with missing components read as zero:
``17.10 > 17.9``, ``15.0.1 > 15`` and ``15 == 15.0``. Inventories append build numbers or Rapid
Security Response letters (``"14.4.1 (23E224)"``, ``"16.5.1 (a)"``); text after the dotted
number and a space is ignored, so such a device counts as its base version, never newer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Up to 6 numeric components of at most 9 digits; anything after whitespace is a suffix.
_VERSION = re.compile(r"\s*([0-9]{1,9}(?:\.[0-9]{1,9}){0,5})(?:\s+\S.*)?\s*")
MAX_VERSION_LENGTH = 64


@dataclass(frozen=True, slots=True, order=True)
class OsVersion:
    """A parsed dotted version.

    Attributes:
        key: Integer components with trailing zeros removed (``15.0`` and ``15`` share one key),
            so tuple order is the version order and equality is version equality.
        text: The version as written, for messages.
    """

    key: tuple[int, ...]
    text: str = field(compare=False)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> OsVersion:
        """Parse ``text`` or raise `ValueError` naming the expected shape."""
        parsed = parse_version(text)
        if parsed is None:
            raise ValueError(f"{text!r} is not a version like 15.0.1 (1 to 6 dotted numbers)")
        return parsed


def parse_version(text: str) -> OsVersion | None:
    """Parse a dotted version, or return None when it has no recognisable version shape."""
    if len(text) > MAX_VERSION_LENGTH:
        return None
    match = _VERSION.fullmatch(text)
    if match is None:
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    if parts == [0]:
        parts = []
    return OsVersion(tuple(parts), text.strip())
