"""Every time a record carries is UTC, whatever offset or edge of the calendar it came with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from providers._records import iso_time
from providers.google._models import parse_time as google_time
from providers.jamf._models import parse_jamf_time
from providers.workspaceone._models import parse_time as workspaceone_time

READERS: dict[str, Callable[[str | None], datetime | None]] = {
    "iso (Kandji, Fleet)": iso_time,
    "jamf": parse_jamf_time,
    "google": google_time,
    "workspaceone": workspaceone_time,
}


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
def test_an_offset_is_turned_into_utc(read: Callable[[str | None], datetime | None]) -> None:
    """A time with an offset comes back as the same instant in UTC."""
    when = read("2026-11-20T10:26:41+01:00")
    assert when == datetime(2026, 11, 20, 9, 26, 41, tzinfo=UTC)
    assert when is not None
    assert when.utcoffset() == timedelta(0)


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_utc_cannot_hold_is_unreported(
    read: Callable[[str | None], datetime | None], text: str
) -> None:
    """Near year 1 or 9999 an offset can carry a time out of the calendar: it is unreported
    (None), not an OverflowError in the policy, the enrichment or the choice of a record."""
    assert read(text) is None
