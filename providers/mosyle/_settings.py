"""``[providers.NAME]`` with ``kind = "mosyle"``: Mosyle Manager's API token and an admin login."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import Secret

OsFamily = Literal["mac", "ios", "tvos", "visionos"]


class MosyleSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "mosyle"``.

    Mosyle's API needs both the API token (``access_token``, sent in every request body) and
    an administrator's ``email`` and ``password`` (exchanged for a JWT at ``/login``).
    """

    kind: Literal["mosyle"]
    group_switches: ClassVar[dict[str, str]] = {"device_groups": "device groups"}
    """Keys that turn a source of groups off (`connector.checks.unread_group_warnings`)."""
    url: str = "https://managerapi.mosyle.com/v2"
    access_token: Secret
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    password: Secret
    os_families: tuple[OsFamily, ...] = Field(
        default=("mac", "ios", "tvos", "visionos"),
        min_length=1,
        description="device families searched (Mosyle lists one family per request)",
    )
    enrolled_statuses: frozenset[str] = Field(
        default=frozenset({"IN"}),
        min_length=1,
        description="values of a device's `status` that mean enrolled (managed)",
    )
    device_groups: bool = Field(default=True, description="add the device's device groups")
    group_ttl: float = Field(
        default=300.0, ge=0, description="seconds the device-group membership is reused"
    )
    max_group_pages: int = Field(default=20, ge=1, le=1000)
    token_margin: float = Field(default=300.0, ge=0, description="renew this long before expiry")

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        """https (plain http only on loopback, for a fake): credentials travel in these calls."""
        return checked_url(value)

    @field_validator("os_families")
    @classmethod
    def _unique(cls, value: tuple[OsFamily, ...]) -> tuple[OsFamily, ...]:
        return tuple(dict.fromkeys(value))
