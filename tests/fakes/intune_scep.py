"""A fake of Intune's SCEP request validation service, and the Graph discovery that finds it.

It speaks the format of Microsoft's own client (microsoft/Intune-Resource-Access,
``src/CsrValidation``): ``POST {uri}/ScepActions/validateRequest`` (and ``successNotification``,
``failureNotification``) with ``Authorization: Bearer``, ``client-request-id`` (a UUID),
``api-version: 2018-02-20`` and JSON ``{"request": {...}}`` / ``{"notification": {...}}``;
it answers 200 ``{"code": ..., "errorDescription": ...}``. The service's ``uri`` is listed by
``GET /v1.0/servicePrincipals/appId=0000000a-0000-0000-c000-000000000000/endpoints`` on the fake
Graph (`install_discovery`), under ``providerName`` ``ScepRequestValidationFEService``.

Tokens are the fake Graph's: the service accepts only one granted for the Intune API scope
(``https://api.manage.microsoft.com//.default``), the discovery only one for Graph's.

Validation as Intune does it, reduced to what a test needs: `issue_challenge` makes an opaque
challenge for one expected subject CN; validateRequest decodes the CSR, reads its
challengePassword and answers ``CertificateRequestDecodingFailed``, ``ChallengePasswordMissing``,
``ChallengeDeserializationError`` (unknown challenge), ``ChallengeExpired``,
``SubjectNameMismatch`` or ``Success``. Switches: `down` (every call answers that status),
`delay` (seconds before answering), `code` (answer this code whatever the request),
`listed` (whether discovery lists the service at all).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import AttributeOID, NameOID

from tests.fakes.graph import FakeGraph, graph_error

INTUNE_APP_ID = "0000000a-0000-0000-c000-000000000000"
INTUNE_SCOPE = "https://api.manage.microsoft.com//.default"
SERVICE_PATH = (
    "/TrafficGateway/TrafficRoutingService/ScepRequestValidation/ScepRequestValidationFEService"
)
API_VERSION = "2018-02-20"
_SUCCESS_FIELDS = (
    "transactionId",
    "certificateRequest",
    "certificateThumbprint",
    "certificateSerialNumber",
    "certificateExpirationDateUtc",
    "issuingCertificateAuthority",
)


@dataclass(frozen=True, slots=True)
class IntuneChallenge:
    """A challenge Intune put into a SCEP profile.

    Attributes:
        subject: The CN the profile makes the device request (None: no CN).
        expires_at: Unix time after which Intune refuses it.
    """

    subject: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class ScepCall:
    """One call the service received.

    Attributes:
        action: ``validateRequest``, ``successNotification`` or ``failureNotification``.
        body: The inner object (``request`` or ``notification``).
        headers: ``client-request-id``, ``api-version`` and ``Content-Type`` as sent.
        code: What the fake answered (None: an HTTP error).
    """

    action: str
    body: dict[str, Any]
    headers: dict[str, str]
    code: str | None


@dataclass
class FakeIntuneScep:
    """The validation service's state, switches and call log (see the module docstring)."""

    graph: FakeGraph
    challenges: dict[str, IntuneChallenge] = field(default_factory=dict)
    calls: list[ScepCall] = field(default_factory=list)
    origin: str = ""
    down: int | None = None
    delay: float = 0.0
    code: str | None = None
    listed: bool = True
    discoveries: int = 0

    @property
    def uri(self) -> str:
        """The service address Graph lists (known once the fake listens)."""
        return self.origin + SERVICE_PATH

    def issue_challenge(self, subject: str | None, *, ttl: float = 3600.0) -> str:
        """An opaque challenge, as Intune encrypts one into a profile for this subject."""
        challenge = "intune:" + base64.b64encode(secrets.token_bytes(48)).decode()
        self.challenges[challenge] = IntuneChallenge(subject, time.time() + ttl)
        return challenge

    def calls_to(self, action: str) -> list[ScepCall]:
        """The logged calls of one action."""
        return [c for c in self.calls if c.action == action]


FAKE_SCEP: web.AppKey[FakeIntuneScep] = web.AppKey("fake_intune_scep", FakeIntuneScep)


def _answer(code: str, description: str = "") -> web.Response:
    return web.json_response({"code": code, "errorDescription": description})


def _bearer_scope(request: web.Request, graph: FakeGraph) -> str | None:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
    return graph.token_scopes.get(token) if token in graph.valid_tokens else None


