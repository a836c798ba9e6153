"""Pydantic models of the Apple Business Manager API JSON (JSON:API style) the provider reads.

Resources are ``{"type", "id", "attributes"}``; lists page with ``meta.paging.nextCursor``.
Unknown keys are ignored and every attribute is optional, so Apple's additions never break.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


class Paging(_Lenient):
    """``meta.paging``."""

    nextCursor: str | None = None
    limit: int | None = None


class Meta(_Lenient):
    """``meta``."""

    paging: Paging | None = None


class OrgDeviceAttributes(_Lenient):
    """What Apple Business Manager knows of a device it holds for the organisation."""

    serialNumber: str | None = None
    deviceModel: str | None = None
    productFamily: str | None = None
    productType: str | None = None
    status: str | None = None
    addedToOrgDateTime: str | None = None
    releasedFromOrgDateTime: str | None = None
    updatedDateTime: str | None = None


class OrgDevice(_Lenient):
    """An ``orgDevices`` resource (its id is the serial number)."""

    type: str | None = None
    id: str
    attributes: OrgDeviceAttributes = OrgDeviceAttributes()

    @property
    def serial(self) -> str:
        """The serial number (the attribute, else the id, which Apple sets to it)."""
        return self.attributes.serialNumber or self.id

    @property
    def released(self) -> bool:
        """Whether the device was released from the organisation (no longer its property)."""
        return bool((self.attributes.releasedFromOrgDateTime or "").strip())


class OrgDeviceResponse(_Lenient):
    """``GET /v1/orgDevices/{id}``."""

    data: OrgDevice


class OrgDevicesResponse(_Lenient):
    """``GET /v1/orgDevices``: one page."""

    data: tuple[OrgDevice, ...] = ()
    meta: Meta | None = None


class MdmServerAttributes(_Lenient):
    """A device management service's name and kind."""

    serverName: str | None = None
    serverType: str | None = None


class MdmServer(_Lenient):
    """An ``mdmServers`` resource."""

    type: str | None = None
    id: str
    attributes: MdmServerAttributes = MdmServerAttributes()


class MdmServerResponse(_Lenient):
    """``GET /v1/orgDevices/{id}/assignedServer``; ``data`` is null when unassigned (?)."""

    data: MdmServer | None = None


class MdmServersResponse(_Lenient):
    """``GET /v1/mdmServers``: one page."""

    data: tuple[MdmServer, ...] = ()
    meta: Meta | None = None


class Linkage(_Lenient):
    """``{"type": "orgDevices", "id": "<serial>"}``."""

    type: str | None = None
    id: str


class LinkagesResponse(_Lenient):
    """``GET /v1/mdmServers/{id}/relationships/devices``: one page of device ids."""

    data: tuple[Linkage, ...] = ()
    meta: Meta | None = None


def next_cursor(meta: Meta | None) -> str | None:
    """The cursor of the next page, None on the last."""
    return meta.paging.nextCursor if meta is not None and meta.paging is not None else None
