"""Pydantic models of the Admin SDK Directory API JSON the provider reads, and nothing more.

Google leaves empty lists out of its answers: a search without a match has no
``mobiledevices`` key at all. Timestamps are RFC 3339 strings parsed by `parse_time`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from providers._records import utc


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


class MobileDevice(_Lenient):
    """One ``admin#directory#mobiledevice`` (projection FULL)."""

    resourceId: str
    deviceId: str | None = None
    serialNumber: str | None = None
    model: str | None = None
    os: str | None = None
    type: str | None = None
    status: str | None = None
    email: tuple[str, ...] = ()
    name: tuple[str, ...] = ()
    lastSync: str | None = None
    deviceCompromisedStatus: str | None = None


class MobileDevices(_Lenient):
    """A page of ``mobiledevices.list``."""

    mobiledevices: tuple[MobileDevice, ...] = ()
    nextPageToken: str | None = None


class ServiceAccountKey(_Lenient):
    """The fields of a service account's JSON key file the provider uses."""

    type: str
    client_email: str
    private_key_id: str
    private_key: str


_EPOCH_YEAR = 1970


def parse_time(raw: str | None) -> datetime | None:
    """An RFC 3339 time as aware UTC; the epoch (never synced) and garbage are None."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    in_utc = utc(when)
    return None if in_utc is None or in_utc.year <= _EPOCH_YEAR else in_utc
