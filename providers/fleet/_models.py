"""Pydantic models of the Fleet JSON the provider reads, and nothing more.

A host comes wrapped as ``{"host": {...}}``; ``mdm`` is ``null`` for servers; a policy's
``response`` is ``"pass"``, ``"fail"`` or ``""`` (no result yet). Unknown keys are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


def _list_or_none(value: Any) -> Any:
    return value if isinstance(value, list) or value is None else None


class Label(_Lenient):
    id: str | None = None
    name: str | None = None
    label_membership_type: str | None = None


class HostPolicy(_Lenient):
    id: str | None = None
    name: str | None = None
    critical: bool | None = None
    response: str | None = None


class HostMdm(_Lenient):
    enrollment_status: str | None = None
    name: str | None = None
    server_url: str | None = None


class OtherEmail(_Lenient):
    email: str | None = None
    source: str | None = None


class EndUser(_Lenient):
    idp_id: str | None = None
    idp_username: str | None = None
    idp_full_name: str | None = None
    idp_department: str | None = None
    idp_groups: list[str] | None = None
    other_emails: list[OtherEmail] | None = None


class Host(_Lenient):
    """One host of ``GET /api/v1/fleet/hosts/identifier/{identifier}`` or ``/hosts/{id}``."""

    id: str = Field(min_length=1)
    uuid: str | None = None
    hostname: str | None = None
    display_name: str | None = None
    computer_name: str | None = None
    hardware_serial: str | None = None
    hardware_model: str | None = None
    platform: str | None = None
    os_version: str | None = None
    seen_time: str | None = None
    detail_updated_at: str | None = None
    team_id: str | None = None
    team_name: str | None = None
    mdm: HostMdm | None = None
    labels: Annotated[list[Label] | None, BeforeValidator(_list_or_none)] = None
    policies: Annotated[list[HostPolicy] | None, BeforeValidator(_list_or_none)] = None
    end_users: Annotated[list[EndUser] | None, BeforeValidator(_list_or_none)] = None


class HostAnswer(_Lenient):
    """The ``{"host": ...}`` envelope."""

    host: Host


class HostSummary(_Lenient):
    id: str = Field(min_length=1)


class HostPage(_Lenient):
    """``GET /api/v1/fleet/hosts``: the ids are all the listing needs from it."""

    hosts: list[HostSummary]


class Me(_Lenient):
    """``GET /api/v1/fleet/me``: the user the token belongs to (only its presence matters)."""

    user: dict[str, Any]
