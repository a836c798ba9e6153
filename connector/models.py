"""step-ca's webhook request body and our reply, as pydantic models.

Only the fields a decision reads are typed; unknown fields are ignored, because step-ca adds
fields between releases (`provisionerName` on master, for one) and a newer CA must not break us.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NANOS = re.compile(r"(\.\d{6})\d+")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class AttestationData(_Wire):
    """What step-ca learned from the device attestation."""

    permanent_identifier: str | None = Field(default=None, alias="permanentIdentifier")


class Subject(_Wire):
    """The part of an x509util subject we compare."""

    common_name: str | None = Field(default=None, alias="commonName")


class CertificateRequest(_Wire):
    """`x509CertificateRequest`: the (canonicalised) CSR on ENRICHING calls."""

    subject: Subject = Field(default_factory=Subject)
    raw: str | None = None


class Certificate(_Wire):
    """`x509Certificate`: the rendered certificate on AUTHORIZING calls."""

    subject: Subject = Field(default_factory=Subject)
    sans: list[dict[str, Any]] | None = None


class WebhookRequest(_Wire):
    """The JSON body step-ca POSTs to an AUTHORIZING or ENRICHING webhook."""

    timestamp: datetime
    provisioner_name: str | None = Field(default=None, alias="provisionerName")
    attestation_data: AttestationData | None = Field(default=None, alias="attestationData")
    x509_certificate_request: CertificateRequest | None = Field(
        default=None, alias="x509CertificateRequest"
    )
    x509_certificate: Certificate | None = Field(default=None, alias="x509Certificate")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339_nano(cls, value: Any) -> Any:
        # Go writes RFC3339Nano (9 fraction digits); Python keeps microseconds.
        return _NANOS.sub(r"\1", value) if isinstance(value, str) else value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp has no time zone")
        return value

    @property
    def permanent_identifier(self) -> str | None:
        """The attested identifier, if the order carried one."""
        return self.attestation_data.permanent_identifier if self.attestation_data else None


class ReplyError(BaseModel):
    """`error` in a reply; the ACME client sees it as `urn:smallstep:acme:error:<code>`."""

    code: str
    message: str


class WebhookReply(BaseModel):
    """What we answer, always with HTTP 200 once the request is authentic."""

    allow: bool
    data: dict[str, Any] | None = None
    error: ReplyError | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form, without null members."""
        return self.model_dump(exclude_none=True)
