"""Pydantic models of the Microsoft Graph and Entra token answers the Intune provider reads.

Only the fields the provider uses are declared; everything else Graph sends is ignored, so a new
Graph property never breaks a lookup. Field names follow Graph's camelCase through aliases.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from providers._records import utc


class _GraphModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class TokenAnswer(_GraphModel):
    """A successful client-credentials answer (the token itself stays out of repr)."""

    access_token: str = Field(alias="access_token", repr=False, min_length=1)
    expires_in: int = Field(alias="expires_in", gt=0)
    token_type: str = Field(default="Bearer", alias="token_type")


class TokenErrorAnswer(_GraphModel):
    """Entra's OAuth error body: ``error``, ``error_description`` (AADSTS text), codes."""

    error: str = "unknown_error"
    error_description: str = Field(default="", alias="error_description")
    error_codes: tuple[int, ...] = Field(default=(), alias="error_codes")


class GraphErrorDetail(_GraphModel):
    """The ``error`` object of a Graph error body."""

    code: str = "unknown"
    message: str = ""
    inner_error: dict[str, object] = Field(default_factory=dict, alias="innerError")


class GraphErrorAnswer(_GraphModel):
    """``{"error": {"code", "message", "innerError": {"request-id", ...}}}``."""

    error: GraphErrorDetail = Field(default_factory=GraphErrorDetail)


UNSET_DATE = date(1, 1, 1)
"""Graph writes never-set dates as ``0001-01-01T00:00:00Z``."""


class ManagedDevice(_GraphModel):
    """One ``microsoft.graph.managedDevice`` as far as the provider reads it."""

    id: str
    user_id: str | None = None
    device_name: str | None = None
    serial_number: str | None = None
    udid: str | None = None
    operating_system: str | None = None
    os_version: str | None = None
    model: str | None = None
    compliance_state: str | None = None
    management_agent: str | None = None
    managed_device_owner_type: str | None = None
    last_sync_date_time: datetime | None = None
    azure_ad_device_id: str | None = Field(default=None, alias="azureADDeviceId")
    user_principal_name: str | None = None
    email_address: str | None = None
    user_display_name: str | None = None
    is_supervised: bool | None = None
    jail_broken: str | None = None

    @field_validator("last_sync_date_time")
    @classmethod
    def _unset_is_none(cls, value: datetime | None) -> datetime | None:
        if value is None or value.date() == UNSET_DATE:
            return None
        return utc(value)  # Graph writes Z; a time without an offset is UTC too


class ManagedDevicePage(_GraphModel):
    """A page of managed devices."""

    value: tuple[ManagedDevice, ...] = ()
    next_link: str | None = Field(default=None, alias="@odata.nextLink")


class ManagedDeviceUdid(_GraphModel):
    """``GET managedDevices/{id}?$select=id,udid``: the only place Graph reveals a UDID."""

    id: str
    udid: str | None = None


class GraphUser(_GraphModel):
    """An Entra user with the properties enrichment needs (department is not a default one)."""

    id: str
    display_name: str | None = None
    user_principal_name: str | None = None
    mail: str | None = None
    department: str | None = None
    job_title: str | None = None


class DirectoryGroup(_GraphModel):
    """A group from ``transitiveMemberOf/microsoft.graph.group``."""

    id: str
    display_name: str | None = None


class GroupPage(_GraphModel):
    """A page of groups; ``@odata.nextLink`` is followed verbatim."""

    value: tuple[DirectoryGroup, ...] = ()
    next_link: str | None = Field(default=None, alias="@odata.nextLink")


class EntraDevice(_GraphModel):
    """An Entra ``device``: its object ``id`` differs from the ``deviceId`` Intune reports."""

    id: str
    device_id: str | None = None


class EntraDevicePage(_GraphModel):
    """``GET /devices?$filter=deviceId eq '...'``."""

    value: tuple[EntraDevice, ...] = ()


# --- sync mode: bulk listings and JSON batches ---------------------------------------------------


class UserPage(_GraphModel):
    """A page of ``GET /users?$select=...``."""

    value: tuple[GraphUser, ...] = ()
    next_link: str | None = Field(default=None, alias="@odata.nextLink")


class EntraDeviceList(_GraphModel):
    """A page of ``GET /devices?$select=id,deviceId``."""

    value: tuple[EntraDevice, ...] = ()
    next_link: str | None = Field(default=None, alias="@odata.nextLink")


class BatchItem(_GraphModel):
    """One answer inside a ``$batch`` reply; its body is validated by whoever asked."""

    id: str
    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: object = None


class BatchAnswer(_GraphModel):
    """``POST /$batch``: ``{"responses": [...]}``, in any order."""

    responses: tuple[BatchItem, ...] = ()
