"""``[providers.NAME]`` with ``kind = "intune"``: an Entra app registration and Graph hosts."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import ConfigPath, Secret

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class IntuneSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "intune"``: an Entra app registration and Graph hosts.

    Give either ``client_secret`` or ``certificate`` plus ``private_key`` (PEM files).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["intune"]
    group_switches: ClassVar[dict[str, str]] = {
        "user_groups": "the user's Entra groups",
        "device_groups": "the Entra device's groups",
    }
    """Keys that turn a source of groups off (`connector.checks.unread_group_warnings`)."""
    tenant_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$",
        description="directory (tenant) id or a verified domain such as contoso.onmicrosoft.com",
    )
    client_id: str = Field(pattern=GUID.pattern, description="application (client) id")
    client_secret: Secret | None = None
    certificate: ConfigPath | None = Field(
        default=None, description="PEM certificate uploaded to the app registration"
    )
    private_key: ConfigPath | None = Field(default=None, description="PEM RSA private key")
    private_key_password: Secret | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_host: str = "https://graph.microsoft.com"
    user_groups: bool = Field(default=True, description="add the user's Entra groups")
    device_groups: bool = Field(default=False, description="add the Entra device's groups")
    fetch_udid: bool = Field(
        default=False, description="fetch the UDID by device id (one more request per lookup)"
    )
    udid_lookup: Literal["unsupported", "filter"] = "unsupported"
    max_group_pages: int = Field(default=10, ge=1, le=100)

    @field_validator("authority_host", "graph_host")
    @classmethod
    def _origin(cls, value: str) -> str:
        return checked_url(value, origin_only=True)

    @model_validator(mode="after")
    def _one_credential(self) -> IntuneSettings:
        has_cert = self.certificate is not None or self.private_key is not None
        if self.client_secret is not None and has_cert:
            raise ValueError("give client_secret or certificate + private_key, not both")
        if self.client_secret is None and not has_cert:
            raise ValueError("give client_secret, or certificate and private_key")
        if has_cert and (self.certificate is None or self.private_key is None):
            raise ValueError("certificate and private_key go together")
        return self

    def preflight(self) -> list[str]:
        """Problems found before start: a CA bundle, certificate or key file that is missing."""
        problems = super().preflight()
        for key, path in (("certificate", self.certificate), ("private_key", self.private_key)):
            if path is not None and not path.is_file():
                problems.append(f"{key}: no such file: {path}")
        return problems

    @property
    def token_url(self) -> str:
        """The tenant's v2.0 token endpoint (also the client assertion's audience)."""
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        """App-only scope: every permission granted to the app on this Graph host."""
        return f"{self.graph_host}/.default"
