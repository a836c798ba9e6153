"""``[providers.NAME]`` with ``kind = "abm"``: an Apple Business (or School) Manager API account."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import ConfigPath

TOKEN_URL = "https://account.apple.com/auth/oauth2/token"  # noqa: S105 - a URL, not a secret
AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
"""The client assertion's ``aud``: Apple names the v2 path although the POST goes to the other."""
API_URLS = {
    "business.api": "https://api-business.apple.com",
    "school.api": "https://api-school.apple.com",
}


class AbmSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "abm"``.

    `mdm_servers` names the device management services (names or ids, as Apple Business Manager
    shows them) that count as "ours": a device assigned to one of them is `managed`.
    """

    matches_mac_provisioning_udid: ClassVar[bool] = False
    """Apple Business Manager knows serial numbers only, no UDIDs."""

    kind: Literal["abm"]
    client_id: str = Field(
        pattern=r"^(BUSINESSAPI|SCHOOLAPI)\.[A-Za-z0-9-]{1,64}$",
        description="the API account's client id, BUSINESSAPI.<uuid>",
    )
    key_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$", description="the private key's id")
    private_key: ConfigPath = Field(description="the API account's EC P-256 key (PEM)")
    mdm_servers: tuple[str, ...] = Field(
        default=(),
        description="device management services (names or ids) whose devices are managed",
    )
    token_url: str = TOKEN_URL
    api_url: str | None = Field(
        default=None, description="default: api-business.apple.com (api-school for SCHOOLAPI)"
    )
    token_margin: float = Field(default=60.0, ge=0, description="renew this long before expiry")
    page_size: int = Field(default=100, ge=1, le=1000, description="devices per listing page")

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return checked_url(value)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_url(value, origin_only=True)

    @field_validator("mdm_servers")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(v.strip() for v in value)
        if any(not n for n in names):
            raise ValueError("an mdm_servers entry is empty")
        return names

    def preflight(self) -> list[str]:
        """Problems found before start: a private key or CA bundle that does not exist."""
        problems = super().preflight()
        if not self.private_key.is_file():
            problems.append(f"private_key: no such file: {self.private_key}")
        return problems

    @property
    def scope(self) -> Literal["business.api", "school.api"]:
        """The OAuth scope of the account: Business or School Manager."""
        return "business.api" if self.client_id.startswith("BUSINESSAPI.") else "school.api"

    @property
    def api_base(self) -> str:
        """The API origin: `api_url`, or Apple's host for the account's scope."""
        return self.api_url or API_URLS[self.scope]

    @property
    def auth_kind(self) -> Literal["client_assertion"]:
        """The only credential this kind takes."""
        return "client_assertion"
