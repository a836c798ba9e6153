"""Pydantic models of the Workspace ONE UEM JSON the provider reads, and nothing more.

Field names are Workspace ONE's own (PascalCase). Ids arrive as ``{"Value": 123}`` objects and
are kept as strings; unknown keys are ignored, every field is optional. Timestamps stay strings
here and are parsed by `parse_time`, because the API writes them with and without a zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers._records import utc


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


class EntityId(_Lenient):
    """``{"Value": 362508}``."""

    Value: str | None = None


class EntityReference(_Lenient):
    """``{"Id": {"Value": 2661}, "Uuid": "...", "Name": "DEP"}``."""

    Id: EntityId | None = None
    Name: str | None = None
    Uuid: str | None = None


class Device(_Lenient):
    """One device of ``GET /API/mdm/devices?searchby=...`` or of a search page."""

    Id: EntityId | None = None
    Uuid: str | None = None
    Udid: str | None = None
    SerialNumber: str | None = None
    DeviceFriendlyName: str | None = None
    LocationGroupId: EntityReference | None = None
    LocationGroupName: str | None = None
    UserId: EntityReference | None = None
    UserName: str | None = None
    UserEmailAddress: str | None = None
    Ownership: str | None = None
    Platform: str | None = None
    Model: str | None = None
    OperatingSystem: str | None = None
    LastSeen: str | None = None
    EnrollmentStatus: str | None = None
    ComplianceStatus: str | None = None
    CompromisedStatus: bool | None = None
    IsSupervised: bool | None = None

    @field_validator("CompromisedStatus", "IsSupervised", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def record_id(self) -> str | None:
        """The numeric device id as a string."""
        return self.Id.Value if self.Id is not None else None


class DeviceSearch(_Lenient):
    """``GET /API/mdm/devices/search``: one page of devices."""

    Devices: tuple[Device, ...] = ()
    Page: int = 0
    PageSize: int = 0
    Total: int = 0


class SmartGroupRef(_Lenient):
    """One entry of ``GET /API/mdm/devices/{id}/smartgroups``."""

    SmartGroupId: EntityId | None = None
    SmartGroupName: str | None = None


class SmartGroups(_Lenient):
    """``{"SmartGroup": [...]}``."""

    SmartGroup: tuple[SmartGroupRef, ...] = Field(default=())


_UNSET_YEAR = 1


def parse_time(raw: str | None) -> datetime | None:
    """An ISO 8601 time as aware UTC; a time without zone is taken as UTC (?), year 1 is unset."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.year == _UNSET_YEAR:
        return None
    return utc(when)
