"""Kandji JSON to `DeviceRecord`: pure functions, tested without HTTP.

Kandji has no groups: the blueprint (by name, with its id) and the tags stand in for them,
and a device Kandji marks missing (``is_missing``: no check-in for the tenant's missing
period) also gets the group ``kandji-missing``, so ``groups.none_of`` can refuse it. A device Kandji
marks removed (``is_removed``) is not managed, whatever ``mdm_enabled`` says.
"""

from __future__ import annotations

from providers._records import iso_time, text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import ascii_upper
from providers.kandji._models import DeviceDetails, KandjiDevice

PLATFORMS = {
    "mac": "macOS",
    "iphone": "iOS",
    "ipad": "iPadOS",
    "appletv": "tvOS",
    "vision": "visionOS",
    "applevision": "visionOS",
    "applevisionpro": "visionOS",
}
"""Kandji's ``platform`` values (``Mac``, ``iPhone``, ``iPad``, ``AppleTV``) by folded name."""

MISSING = "kandji-missing"
"""The group of a device Kandji reports missing."""


def platform(value: str | None) -> str | None:
    """The `providers.vocabulary` spelling of Kandji's platform; None for one it does not know."""
    key = (value or "").replace(" ", "").casefold()
    return PLATFORMS.get(key)


def serial_matches(device: KandjiDevice, serial: str) -> bool:
    """Kandji's ``serial_number`` filter matches substrings: keep only the exact serial."""
    return ascii_upper((device.serial_number or "").strip()) == serial.upper()


def managed(device: KandjiDevice, details: DeviceDetails | None) -> bool | None:
    """MDM enabled and not removed; None when Kandji says neither."""
    if device.is_removed:
        return False
    if device.mdm_enabled is not None:
        return device.mdm_enabled
    return details.mdm.mdm_enabled if details is not None and details.mdm is not None else None


def groups(device: KandjiDevice) -> tuple[GroupRef, ...]:
    """The blueprint, then the tags (each once, order kept), then `MISSING` when it applies."""
    refs: list[GroupRef] = []
    blueprint = text(device.blueprint_name)
    if blueprint is not None:
        refs.append(GroupRef(name=blueprint, id=text(device.blueprint_id)))
    seen: set[str] = set()
    for tag in device.tags:
        name = text(tag)
        if name is not None and name not in seen:
            seen.add(name)
            refs.append(GroupRef(name=name))
    if device.is_missing:
        refs.append(GroupRef(name=MISSING))
    return tuple(refs)


def user(device: KandjiDevice) -> UserRecord | None:
    """The assigned user; Kandji users have an e-mail and a display name, no login name."""
    found = device.user
    if found is None:
        return None
    record = UserRecord(email=text(found.email), full_name=text(found.name), id=text(found.id))
    return record if record != UserRecord() else None


def device_record(
    provider: str, device: KandjiDevice, details: DeviceDetails | None
) -> DeviceRecord:
    """Normalise a device and (when fetched) its details.

    The last contact is the newer of the list's ``last_check_in`` and the details' MDM
    check-in. Without details, UDID and supervision stay unreported (None).
    """
    hardware = details.hardware_overview if details is not None else None
    mdm = details.mdm if details is not None else None
    contacts = [
        t
        for t in (iso_time(device.last_check_in), iso_time(mdm.last_check_in if mdm else None))
        if t is not None
    ]
    return DeviceRecord(
        provider=provider,
        record_id=device.device_id,
        serial=text(device.serial_number),
        udid=text(hardware.udid) or text(hardware.uuid) if hardware is not None else None,
        name=text(device.device_name),
        model=text(device.model),
        platform=platform(device.platform),
        os_version=text(device.os_version),
        managed=managed(device, details),
        supervised=mdm.supervised if mdm is not None else None,
        last_contact=max(contacts) if contacts else None,
        user=user(device),
        groups=groups(device),
    )
