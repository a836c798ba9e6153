"""Helpers every vendor mapping shares: blank text as None, and newest-record-wins."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("providers")

_T = TypeVar("_T")
_EPOCH = datetime.min.replace(tzinfo=UTC)


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
    """
    if not candidates:
        return None
    chosen = max(candidates, key=lambda c: contact(c) or _EPOCH)
    if len(candidates) > 1:
        log.warning(
            "provider.duplicate_records",
            provider=provider,
            kind=identifier.kind.value,
            identifier=identifier.value,
            record_ids=[record_id(c) for c in candidates],
            chosen=record_id(chosen),
            count=len(candidates),
        )
    return chosen
