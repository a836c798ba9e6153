"""One-time SCEP challenges handed to an MDM, bound to the device it names.

The MDM (Jamf Pro's and Fleet's "challenge URL") POSTs JSON with HTTP Basic credentials and
reads the raw body of a 200 as the challenge::

    {"webhook": {"id": 1, "webhookEvent": "SCEPChallenge", "eventTimestamp": ..., "name": ...},
     "event": {"scepServerUrl": "...", "payloadIdentifier": "...",
               "payloadTypes": ["com.apple.security.scep"],
               "device": {"serialNumber": "C02...", "uuid": "..."}}}

The challenge is bound to ``event.device.serialNumber``, or to ``uuid`` when there is no serial;
the SCEP CSR's subject common name must name the same device. The store keeps only the
challenge's SHA-256, so a database read gives no usable challenge, and any replica can check it.

A request naming no device is what an MDM sends to test its configuration (Fleet's current
source sends no device at all). With ``unbound = "probe"`` it gets HTTP 200 and a ``probe-``
challenge that is never stored and so can never be used; with ``unbound = "csr"`` a real
one-time challenge whose device is whichever the CSR then names.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets

import structlog
from pydantic import BaseModel, ConfigDict, Field

from connector.errors import AuthError, ConnectorError, PayloadError
from connector.scep._settings import ChallengeValidatorSettings
from connector.scep._validators import UNBOUND, challenge_digest
from connector.settings import WebhookSettings
from connector.store import Challenge, Store, StoreError
from providers.identifiers import IdentifierShapeError, classify

log = structlog.get_logger("connector.scep")

PROBE_PREFIX = "probe-"
"""Starts every challenge that answers a request naming no device; none is ever stored."""
WEBHOOK_EVENT = "SCEPChallenge"


class ChallengeStoreUnavailable(ConnectorError):
    """When the store cannot record a new challenge (the MDM should try again)."""

    status = 503
    code = "challenge-store-unavailable"


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class MdmDevice(_Lenient):
    """``event.device``: whom the challenge is for."""

    serial_number: str | None = Field(default=None, alias="serialNumber", max_length=80)
    uuid: str | None = Field(default=None, max_length=80)

    @property
    def identity(self) -> str | None:
        """The serial number, else the UUID."""
        return self.serial_number or self.uuid or None


class MdmEvent(_Lenient):
    """``event``: the SCEP payload the challenge goes into."""

    device: MdmDevice | None = None


class MdmHook(_Lenient):
    """``webhook``: which event this is."""

    webhook_event: str = Field(alias="webhookEvent")


class MdmChallengeCall(_Lenient):
    """The body an MDM POSTs to its challenge URL."""

    webhook: MdmHook
    event: MdmEvent = Field(default_factory=MdmEvent)


class ChallengeIssuer:
    """Hands out challenges for one SCEPCHALLENGE webhook's ``challenge`` validator."""

    def __init__(
        self, hook: WebhookSettings, settings: ChallengeValidatorSettings, store: Store
    ) -> None:
        self.webhook = hook.name
        self._kinds = hook.identifier_kinds
        self._settings = settings
        self._store = store
        self._expected = f"{settings.username}:{settings.password.get_secret_value()}".encode()

    def check_credentials(self, authorization: bytes) -> None:
        """Raise `AuthError` unless `authorization` is Basic with the configured pair."""
        scheme, _, encoded = authorization.partition(b" ")
        try:
            decoded = base64.b64decode(encoded, validate=True) if scheme == b"Basic" else b""
        except binascii.Error:
            decoded = b""
        if not hmac.compare_digest(decoded, self._expected):
            raise AuthError("missing or wrong basic credentials")

    async def issue(self, call: MdmChallengeCall, now: float) -> str:
        """A new challenge for the device `call` names (or a probe); raises `ConnectorError`."""
        if call.webhook.webhook_event != WEBHOOK_EVENT:
            raise PayloadError(f"webhookEvent must be {WEBHOOK_EVENT}")
        identity = call.event.device.identity if call.event.device else None
        if identity is None and self._settings.unbound == "probe":
            log.info("scep.challenge_probe", webhook=self.webhook)
            return PROBE_PREFIX + secrets.token_urlsafe(32)
        if identity is not None:
            try:
                classify(identity, self._kinds)
            except IdentifierShapeError as exc:
                raise PayloadError(f"event.device: {exc}") from None
        challenge = secrets.token_urlsafe(32)
        record = Challenge(
            digest=challenge_digest(challenge),
            webhook=self.webhook,
            identity=identity or UNBOUND,
            expires_at=now + self._settings.ttl,
        )
        try:
            async with asyncio.timeout(self._settings.timeout):
                await self._store.add_challenge(record)
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self._settings.timeout:g}s"
            log.error("scep.challenge_store_unavailable", webhook=self.webhook, error=reason)
            raise ChallengeStoreUnavailable(
                "the challenge could not be stored; try again"
            ) from None
        log.info(
            "scep.challenge_issued",
            webhook=self.webhook,
            device=identity,
            bound=identity is not None,
            ttl=self._settings.ttl,
        )
        return challenge
