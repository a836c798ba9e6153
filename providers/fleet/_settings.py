"""``[providers.NAME]`` with ``kind = "fleet"``: the Fleet server URL and an API token."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import Secret


class FleetSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "fleet"``.

    `api_token` is the token of a Fleet user, best an API-only user with the global Observer
    role (``fleetctl user create --api-only --global-role observer``).
    """

    kind: Literal["fleet"]
    group_switches: ClassVar[dict[str, str]] = {
        "policy_groups": "policy results (fleet-policy-failing:NAME and the aggregates)",
        "idp_groups": "the end user's identity-provider groups",
    }
    """Keys that turn a source of groups off (`connector.checks.unread_group_warnings`)."""
    url: str
    api_token: Secret
    policy_groups: bool = Field(
        default=True, description="report policy results as groups (fleet-policy-failing:NAME)"
    )
    idp_groups: bool = Field(
        default=True, description="add the end user's identity-provider groups"
    )
    page_size: int = Field(default=100, ge=1, le=1000, description="hosts per page when listing")

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        """https (plain http only on loopback, for a fake): the token travels in every call."""
        return checked_url(value)
