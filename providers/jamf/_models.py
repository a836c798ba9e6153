"""Pydantic models of the Jamf Pro JSON the provider reads, and nothing more.

Every field is optional and unknown keys are ignored: Jamf adds fields per release, answers
unrequested sections as ``null``, and writes ids as strings in the Pro API but as integers in
the Classic API (both are accepted and kept as strings). Timestamps stay strings here and are
parsed leniently by `parse_jamf_time`, because Jamf varies the fraction digits and offset form.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers._records import utc


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


_T = TypeVar("_T", bound=BaseModel)


# --- authentication ---------------------------------------------------------------------------


class OAuthToken(_Lenient):
    """Answer of ``POST /api/oauth/token`` and ``/api/v1/oauth/token``."""

    access_token: str = Field(min_length=1, repr=False)
    expires_in: float = Field(gt=0)


class UserToken(_Lenient):
    """Answer of ``POST /api/v1/auth/token`` (Basic credentials)."""

    token: str = Field(min_length=1, repr=False)
    expires: str


# --- Jamf Pro API: computers-inventory ----------------------------------------------------------


class RemoteManagement(_Lenient):
    managed: bool | None = None


class ComputerGeneral(_Lenient):
    name: str | None = None
    platform: str | None = None
    supervised: bool | None = None
    remoteManagement: RemoteManagement | None = None
    lastContactTime: str | None = None
    lastContact: str | None = None
    lastCheckIn: str | None = None


class ComputerHardware(_Lenient):
    model: str | None = None
    serialNumber: str | None = None


class OperatingSystem(_Lenient):
    name: str | None = None
    version: str | None = None


class ComputerUserAndLocation(_Lenient):
    username: str | None = None
    realname: str | None = None
    email: str | None = None
    position: str | None = None
    departmentId: str | None = None


class GroupMembership(_Lenient):
    groupId: str | None = None
    groupName: str | None = None
    smartGroup: bool | None = None


class Computer(_Lenient):
    """One element of ``computers-inventory`` ``results`` (v1, v2, v3, v4)."""

    id: str | None = None
    udid: str | None = None
    general: ComputerGeneral | None = None
    hardware: ComputerHardware | None = None
    operatingSystem: OperatingSystem | None = None
    userAndLocation: ComputerUserAndLocation | None = None
    groupMemberships: list[GroupMembership] | None = None


class SearchResults(_Lenient, Generic[_T]):
    """``{"totalCount": n, "results": [...]}``: totalCount counts all matches, not the page."""

    totalCount: int = 0
    results: list[_T] = Field(default_factory=list)


ComputerResults = SearchResults[Computer]


# --- Jamf Pro API: mobile-devices/detail --------------------------------------------------------


class MobileGeneral(_Lenient):
    udid: str | None = None
    displayName: str | None = None
    managed: bool | None = None
    supervised: bool | None = None
    osVersion: str | None = None
    lastContactDate: str | None = None
    lastInventoryUpdateDate: str | None = None


class MobileHardware(_Lenient):
    serialNumber: str | None = None
    model: str | None = None
    modelIdentifier: str | None = None


class MobileUserAndLocation(_Lenient):
    username: str | None = None
    realName: str | None = None
    emailAddress: str | None = None
    position: str | None = None
    department: str | None = None


class MobileGroup(_Lenient):
    groupId: str | None = None
    groupName: str | None = None
    smart: bool | None = None


class MobileDevice(_Lenient):
    """One element of ``/api/v2/mobile-devices/detail`` ``results``."""

    mobileDeviceId: str | None = None
    id: str | None = None
    deviceType: str | None = None
    general: MobileGeneral | None = None
    hardware: MobileHardware | None = None
    userAndLocation: MobileUserAndLocation | None = None
    groups: list[MobileGroup] | None = None


MobileResults = SearchResults[MobileDevice]


class Department(_Lenient):
    """Answer of ``GET /api/v1/departments/{id}``."""

    id: str | None = None
    name: str | None = None


DepartmentResults = SearchResults[Department]
"""Answer of ``GET /api/v1/departments`` (every department, paged)."""


# --- Classic API (/JSSResource, Accept: application/json) ----------------------------------------


class ClassicRemoteManagement(_Lenient):
    managed: bool | None = None


class ClassicComputerGeneral(_Lenient):
    id: str | None = None
    name: str | None = None
    serial_number: str | None = None
    udid: str | None = None
    supervised: bool | None = None
    remote_management: ClassicRemoteManagement | None = None
    last_contact_time_utc: str | None = None


class ClassicLocation(_Lenient):
    username: str | None = None
    realname: str | None = None
    real_name: str | None = None
    email_address: str | None = None
    position: str | None = None
    department: str | None = None


class ClassicComputerHardware(_Lenient):
    model: str | None = None
    os_name: str | None = None
    os_version: str | None = None


class ClassicGroupsAccounts(_Lenient):
    computer_group_memberships: list[str] | None = None

    @field_validator("computer_group_memberships", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        # Seen both as a list of names and as {"group": [...]} in XML-to-JSON conversions.
        if isinstance(value, dict) and "group" in value:
            inner = value["group"]
            return inner if isinstance(inner, list) else [inner]
        return value


class ClassicComputerBody(_Lenient):
    general: ClassicComputerGeneral | None = None
    location: ClassicLocation | None = None
    hardware: ClassicComputerHardware | None = None
    groups_accounts: ClassicGroupsAccounts | None = None


class ClassicComputer(_Lenient):
    """Answer of ``GET /JSSResource/computers/{serialnumber|udid}/{value}``."""

    computer: ClassicComputerBody


class ClassicMobileGeneral(_Lenient):
    id: str | None = None
    name: str | None = None
    device_name: str | None = None
    serial_number: str | None = None
    udid: str | None = None
    managed: bool | None = None
    supervised: bool | None = None
    os_type: str | None = None
    os_version: str | None = None
    model: str | None = None
    model_identifier: str | None = None
    last_inventory_update_utc: str | None = None


class ClassicMobileGroup(_Lenient):
    id: str | None = None
    name: str | None = None


class ClassicMobileBody(_Lenient):
    general: ClassicMobileGeneral | None = None
    location: ClassicLocation | None = None
    mobile_device_groups: list[ClassicMobileGroup] | None = None

    @field_validator("mobile_device_groups", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        # Jamf's doc sample wraps each entry as {"size": n, "mobile_device_group": {...}}.
        if isinstance(value, list):
            return [
                v["mobile_device_group"]
                if isinstance(v, dict) and isinstance(v.get("mobile_device_group"), dict)
                else v
                for v in value
            ]
        if isinstance(value, dict) and "mobile_device_group" in value:
            inner = value["mobile_device_group"]
            return inner if isinstance(inner, list) else [inner]
        return value


class ClassicMobileDevice(_Lenient):
    """Answer of ``GET /JSSResource/mobiledevices/{serialnumber|udid}/{value}``."""

    mobile_device: ClassicMobileBody


# --- helpers ------------------------------------------------------------------------------------

_FRACTION = re.compile(r"\.([0-9]+)")
_COMPACT_OFFSET = re.compile(r"([+-][0-9]{2})([0-9]{2})$")


def parse_jamf_time(value: str | None) -> datetime | None:
    """Parse a Jamf timestamp into an aware datetime; None when absent or unreadable.

    Accepts ``Z``, ``+0000`` and ``+00:00`` offsets, any number of fraction digits, and a
    missing offset (taken as UTC, as Jamf stores UTC).
    """
    if not value or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    text = _COMPACT_OFFSET.sub(r"\1:\2", text)
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return utc(parsed)
