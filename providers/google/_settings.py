"""``[providers.NAME]`` with ``kind = "google"``: Google endpoint management via the Admin SDK."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import ConfigPath

SCOPE = "https://www.googleapis.com/auth/admin.directory.device.mobile.readonly"
"""The one OAuth scope the provider asks for (read mobile devices, nothing else)."""


class GoogleSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "google"``.

    A service account with domain-wide delegation acts as `subject`, an administrator whose
    role may read mobile devices; the JSON key file stays on disk and is read at start.
    """

    matches_mac_provisioning_udid: ClassVar[bool] = False
    """Google's mobile device resource carries no UDID at all."""

    kind: Literal["google"]
    service_account_file: ConfigPath = Field(description="the service account's JSON key")
    subject: str = Field(
        pattern=r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}$",
        description="the administrator the service account acts as (domain-wide delegation)",
    )
    customer_id: str = Field(
        default="my_customer",
        pattern=r"^[A-Za-z0-9_]{1,64}$",
        description='the Google Workspace customer id, or "my_customer"',
    )
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
    api_url: str = "https://admin.googleapis.com"
    managed_types: tuple[str, ...] = Field(
        default=("IOS_SYNC", "ANDROID"),
        min_length=1,
        description="device types that count as managed when approved (not Exchange sync)",
    )
    token_margin: float = Field(default=60.0, ge=0, description="renew this long before expiry")
    page_size: int = Field(default=100, ge=1, le=100, description="devices per page (max 100)")
    max_pages: int = Field(
        default=3, ge=1, le=20, description="pages of serial matches before failing closed"
    )

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return checked_url(value)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return checked_url(value, origin_only=True)

    @field_validator("managed_types")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().upper() for v in value)

    def preflight(self) -> list[str]:
        """Problems found before start: a key file or CA bundle that does not exist."""
        problems = super().preflight()
        if not self.service_account_file.is_file():
            problems.append(f"service_account_file: no such file: {self.service_account_file}")
        return problems

    @property
    def auth_kind(self) -> Literal["service_account"]:
        """The only credential this kind takes."""
        return "service_account"
