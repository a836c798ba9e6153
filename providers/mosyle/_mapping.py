"""Mosyle JSON to `DeviceRecord`: pure functions, tested without HTTP.

Mosyle's tags and device groups stand in for groups; device groups list their members by UDID
(``listdevicegroupsdevices``), so `group_index` turns those pages into a UDID → groups map.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from providers._records import text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import ascii_upper
from providers.mosyle._models import DeviceGroup, MosyleDevice
from providers.unicode import ascii_int

GroupIndex = Mapping[str, tuple[GroupRef, ...]]
"""Device groups by upper-cased UDID."""

_FAMILIES = {"mac": "macOS", "tvos": "tvOS", "visionos": "visionOS"}


def epoch(value: str | None) -> datetime | None:
    """Mosyle's dates are Unix seconds as strings; None when blank, zero or unreadable."""
    seconds = ascii_int((value or "").strip())
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def platform(device: MosyleDevice, family: str) -> str | None:
    """The family asked for (``mac``, ``ios``, ``tvos``, ``visionos``); iPads out of ``ios``."""
    if family in _FAMILIES:
        return _FAMILIES[family]
    if family != "ios":
        return None
    models = (device.device_model, device.device_model_name, device.model_name)
    return "iPadOS" if any("ipad" in (m or "").casefold() for m in models) else "iOS"


def serial_matches(device: MosyleDevice, serial: str) -> bool:
    """Whether the device's serial is exactly `serial` (compared case-insensitively)."""
    return ascii_upper((device.serial_number or "").strip()) == serial.upper()


def managed(device: MosyleDevice, enrolled: Collection[str]) -> bool | None:
    """Enrolled per its ``status`` and not deleted; None when Mosyle gives no status."""
    if device.is_deleted:
        return False
    status = text(device.status)
    if status is None:
        return None
    return status.upper() in {s.upper() for s in enrolled}


def group_index(groups: Iterable[DeviceGroup]) -> dict[str, tuple[GroupRef, ...]]:
    """Each member UDID's device groups, in the order Mosyle lists the groups."""
    index: dict[str, list[GroupRef]] = {}
    for group in groups:
        ref = GroupRef(name=text(group.name) or group.id, id=group.id)
        for udid in group.deviceudids:
            key = ascii_upper(udid.strip())
            if not key:
                continue
            members = index.setdefault(key, [])
            if ref not in members:
                members.append(ref)
    return {udid: tuple(refs) for udid, refs in index.items()}


def groups(device: MosyleDevice, index: GroupIndex | None) -> tuple[GroupRef, ...]:
    """The device's tags, then its device groups (when they were read)."""
    refs: list[GroupRef] = []
    for tag in device.tags:
        name = text(tag)
        if name is not None and all(r.name != name for r in refs):
            refs.append(GroupRef(name=name))
    udid = ascii_upper((device.deviceudid or "").strip())
    if index is not None and udid:
        refs += index.get(udid, ())
    return tuple(refs)


def user(device: MosyleDevice) -> UserRecord | None:
    """``userid`` (the user's identifier in Mosyle), ``useremail``, ``username`` (full name)."""
    found = UserRecord(
        username=text(device.userid),
        email=text(device.useremail),
        full_name=text(device.username),
        id=text(device.userid),
    )
    return found if found != UserRecord() else None


def last_contact(device: MosyleDevice) -> datetime | None:
    """The last heartbeat (``date_last_beat``), else the last device-info update."""
    return epoch(device.date_last_beat) or epoch(device.date_info)


def device_record(
    provider: str,
    device: MosyleDevice,
    family: str,
    *,
    enrolled: Collection[str],
    index: GroupIndex | None,
) -> DeviceRecord:
    """Normalise one device of family `family`."""
    return DeviceRecord(
        provider=provider,
        record_id=text(device.deviceudid) or text(device.serial_number),
        serial=text(device.serial_number),
        udid=text(device.deviceudid),
        name=text(device.device_name),
        model=text(device.device_model_name)
        or text(device.model_name)
        or text(device.device_model),
        platform=platform(device, family),
        os_version=text(device.osversion),
        managed=managed(device, enrolled),
        supervised=device.is_supervised,
        last_contact=last_contact(device),
        user=user(device),
        groups=groups(device, index),
    )
