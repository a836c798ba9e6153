"""Google service-account tokens with domain-wide delegation.

The provider signs a JWT (RS256) with the service account's key, naming the administrator it
acts as (``sub``) and the one read-only scope, and trades it at Google's token endpoint for an
access token (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import ValidationError

from providers._http import AssertionTokenIssuer
from providers.google._models import ServiceAccountKey
from providers.google._settings import SCOPE, GoogleSettings

log = structlog.get_logger("providers.google")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600
"""Seconds an assertion is valid; Google accepts at most an hour."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A service account's e-mail, key id and RSA key.

    Attributes:
        client_email: The service account (the assertion's issuer).
        key_id: The key's id (the JWT ``kid`` header).
        key: The private key; kept out of repr.
    """

    client_email: str
    key_id: str
    key: RSAKey = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        """Read a JSON key file; raise `ValueError` with a reason that quotes no key material."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read service_account_file {path}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"{path} is not JSON (a service account key file)") from None
        try:
            parsed = ServiceAccountKey.model_validate(document)
        except ValidationError:
            raise ValueError(
                f"{path} lacks type, client_email, private_key_id or private_key"
            ) from None
        if parsed.type != "service_account":
            raise ValueError(f"{path} is a {parsed.type!r} key, not a service_account key")
        try:
            private = serialization.load_pem_private_key(parsed.private_key.encode(), None)
        except (ValueError, TypeError):
            raise ValueError(f"{path}: private_key is not a PEM private key") from None
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: private_key is not an RSA key")  # noqa: TRY004 - config error
        return cls(parsed.client_email, parsed.private_key_id, RSAKey.import_key(private))

    def assertion(self, *, subject: str, audience: str, now: datetime) -> str:
        """The signed JWT Google exchanges for an access token acting as `subject`."""
        issued = int(now.timestamp())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key_id}
        claims = {
            "iss": self.client_email,
            "sub": subject,
            "scope": SCOPE,
            "aud": audience,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        return jwt.encode(header, claims, self.key, algorithms=["RS256"])


class GoogleTokens(AssertionTokenIssuer[GoogleSettings, ServiceAccount]):
    """Access tokens for the delegated administrator, from Google's token endpoint."""

    vendor = "Google"
    what = "the service account's delegation (subject, scope or key)"

    def load_key(self) -> ServiceAccount:
        """The service account, from `service_account_file`."""
        return ServiceAccount.load(self.settings.service_account_file)

    def key_loaded(self, key: ServiceAccount) -> None:
        """Log which service account signs (its e-mail, never the key)."""
        log.debug(
            "provider.credential_loaded", provider=self.provider, client_email=key.client_email
        )

    async def form(self) -> dict[str, str]:
        """The JWT-bearer grant with a fresh assertion."""
        account = await self.signing_key()
        assertion = account.assertion(
            subject=self.settings.subject, audience=self.settings.token_url, now=self.now()
        )
        return {"grant_type": GRANT_TYPE, "assertion": assertion}
