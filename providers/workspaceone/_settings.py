"""``[providers.NAME]`` with ``kind = "workspaceone"``: a Workspace ONE UEM API server."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import Secret

REGIONAL_TOKEN_URLS = {
    "na": "https://na.uemauth.workspaceone.com/connect/token",
    "emea": "https://emea.uemauth.workspaceone.com/connect/token",
    "apac": "https://apac.uemauth.workspaceone.com/connect/token",
    "uat": "https://uat.uemauth.workspaceone.com/connect/token",
}
"""Omnissa's token URLs per SaaS region ("Using UEM Functionality With a REST API")."""


class WorkspaceOneSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "workspaceone"``.

    Give either an OAuth client (`client_id`, `client_secret` and the region's `token_url`,
    SaaS only) or an admin's `username` and `password` with the `tenant_code` (API key).
    """

    matches_mac_provisioning_udid: ClassVar[bool] = False
    """The device API knows the MDM UDID only, not a Mac's provisioning UDID."""

    kind: Literal["workspaceone"]
    group_switches: ClassVar[dict[str, str]] = {"smart_groups": "smart groups"}
    """Keys that turn a source of groups off (`connector.checks.unread_group_warnings`)."""
    url: str = Field(description="the REST API server, e.g. https://as1506.awmdm.com")
    token_url: str | None = Field(
        default=None,
        description='OAuth token URL, or a region: "na", "emea", "apac", "uat"',
    )
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._@-]{1,256}$")
    client_secret: Secret | None = None
    username: str | None = Field(default=None, min_length=1)
    password: Secret | None = None
    tenant_code: Secret | None = Field(
        default=None, description="the aw-tenant-code API key (required with username)"
    )
    smart_groups: bool = Field(default=True, description="add the device's smart groups")
    organization_group: bool = Field(
        default=True, description='add the organisation group as group "og:<name>"'
    )
    token_margin: float = Field(default=60.0, ge=0, description="renew this long before expiry")
    page_size: int = Field(default=500, ge=1, le=500, description="devices per listing page")

    @field_validator("url")
    @classmethod
    def _origin(cls, value: str) -> str:
        """The API server's origin (https; plain http only on loopback, for a fake)."""
        return checked_url(value, origin_only=True)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return checked_url(REGIONAL_TOKEN_URLS.get(value.strip().lower(), value))

    @model_validator(mode="after")
    def _one_credential(self) -> WorkspaceOneSettings:
        oauth = self.client_id is not None or self.client_secret is not None
        basic = self.username is not None or self.password is not None
        if oauth == basic:
            raise ValueError("give either client_id and client_secret, or username and password")
        if oauth and (self.client_id is None or self.client_secret is None):
            raise ValueError("client_id and client_secret go together")
        if oauth and self.token_url is None:
            raise ValueError('an OAuth client needs token_url (or a region: "na", "emea", ...)')
        if basic and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        if basic and self.tenant_code is None:
            raise ValueError("basic authentication needs tenant_code (the aw-tenant-code key)")
        return self

    @property
    def auth_kind(self) -> Literal["oauth", "basic"]:
        """Which credential the settings give."""
        return "oauth" if self.client_id is not None else "basic"
