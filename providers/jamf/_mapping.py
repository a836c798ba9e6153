"""Jamf JSON models to `DeviceRecord`: pure functions, tested without HTTP.

Jamf writes "" for unset strings and ``null`` for unrequested sections; both become None.
Computers come from ``computers-inventory`` (Macs only), mobile devices from
``mobile-devices/detail``, and both from the Classic API on old servers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from providers._records import text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import DeviceIdentifier, IdentifierKind, ascii_upper
from providers.jamf import _models as m
from providers.jamf._settings import DeviceClass
from providers.vocabulary import is_apple_platform

_UUID_FORM = 36  # 8-4-4-4-12
_SHA1_FORM = 40  # 40 hex digits


def matches(record: DeviceRecord, identifier: DeviceIdentifier) -> bool:
    """Whether the record really carries the identifier (Jamf compares case-insensitively)."""
    wanted = identifier.normalized
    return any(ascii_upper(v) == wanted for v in (record.serial, record.udid))


def classes_for(
    identifier: DeviceIdentifier, classes: tuple[DeviceClass, ...]
) -> tuple[DeviceClass, ...]:
    """The configured device classes a device with this identifier can belong to.

    Only UDID forms Apple gives one platform narrow the search: the UUID form (8-4-4-4-12) is a
    Mac's (the hardware UUID Jamf keeps for every Mac, and what an Intel Mac attests); 40 hex
    digits are an iPhone's or iPad's from before 2018. The 8-16 form belongs to iPhones, iPads
    and Apple silicon Macs alike (the provisioning UDID that Mac attestation carries), and a
    serial number tells nothing: both search every configured class.
    """
    if identifier.kind is not IdentifierKind.UDID:
        return classes
    size = len(identifier.value)
    if size == _UUID_FORM:
        return tuple(c for c in classes if c == "computers")
    if size == _SHA1_FORM:
        return tuple(c for c in classes if c == "mobile")
    return classes


def department_ids(computers: Iterable[m.Computer]) -> set[str]:
    """The department ids the computers' users name (Jamf gives computers only the id)."""
    return {
        dept
        for c in computers
        if c.userAndLocation is not None
        and (dept := text(c.userAndLocation.departmentId)) is not None
    }


def user(
    *,
    username: str | None,
    email: str | None,
    full_name: str | None,
    department: str | None,
    title: str | None,
) -> UserRecord | None:
    """A user, or None when Jamf has no field of it."""
    found = UserRecord(
        username=text(username),
        email=text(email),
        full_name=text(full_name),
        department=text(department),
        title=text(title),
    )
    return found if found != UserRecord() else None


def computer_record(
    provider: str, computer: m.Computer, departments: Mapping[str, str | None]
) -> DeviceRecord:
    """A Mac from ``computers-inventory``; `departments` maps department ids to names."""
    general = computer.general or m.ComputerGeneral()
    hardware = computer.hardware or m.ComputerHardware()
    system = computer.operatingSystem or m.OperatingSystem()
    remote = general.remoteManagement
    owner = None
    if computer.userAndLocation is not None:
        ul = computer.userAndLocation
        dept = text(ul.departmentId)
        owner = user(
            username=ul.username,
            email=ul.email,
            full_name=ul.realname,
            department=departments.get(dept) if dept is not None else None,
            title=ul.position,
        )
    return DeviceRecord(
        provider=provider,
        record_id=text(computer.id),
        serial=text(hardware.serialNumber),
        udid=text(computer.udid),
        name=text(general.name),
        model=text(hardware.model),
        platform="macOS",  # computers-inventory holds Macs only
        os_version=text(system.version),
        managed=remote.managed if remote is not None else None,
        supervised=general.supervised,
        last_contact=m.parse_jamf_time(
            general.lastContact or general.lastContactTime or general.lastCheckIn
        ),
        user=owner,
        groups=tuple(
            GroupRef(name=g.groupName, id=text(g.groupId), smart=g.smartGroup)
            for g in computer.groupMemberships or ()
            if g.groupName
        ),
    )


