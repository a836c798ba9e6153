"""Pydantic models of the Kandji JSON the provider reads, and nothing more.

Kandji answers a device list as a bare array, writes ``user`` as an object or as ``""`` when
no user is assigned, flags in the details as the strings ``"True"``/``"False"``, and names the
UDID ``hardware_overview.udid`` for Macs but ``hardware_overview.uuid`` for iPhones, iPads and
Apple TVs. Unknown keys are ignored, so new Kandji fields never break a lookup.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from providers._records import flag


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


def _object_or_none(value: Any) -> Any:
    return value if isinstance(value, dict) else None


def _tag_names(value: Any) -> Any:
    if not isinstance(value, list):
        return []
    names = (t.get("name") if isinstance(t, dict) else t for t in value)
    return [n for n in names if isinstance(n, str)]


Flag = Annotated[bool | None, BeforeValidator(flag)]


class KandjiUser(_Lenient):
    """The assigned user inside a device (``{email, name, id, is_archived}``)."""

    id: str | None = None
    email: str | None = None
    name: str | None = None
    is_archived: Flag = None


class KandjiDevice(_Lenient):
    """One item of ``GET /api/v1/devices``."""

    device_id: str = Field(min_length=1)
    device_name: str | None = None
    serial_number: str | None = None
    model: str | None = None
    platform: str | None = None
    os_version: str | None = None
    last_check_in: str | None = None
    user: Annotated[KandjiUser | None, BeforeValidator(_object_or_none)] = None
    blueprint_id: str | None = None
    blueprint_name: str | None = None
    mdm_enabled: Flag = None
    agent_installed: Flag = None
    is_missing: Flag = None
    is_removed: Flag = None
    tags: Annotated[list[str], BeforeValidator(_tag_names)] = Field(default_factory=list)


class DeviceList(RootModel[list[KandjiDevice]]):
    """``GET /api/v1/devices``: a bare JSON array, ``[]`` when nothing matches."""


class HardwareOverview(_Lenient):
    udid: str | None = None  # Macs
    uuid: str | None = None  # iPhone, iPad, Apple TV
    serial_number: str | None = None


class MdmDetails(_Lenient):
    mdm_enabled: Flag = None
    supervised: Flag = None
    last_check_in: str | None = None


class DeviceDetails(_Lenient):
    """``GET /api/v1/devices/{id}/details``: the sections the provider reads."""

    hardware_overview: Annotated[HardwareOverview | None, BeforeValidator(_object_or_none)] = None
    mdm: Annotated[MdmDetails | None, BeforeValidator(_object_or_none)] = None
