"""``[providers.NAME]`` with ``kind = "jamf"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import Secret

DeviceClass = Literal["computers", "mobile"]
TokenPathChoice = Literal["auto", "/api/oauth/token", "/api/v1/oauth/token"]


class JamfSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "jamf"``.

    Give either `client_id` + `client_secret` (API roles and clients, recommended) or
    `username` + `password` (a Jamf Pro user; older servers).
    """

    kind: Literal["jamf"]
    url: str
    client_id: str | None = None
    client_secret: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    oauth_token_path: TokenPathChoice = "auto"  # noqa: S105 - a path choice, not a secret
    computers_api_version: Literal["auto", "v1", "v2", "v3", "v4"] = "auto"
    device_classes: Literal["computers", "mobile", "both"] = "both"
    classic_fallback: bool = False
    token_margin: float = Field(default=30.0, ge=0, description="renew this long before expiry")
    department_ttl: float = Field(default=3600.0, ge=0, description="seconds a name is cached")
    page_size: int = Field(default=100, ge=1, le=2000)
    list_page_size: int = Field(
        default=500, ge=1, le=2000, description="devices per request when a sync lists Jamf"
    )

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        """https (plain http only on loopback, for a fake): credentials travel in these calls."""
        if not value.strip().lower().startswith(("http://", "https://")):
            raise ValueError("expected an https URL such as https://example.jamfcloud.com")
        return checked_url(value)

    @model_validator(mode="after")
    def _one_credential(self) -> JamfSettings:
        oauth = self.client_id is not None or self.client_secret is not None
        user = self.username is not None or self.password is not None
        if oauth == user:
            raise ValueError("give either client_id and client_secret, or username and password")
        if oauth and (self.client_id is None or self.client_secret is None):
            raise ValueError("client_id and client_secret go together")
        if user and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def classes(self) -> tuple[DeviceClass, ...]:
        """The device classes to search, in a stable order."""
        if self.device_classes == "both":
            return ("computers", "mobile")
        return (self.device_classes,)

    @property
    def auth_kind(self) -> Literal["oauth", "user"]:
        """Which credential the settings give."""
        return "oauth" if self.client_id is not None else "user"