def mobile_record(provider: str, device: m.MobileDevice) -> DeviceRecord:
    """An iPhone, iPad, Apple TV or Vision Pro from ``mobile-devices/detail``."""
    general = device.general or m.MobileGeneral()
    hardware = device.hardware or m.MobileHardware()
    owner = None
    if device.userAndLocation is not None:
        ul = device.userAndLocation
        owner = user(
            username=ul.username,
            email=ul.emailAddress,
            full_name=ul.realName,
            department=ul.department,
            title=ul.position,
        )
    return DeviceRecord(
        provider=provider,
        record_id=text(device.mobileDeviceId) or text(device.id),
        serial=text(hardware.serialNumber),
        udid=text(general.udid),
        name=text(general.displayName),
        model=text(hardware.model),
        platform=mobile_platform(device.deviceType, hardware.modelIdentifier or hardware.model),
        os_version=text(general.osVersion),
        managed=general.managed,
        supervised=general.supervised,
        last_contact=m.parse_jamf_time(general.lastContactDate or general.lastInventoryUpdateDate),
        user=owner,
        groups=tuple(
            GroupRef(name=g.groupName, id=text(g.groupId), smart=g.smart)
            for g in device.groups or ()
            if g.groupName
        ),
    )


def classic_computer_record(provider: str, body: m.ClassicComputerBody) -> DeviceRecord:
    """A Mac from ``/JSSResource/computers`` (old servers)."""
    general = body.general or m.ClassicComputerGeneral()
    hardware = body.hardware or m.ClassicComputerHardware()
    accounts = body.groups_accounts or m.ClassicGroupsAccounts()
    return DeviceRecord(
        provider=provider,
        record_id=text(general.id),
        serial=text(general.serial_number),
        udid=text(general.udid),
        name=text(general.name),
        model=text(hardware.model),
        platform="macOS",
        os_version=text(hardware.os_version),
        managed=general.remote_management.managed if general.remote_management else None,
        supervised=general.supervised,
        last_contact=m.parse_jamf_time(general.last_contact_time_utc),
        user=classic_user(body.location),
        groups=tuple(GroupRef(name=n) for n in accounts.computer_group_memberships or () if n),
    )


def classic_mobile_record(provider: str, body: m.ClassicMobileBody) -> DeviceRecord:
    """A mobile device from ``/JSSResource/mobiledevices`` (old servers)."""
    general = body.general or m.ClassicMobileGeneral()
    return DeviceRecord(
        provider=provider,
        record_id=text(general.id),
        serial=text(general.serial_number),
        udid=text(general.udid),
        name=text(general.device_name) or text(general.name),
        model=text(general.model),
        platform=mobile_platform(general.os_type, general.model_identifier or general.model),
        os_version=text(general.os_version),
        managed=general.managed,
        supervised=general.supervised,
        last_contact=m.parse_jamf_time(general.last_inventory_update_utc),
        user=classic_user(body.location),
        groups=tuple(
            GroupRef(name=g.name, id=text(g.id)) for g in body.mobile_device_groups or () if g.name
        ),
    )


def classic_user(location: m.ClassicLocation | None) -> UserRecord | None:
    """The Classic API's ``location`` as a user."""
    if location is None:
        return None
    return user(
        username=location.username,
        email=location.email_address,
        full_name=location.realname or location.real_name,
        department=location.department,
        title=location.position,
    )


def mobile_platform(device_type: str | None, model: str | None) -> str | None:
    """Jamf says "iOS" (or "ios") for iPhones and iPads alike; the model tells them apart."""
    kind = (device_type or "").casefold()
    hint = (model or "").casefold().replace(" ", "")
    if "ipad" in hint:
        return "iPadOS"
    if "tv" in kind or "appletv" in hint:
        return "tvOS"
    if "vision" in kind or "realitydevice" in hint or "visionpro" in hint:
        return "visionOS"
    if kind in ("ios", "iphone", "ipod") or "iphone" in hint or "ipod" in hint:
        return "iOS"
    # Every Jamf device is Apple's: a type the vocabulary lacks is unreported, never taken
    # for another platform (an Apple identifier on one is denied: `platform-mismatch`).
    other = text(device_type)
    return other if other is not None and is_apple_platform(other) else None
