"""Admin SDK mobile devices to `DeviceRecord`: pure functions, tested without HTTP.

Google reports no UDID, no compliance state and no groups for mobile devices, so those stay
None (or empty): a policy rule on them fails closed as unreported. `managed` means "approved
for the account" on a device type Google manages (``IOS_SYNC``, ``ANDROID``); an Exchange
(``GOOGLE_SYNC``) device only syncs mail and is never managed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from providers._records import text
from providers.base import DeviceRecord, UserRecord
from providers.google import _models as m
from providers.identifiers import ascii_upper

_VERSION = re.compile(r"([0-9]+(?:\.[0-9]+){0,5})")


def matches(device: m.MobileDevice, serial: str) -> bool:
    """Whether the device's serial is exactly `serial` (Google's search matches loosely)."""
    return ascii_upper(device.serialNumber) == serial.upper()


def managed(device: m.MobileDevice, managed_types: Iterable[str]) -> bool | None:
    """Approved on a managed device type; any other status or type is unmanaged."""
    status = text(device.status)
    if status is None:
        return None
    return status.upper() == "APPROVED" and (device.type or "").upper() in set(managed_types)


_TYPES = {"ANDROID": "Android", "WINDOWS": "Windows", "CHROME_OS": "ChromeOS", "LINUX": "Linux"}
"""Device types that name their platform; ``IOS_SYNC`` is iOS or iPadOS by model."""


def platform(device: m.MobileDevice) -> str | None:
    """The vocabulary platform from the device type, else (a sync-only type such as
    ``GOOGLE_SYNC``) from the operating system the device reports; iPads by model. The type
    comes first: an Android device reporting "iOS" as its system is still an Android one."""
    kind = (device.type or "").upper()
    os_name = (device.os or "").casefold()
    if kind in _TYPES:
        return _TYPES[kind]
    if kind == "IOS_SYNC" or os_name.startswith("ios"):
        return "iPadOS" if "ipad" in (device.model or "").casefold() else "iOS"
    if os_name.startswith("android"):
        return "Android"
    if os_name.startswith("windows"):
        return "Windows"
    return None


def os_version(raw: str | None) -> str | None:
    """ "iOS 17.1.2" and "Android 14" become "17.1.2" and "14"."""
    found = _VERSION.search(raw or "")
    return found.group(1) if found else None


def jailbroken(status: str | None) -> bool | None:
    """ "Compromised" is True, "No compromise detected"/"Uncompromised" False, else None (?)."""
    raw = (status or "").casefold().replace(" ", "")
    if raw in ("compromised", "compromisedetected"):
        return True
    if raw in ("uncompromised", "nocompromisedetected"):
        return False
    return None


def user(device: m.MobileDevice) -> UserRecord | None:
    """The first owner: Google lists owners' e-mails and names (the account the device syncs)."""
    email = text(device.email[0]) if device.email else None
    full_name = text(device.name[0]) if device.name else None
    if email is None and full_name is None:
        return None
    return UserRecord(username=email, email=email, full_name=full_name)


def device_record(
    provider: str, device: m.MobileDevice, *, managed_types: Iterable[str]
) -> DeviceRecord:
    """A Google mobile device in the normalised vocabulary."""
    return DeviceRecord(
        provider=provider,
        record_id=device.resourceId,
        serial=text(device.serialNumber),
        udid=None,
        model=text(device.model),
        platform=platform(device),
        os_version=os_version(device.os),
        managed=managed(device, managed_types),
        jailbroken=jailbroken(device.deviceCompromisedStatus),
        last_contact=m.parse_time(device.lastSync),
        user=user(device),
    )
