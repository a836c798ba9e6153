"""Apple Business Manager API tokens: a client assertion (ES256 JWT) for a bearer token.

The API account's EC P-256 key signs a short-lived assertion (``iss`` = ``sub`` = client id,
``aud`` = Apple's v2 token URL, a fresh ``jti``); Apple trades it for an access token valid an
hour (``grant_type=client_credentials`` with ``client_assertion``, ``scope=business.api``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from providers._http import AssertionTokenIssuer
from providers.abm._settings import AUDIENCE, AbmSettings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 600
"""Seconds an assertion is valid: Apple allows 180 days, one token request needs minutes."""


@dataclass(frozen=True, slots=True)
class ApiAccountKey:
    """The API account's signing key.

    Attributes:
        key_id: The ``kid`` Apple Business Manager shows for the key.
        key: The P-256 private key; kept out of repr.
    """

    key_id: str
    key: ECKey = field(repr=False)

    @classmethod
    def load(cls, path: Path, key_id: str) -> ApiAccountKey:
        """Read the PEM key; raise `ValueError` with a reason that quotes no key material."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read private_key {path}: {exc.strerror}") from None
        try:
            private = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError):
            raise ValueError(f"{path} is not an unencrypted PEM private key") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
            raise ValueError(f"{path} is not an EC P-256 key (Apple issues ES256 keys)")
        return cls(key_id, ECKey.import_key(private))

    def assertion(self, client_id: str, now: datetime) -> str:
        """A signed client assertion for one token request."""
        issued = int(now.timestamp())
        header = {"alg": "ES256", "typ": "JWT", "kid": self.key_id}
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": AUDIENCE,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])


class AbmTokens(AssertionTokenIssuer[AbmSettings, ApiAccountKey]):
    """Access tokens for the API account, from Apple's token endpoint."""

    vendor = "Apple"
    what = "the API account (client_id, key_id or private_key)"

    def load_key(self) -> ApiAccountKey:
        """The API account's key, from `private_key`."""
        return ApiAccountKey.load(self.settings.private_key, self.settings.key_id)

    async def form(self) -> dict[str, str]:
        """Client credentials with a fresh client assertion."""
        key = await self.signing_key()
        client_id = self.settings.client_id
        return {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.assertion(client_id, self.now()),
            "scope": self.settings.scope,
        }
