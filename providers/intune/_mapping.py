"""Graph models to `DeviceRecord`: pure functions, tested without HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterable

from providers import vocabulary
from providers._records import text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import ascii_upper
from providers.intune._models import DirectoryGroup, GraphUser, ManagedDevice
from providers.intune._settings import GUID

COMPLIANCE_STATES = vocabulary.COMPLIANCE_STATES
"""``complianceState`` values Graph documents; others pass through but are logged."""

_NIL_GUID = "00000000-0000-0000-0000-000000000000"


def flag(value: str | None) -> bool | None:
    """Graph's ``jailBroken`` is a string: "True", "False" or "Unknown"."""
    match (value or "").strip().lower():
        case "true":
            return True
        case "false":
            return False
    return None


def entra_device_id(device: ManagedDevice) -> str | None:
    """The Entra ``deviceId`` of a managed device; None when unregistered (nil or not a GUID)."""
    azure_id = text(device.azure_ad_device_id)
    if azure_id is None or not re.fullmatch(GUID, azure_id) or azure_id == _NIL_GUID:
        return None
    return azure_id


def serial_matches(device: ManagedDevice, wanted: str) -> bool:
    """Whether the device's serial really is `wanted` (compared case-insensitively)."""
    return ascii_upper(device.serial_number) == wanted.upper()


def group_refs(groups: Iterable[DirectoryGroup]) -> tuple[GroupRef, ...]:
    """Groups deduplicated by id, order kept; a group without a readable name keeps its id."""
    seen: set[str] = set()
    refs: list[GroupRef] = []
    for group in groups:
        if group.id in seen:
            continue
        seen.add(group.id)
        # Without GroupMember.Read.All Graph returns groups with a null name: keep the id.
        refs.append(GroupRef(name=text(group.display_name) or group.id, id=group.id))
    return tuple(refs)


def device_record(
    provider: str,
    device: ManagedDevice,
    *,
    udid: str | None,
    user: GraphUser | None,
    groups: Iterable[DirectoryGroup],
) -> DeviceRecord:
    """Normalise a managed device, its user and groups (deduplicated by id, order kept)."""
    agent = (device.management_agent or "").lower()
    owner = device.managed_device_owner_type
    return DeviceRecord(
        provider=provider,
        record_id=device.id,
        serial=text(device.serial_number),
        udid=text(udid),
        name=text(device.device_name),
        model=text(device.model),
        platform=text(device.operating_system),
        os_version=text(device.os_version),
        managed="mdm" in agent if agent else None,
        supervised=device.is_supervised,
        compliance=text(device.compliance_state),
        owner_type=owner if owner in ("company", "personal") else None,
        jailbroken=flag(device.jail_broken),
        last_contact=device.last_sync_date_time,
        user=user_record(device, user),
        groups=group_refs(groups),
    )


def user_record(device: ManagedDevice, user: GraphUser | None) -> UserRecord | None:
    """The Entra user, or what the device row says about a user Graph no longer has."""
    if user is not None:
        return UserRecord(
            username=text(user.user_principal_name),
            email=text(user.mail) or text(device.email_address),
            full_name=text(user.display_name),
            department=text(user.department),
            title=text(user.job_title),
            id=user.id,
        )
    if text(device.user_principal_name) is None:
        return None  # a userless (shared, kiosk, DEP without user affinity) device
    return UserRecord(
        username=text(device.user_principal_name),
        email=text(device.email_address),
        full_name=text(device.user_display_name),
        id=text(device.user_id),
    )