def _validate(fake: FakeIntuneScep, inner: dict[str, Any]) -> tuple[str, str]:
    try:
        der = base64.b64decode(str(inner.get("certificateRequest", "")), validate=True)
        csr = x509.load_der_x509_csr(der)
    except (binascii.Error, ValueError):
        return "CertificateRequestDecodingFailed", "The CSR could not be decoded."
    try:
        raw = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return "ChallengePasswordMissing", "The CSR has no challenge password."
    challenge = raw.decode() if isinstance(raw, bytes) else str(raw)
    issued = fake.challenges.get(challenge)
    if issued is None:
        return "ChallengeDeserializationError", "The challenge is not one Intune issued."
    if issued.expires_at < time.time():
        return "ChallengeExpired", "The challenge has expired."
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != ([issued.subject] if issued.subject else []):
        return "SubjectNameMismatch", "The subject name differs from the profile's."
    return "Success", ""


def _notification_problem(action: str, inner: dict[str, Any]) -> str | None:
    required = (
        _SUCCESS_FIELDS
        if action == "successNotification"
        else (
            "transactionId",
            "certificateRequest",
            "errorDescription",
        )
    )
    missing = [name for name in required if not inner.get(name)]
    if missing:
        return f"missing {', '.join(missing)}"
    if action == "failureNotification" and not isinstance(inner.get("hResult"), int):
        return "hResult must be an integer"
    if len(str(inner.get("errorDescription", ""))) > 255:
        return "errorDescription longer than 255 characters"
    return None


async def scep_action(request: web.Request) -> web.Response:
    """``POST {SERVICE_PATH}/ScepActions/{action}``."""
    fake = request.app[FAKE_SCEP]
    action = request.match_info["action"]
    if fake.delay:
        await asyncio.sleep(fake.delay)
    headers = {
        name: request.headers.get(name, "")
        for name in ("client-request-id", "api-version", "Content-Type")
    }
    try:
        document = await request.json()
    except ValueError:
        document = None
    wrapper = "request" if action == "validateRequest" else "notification"
    inner = document.get(wrapper) if isinstance(document, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    if fake.down is not None:
        fake.calls.append(ScepCall(action, inner, headers, None))
        return web.json_response({"error": "unavailable"}, status=fake.down)
    if _bearer_scope(request, fake.graph) != INTUNE_SCOPE:
        fake.calls.append(ScepCall(action, inner, headers, None))
        return web.json_response({"error": "invalid token"}, status=401)
    bad_header = headers["api-version"] != API_VERSION or not _is_uuid(headers["client-request-id"])
    if bad_header or not headers["Content-Type"].startswith("application/json") or not inner:
        fake.calls.append(ScepCall(action, inner, headers, None))
        return web.json_response({"error": "bad request"}, status=400)
    if action == "validateRequest":
        code, description = _validate(fake, inner)
    else:
        problem = _notification_problem(action, inner)
        code, description = ("Success", "") if problem is None else ("Unknown", problem)
    code = fake.code or code
    fake.calls.append(ScepCall(action, inner, headers, code))
    return _answer(code, description)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def create_app(fake: FakeIntuneScep) -> web.Application:
    """The validation service as an aiohttp application."""
    app = web.Application()
    app[FAKE_SCEP] = fake
    app.add_routes(
        [
            web.post(
                SERVICE_PATH + "/ScepActions/{action:validateRequest|successNotification|"
                "failureNotification}",
                scep_action,
            )
        ]
    )
    return app


def install_discovery(graph_app: web.Application, fake: FakeIntuneScep) -> None:
    """Add the Intune service principal's ``endpoints`` to a fake Graph app (before it runs)."""

    async def endpoints(request: web.Request) -> web.Response:
        fake.discoveries += 1
        graph_scope = f"{request.url.origin()}/.default"
        if _bearer_scope(request, fake.graph) != graph_scope:
            return graph_error(401, "Access token is not for Microsoft Graph.")
        value = [
            {
                "id": str(uuid.uuid4()),
                "capability": "Conversation",
                "providerId": None,
                "providerName": "PkiConnectorFEService",
                "providerResourceId": None,
                "uri": fake.origin + "/TrafficGateway/TrafficRoutingService/PkiConnector",
            }
        ]
        if fake.listed:
            value.append(
                {
                    "id": str(uuid.uuid4()),
                    "capability": "Conversation",
                    "providerId": None,
                    "providerName": "ScepRequestValidationFEService",
                    "providerResourceId": None,
                    "uri": fake.uri,
                }
            )
        return web.json_response(
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals"
                "('appId%3D0000000a-0000-0000-c000-000000000000')/endpoints",
                "value": value,
            }
        )

    graph_app.router.add_get(f"/v1.0/servicePrincipals/appId={INTUNE_APP_ID}/endpoints", endpoints)
