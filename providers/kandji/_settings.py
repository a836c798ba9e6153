"""``[providers.NAME]`` with ``kind = "kandji"``: the tenant's API host and an API token."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from providers._http import UpstreamSettings, checked_url
from providers.config_types import Secret

MAX_PAGE_SIZE = 300
"""Kandji's hard upper limit of devices per ``GET /api/v1/devices`` answer."""


class KandjiSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "kandji"``.

    `url` is the API URL shown under Settings > Access: ``https://SUBDOMAIN.api.kandji.io``
    (US) or ``https://SUBDOMAIN.api.eu.kandji.io`` (EU).
    """

    kind: Literal["kandji"]
    url: str
    api_token: Secret
    fetch_details: bool = Field(
        default=True,
        description="read the device details (UDID, supervision): one more request per device",
    )
    page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("url")
    @classmethod
    def _origin(cls, value: str) -> str:
        """https (plain http only on loopback, for a fake): the token travels in every call."""
        return checked_url(value, origin_only=True)
