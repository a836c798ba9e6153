"""``[webhooks.validator]``: how a SCEPCHALLENGE webhook decides whether a challenge is good.

Two kinds (the table's ``kind``):

- ``intune``: Microsoft Intune's SCEP request validation service judges the CSR and its
  Intune-made challenge, with the app registration of a configured ``kind = "intune"``
  provider. On a NOTIFYING webhook the same table forwards issuance results to Intune.
- ``challenge``: the connector hands out one-time challenges, bound to the device the MDM
  names, at ``path`` (HTTP Basic), and the webhook accepts each once, for that device only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.config_types import Secret

DEFAULT_INTUNE_RESOURCE = "https://api.manage.microsoft.com/"
"""The Intune API resource; Microsoft's own client asks for the scope resource + "/.default"."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntuneValidatorSettings(_Frozen):
    """``kind = "intune"``: ask Intune's ScepRequestValidationFEService.

    Attributes:
        provider: A ``[providers.NAME]`` of kind intune whose app registration signs in (it
            needs the Intune API permission ``scep_challenge_provider`` and may read Graph's
            service principal endpoints).
        intune_resource: The Intune API resource for the token (scope = resource + "/.default").
        caller_info: Free text Intune records as the caller (``callerInfo``).
        identity: ``common_name``: the CSR's common name, which Intune checked against its
            profile, names the device for the posture policy; ``none``: Intune's verdict
            alone, and the webhook's ``on_missing_identifier`` decides (set it to allow).
        timeout: Seconds for one validation, discovery and tokens included.
        notify_timeout: Seconds a background success/failure notification may take.
    """

    kind: Literal["intune"]
    provider: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    intune_resource: str = DEFAULT_INTUNE_RESOURCE
    caller_info: str = Field(default="posture-connector", min_length=1, max_length=200)
    identity: Literal["common_name", "none"] = "common_name"
    timeout: float = Field(default=4.0, gt=0, le=6)
    notify_timeout: float = Field(default=30.0, gt=0, le=300)

    @field_validator("intune_resource")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://") or any(c.isspace() for c in value):
            raise ValueError("expected an https:// resource URI")
        return value

    @property
    def scope(self) -> str:
        """The client-credentials scope for the Intune API (double slash as Microsoft writes)."""
        return f"{self.intune_resource}/.default"


class ChallengeValidatorSettings(_Frozen):
    """``kind = "challenge"``: one-time challenges the MDM fetches per device.

    Attributes:
        path: Where the MDM POSTs for a challenge (its "challenge URL").
        username: HTTP Basic user the MDM sends.
        password: HTTP Basic password (a secret).
        ttl: Seconds a challenge stays usable.
        unbound: What a request naming no device gets: ``probe`` (HTTP 200 and a challenge
            that can never be used: what an MDM's configuration test needs) or ``csr`` (a real
            one-time challenge for whichever device the CSR's common name then names; weaker).
        timeout: Seconds the store may take to issue or use up a challenge.
        csr_names: ``bound``: the CSR's subject alternative names may only name the device
            the challenge vouches for (step-ca's default template copies them into the
            certificate, so a device could otherwise ask for another device's or a user's
            name); ``any``: not checked, for a template that takes its names from the
            webhook's data instead of the CSR.
    """

    kind: Literal["challenge"]
    path: str = Field(pattern=r"^/[A-Za-z0-9._~/-]*$")
    username: str = Field(min_length=1, max_length=200)
    password: Secret
    ttl: float = Field(default=3600.0, ge=60, le=7 * 86400)
    unbound: Literal["probe", "csr"] = "probe"
    timeout: float = Field(default=3.0, gt=0, le=6)
    csr_names: Literal["bound", "any"] = "bound"

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("an HTTP Basic user name cannot contain ':'")
        return value

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: Secret) -> Secret:
        if len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (the MDM stores it, nobody types it)")
        return value


ValidatorSettings = Annotated[
    IntuneValidatorSettings | ChallengeValidatorSettings, Field(discriminator="kind")
]
"""A ``[webhooks.validator]`` table."""
