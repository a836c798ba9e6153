"""Entra app-only tokens: a client secret, or a client assertion signed with a certificate."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import ValidationError

from providers._http import Token, TokenIssuer, UpstreamClient, blank_secrets, read_model
from providers.base import ProviderError, ProviderNotReady
from providers.intune._models import TokenAnswer, TokenErrorAnswer
from providers.intune._settings import IntuneSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.intune")

TOKEN_MARGIN = 120.0
"""Seconds before expiry at which a cached Graph token is replaced."""

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TOKEN_ROUTE = "/{tenant}/oauth2/v2.0/token"  # noqa: S105 - a route template, not a secret


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """An RSA key and its certificate's SHA-256 thumbprint, for signed client assertions.

    Attributes:
        key: The private key as a joserfc key.
        thumbprint: base64url SHA-256 of the certificate DER (the ``x5t#S256`` header).
    """

    key: RSAKey
    thumbprint: str

    @classmethod
    def load(
        cls, certificate: Path, private_key: Path, password: str | None
    ) -> CertificateCredential:
        """Read both PEM files; raise `ValueError` with a secret-free reason."""
        try:
            cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read certificate {certificate}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"{certificate} is not a PEM certificate") from None
        try:
            raw = private_key.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read private key {private_key}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(
                raw, password=password.encode() if password is not None else None
            )
        except (ValueError, TypeError):
            raise ValueError(
                f"{private_key} is not a PEM private key (or the password is wrong)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("Entra certificate credentials need an RSA key")  # noqa: TRY004 - one error type for config problems
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        if key.public_key().public_bytes(pem, spki) != cert.public_key().public_bytes(pem, spki):
            raise ValueError("private key does not match the certificate")
        digest = cert.fingerprint(hashes.SHA256())
        thumbprint = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return cls(key=RSAKey.import_key(key), thumbprint=thumbprint)

    def assertion(self, client_id: str, audience: str, now: datetime) -> str:
        """A short-lived PS256 JWT proving possession of the key (Entra's client assertion)."""
        issued = int(now.timestamp())
        header = {"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint}
        claims = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 600,
        }
        return jwt.encode(header, claims, self.key, algorithms=["PS256"])


def describe_token_error(response: httpx.Response, *, redact: str | None = None) -> str:
    """Entra's error body as one readable line without trace ids (and never the secret)."""
    try:
        body = TokenErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        return f"HTTP {response.status_code}"
    secrets = (redact,) if redact else ()
    error = blank_secrets(body.error, secrets)
    description = blank_secrets(body.error_description, secrets)
    description = description.split("\r\n")[0].split("\n")[0]
    description = description.split(" Trace ID:")[0].strip()
    text = f"{error}: {description}" if description else error
    return text[:300]


class IntuneTokens(TokenIssuer):
    """Fetches app-only tokens from the tenant's token endpoint into `cache`: for Graph, or
    for another resource's `scope` (the Intune API, for SCEP validation)."""

    def __init__(
        self,
        name: str,
        settings: IntuneSettings,
        login: UpstreamClient,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        scope: str | None = None,
    ) -> None:
        super().__init__(name, margin=TOKEN_MARGIN, on_state=on_state, hooks=hooks, clock=clock)
        self._name = name
        self._settings = settings
        self._login = login
        self._now = now
        self._scope = scope or settings.scope
        self._credential: CertificateCredential | None = None

    async def _fetch(self) -> Token:
        settings = self._settings
        form = {
            "client_id": settings.client_id,
            "scope": self._scope,
            "grant_type": "client_credentials",
        }
        secret = settings.client_secret.get_secret_value() if settings.client_secret else None
        if secret is not None:
            form["client_secret"] = secret
            credential = "secret"
        else:
            cert = await self._certificate()
            form["client_assertion_type"] = _ASSERTION_TYPE
            form["client_assertion"] = cert.assertion(
                settings.client_id, settings.token_url, self._now()
            )
            credential = "certificate"
        path = f"/{settings.tenant_id}/oauth2/v2.0/token"
        response = await self._login.request("POST", path, route=_TOKEN_ROUTE, data=form)
        if response.status_code != 200:
            reason = describe_token_error(response, redact=secret)
            self.refused(_TOKEN_ROUTE, response.status_code, reason, reason)
            error = ProviderNotReady if response.status_code in (400, 401) else ProviderError
            raise error(self._name, f"Entra refused the token request ({reason})")
        answer = read_model(self._name, response, TokenAnswer, where="Entra token answer")
        return self.granted(answer.access_token, answer.expires_in, credential=credential)

    async def _certificate(self) -> CertificateCredential:
        if self._credential is None:
            settings = self._settings
            assert settings.certificate is not None  # noqa: S101 - guaranteed by IntuneSettings
            assert settings.private_key is not None  # noqa: S101 - same
            password = settings.private_key_password
            try:
                self._credential = await asyncio.to_thread(
                    CertificateCredential.load,
                    settings.certificate,
                    settings.private_key,
                    password.get_secret_value() if password else None,
                )
            except ValueError as exc:
                log.debug("provider.credential_invalid", provider=self._name, error=str(exc))
                raise ProviderNotReady(self._name, str(exc)) from None
        return self._credential
