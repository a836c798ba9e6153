"""Helpers vendor mappings share: blank text as None, newest record wins, lenient times, flags."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from providers.base import ProviderError
from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("providers")

_T = TypeVar("_T")
_EPOCH = datetime.min.replace(tzinfo=UTC)
MAX_LOGGED_IDS = 10
"""Record ids a ``provider.duplicate_records`` line names (its ``count`` says how many)."""
MAX_LOGGED_ID = 64
"""Characters of each."""


def text(value: str | None) -> str | None:
    """Upstreams write "" (or spaces) for unset strings; the record says None."""
    if value is None:
        return None
    return value.strip() or None


def newest(
    provider: str,
    identifier: DeviceIdentifier,
    candidates: Sequence[_T],
    *,
    contact: Callable[[_T], datetime | None],
    record_id: Callable[[_T], str | None],
) -> _T | None:
    """The candidate with the latest contact (a re-enrolled device leaves an old record behind).

    More than one candidate is logged as ``provider.duplicate_records``; None when there is none.
    Two records that share the latest contact (both never reported one, say) fail the lookup:
    which is current cannot be told, and the upstream's order (or the sync's) would decide.
    Records are told apart by what they hold, not by `record_id`: Mosyle's id is the UDID, which
    a deleted record shares with the device's new one. The same record listed twice is one.
    """
    if not candidates:
        return None
    latest = max(contact(c) or _EPOCH for c in candidates)
    tied: list[_T] = []
    for candidate in candidates:
        if (contact(candidate) or _EPOCH) == latest and candidate not in tied:
            tied.append(candidate)
    if len(tied) > 1:
        raise ProviderError(
            provider,
            f"{len(tied)} records of this {identifier.kind.value} share the latest contact: "
            "which one is current cannot be told",
        )
    chosen = max(candidates, key=lambda c: contact(c) or _EPOCH)
    if len(candidates) > 1:
        log.warning(
            "provider.duplicate_records",
            provider=provider,
            kind=identifier.kind.value,
            identifier=identifier.value,
            # An upstream's ids, any number of any length: the first few, each cut short.
            record_ids=[(record_id(c) or "")[:MAX_LOGGED_ID] for c in candidates[:MAX_LOGGED_IDS]],
            chosen=(record_id(chosen) or "")[:MAX_LOGGED_ID],
            count=len(candidates),
        )
    return chosen


def iso_time(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime; None when blank or unreadable.

    Accepts ``Z`` and ``+00:00``, a space or ``T`` between date and time, any number of
    fraction digits; a timestamp without an offset is taken as UTC.
    """
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return utc(parsed)


def utc(when: datetime | None) -> datetime | None:
    """`when` in UTC (a naive time is read as UTC); None when absent, or when it lies so near
    year 1 or 9999 that UTC cannot hold it (``0001-01-01T00:00:00+01:00``): every time a
    record carries is then UTC, which comparing, subtracting and formatting never overflow."""
    if when is None:
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:
        return None


def flag(value: object) -> bool | None:
    """A yes/no an upstream writes as a bool, 0/1 or a string ("True", "1", "false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        match value.strip().lower():
            case "true" | "1" | "yes":
                return True
            case "false" | "0" | "no":
                return False
    return None
