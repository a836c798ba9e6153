"""Workspace ONE JSON to `DeviceRecord`: pure functions, tested without HTTP.

Workspace ONE's words become the `providers.vocabulary` spellings: ``ComplianceStatus``
(``Compliant``, ``NonCompliant``, ``PendingComplianceCheck``, ``NotAvailable``), ``Ownership``
(``C``/``E``/``S`` in REST answers, the long names in event notifications) and ``Platform``
(``Apple`` for iPhone and iPad, ``AppleOsX``, ``AppleTv``, ...). A value it does not know
becomes None, so a rule on it fails closed as unreported instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable

from providers._records import text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import DeviceIdentifier, IdentifierKind, ascii_upper
from providers.workspaceone import _models as m

COMPLIANCE = {
    "compliant": "compliant",
    "noncompliant": "noncompliant",
    "pendingcompliancecheck": "unknown",
    "notavailable": "unknown",
    "unknown": "unknown",
}
OWNERSHIP = {
    "c": "company",
    "corporate": "company",
    "corporatededicated": "company",
    "s": "company",
    "shared": "company",
    "corporateshared": "company",
    "e": "personal",
    "employee": "personal",
    "employeeowned": "personal",
}
PLATFORMS = {
    "appleosx": "macOS",
    "appletv": "tvOS",
    "applewatch": "watchOS",
    "applevisionos": "visionOS",
    "android": "Android",
    "winrt": "Windows",
    "windowspc": "Windows",
    "windowsphone": "Windows",
    "chromebook": "ChromeOS",
    "linux": "Linux",
}
ORGANIZATION_GROUP_PREFIX = "og:"
"""The organisation group is a group named and identified with this prefix, so it never
collides with a smart group of the same name or number."""


def udid_key(value: str) -> str:
    """A UDID compared without dashes and case: Workspace ONE may store it either way (?).
    Other than ASCII it is "" (never equal: see `ascii_upper`)."""
    return ascii_upper(value.replace("-", ""))


def matches(device: m.Device, identifier: DeviceIdentifier) -> bool:
    """Whether the answer really is the device asked for (a misread search must not count)."""
    if identifier.kind is IdentifierKind.SERIAL:
        return ascii_upper(device.SerialNumber) == identifier.normalized
    return udid_key(device.Udid or "") == udid_key(identifier.value)


def managed(status: str | None) -> bool | None:
    """Enrolled means managed; any other enrollment status (pending, unenrolled, ...) does not."""
    raw = text(status)
    return None if raw is None else raw.casefold() == "enrolled"


def compliance(status: str | None) -> str | None:
    """The vocabulary's compliance state; None for a value Workspace ONE's docs do not list."""
    raw = text(status)
    return None if raw is None else COMPLIANCE.get(raw.casefold())


def owner_type(ownership: str | None) -> str | None:
    """Corporate (dedicated or shared) is company, employee-owned is personal."""
    raw = text(ownership)
    return None if raw is None else OWNERSHIP.get(raw.casefold().replace(" ", ""))


def platform(raw_platform: str | None, model: str | None) -> str | None:
    """ "Apple" covers iPhone and iPad alike; the model tells them apart."""
    raw = (text(raw_platform) or "").casefold().replace(" ", "")
    if raw == "apple":
        return "iPadOS" if "ipad" in (model or "").casefold() else "iOS"
    return PLATFORMS.get(raw)


def groups(
    device: m.Device, smart_groups: Iterable[m.SmartGroupRef], *, organization_group: bool
) -> tuple[GroupRef, ...]:
    """The organisation group (prefixed ``og:``) and the smart groups, without duplicates."""
    refs: list[GroupRef] = []
    if organization_group:
        og_name = text(device.LocationGroupName) or (
            text(device.LocationGroupId.Name) if device.LocationGroupId else None
        )
        og_id = device.LocationGroupId.Id if device.LocationGroupId else None
        if og_name is not None:
            refs.append(
                GroupRef(
                    name=ORGANIZATION_GROUP_PREFIX + og_name,
                    id=ORGANIZATION_GROUP_PREFIX + og_id.Value if og_id and og_id.Value else None,
                    smart=False,
                )
            )
    seen: set[tuple[str, str | None]] = set()
    for group in smart_groups:
        name = text(group.SmartGroupName)
        group_id = group.SmartGroupId.Value if group.SmartGroupId else None
        if name is None or (name, group_id) in seen:
            continue
        seen.add((name, group_id))
        refs.append(GroupRef(name=name, id=group_id, smart=True))
    return tuple(refs)


def user(device: m.Device) -> UserRecord | None:
    """The enrollment user; None for a device without one (staged, shared)."""
    found = UserRecord(
        username=text(device.UserName),
        email=text(device.UserEmailAddress),
        full_name=text(device.UserId.Name) if device.UserId else None,
        id=text(device.UserId.Uuid) if device.UserId else None,
    )
    return None if found in (UserRecord(), UserRecord(id=found.id)) else found


def device_record(
    provider: str,
    device: m.Device,
    smart_groups: Iterable[m.SmartGroupRef] = (),
    *,
    organization_group: bool = True,
) -> DeviceRecord:
    """A Workspace ONE device, its user and groups, in the normalised vocabulary."""
    return DeviceRecord(
        provider=provider,
        record_id=device.record_id,
        serial=text(device.SerialNumber),
        udid=text(device.Udid),
        name=text(device.DeviceFriendlyName),
        model=text(device.Model),
        platform=platform(device.Platform, device.Model),
        os_version=text(device.OperatingSystem),
        managed=managed(device.EnrollmentStatus),
        supervised=device.IsSupervised,
        compliance=compliance(device.ComplianceStatus),
        owner_type=owner_type(device.Ownership),
        jailbroken=device.CompromisedStatus,
        last_contact=m.parse_time(device.LastSeen),
        user=user(device),
        groups=groups(device, smart_groups, organization_group=organization_group),
    )
