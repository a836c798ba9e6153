"""Intune's SCEP request validation service, as Microsoft's own client library calls it.

Read from microsoft/Intune-Resource-Access ``src/CsrValidation`` (C# and Java):

1. Discovery: ``GET {graph}/v1.0/servicePrincipals/appId=0000000a-0000-0000-c000-000000000000/
   endpoints`` with a Graph token; the entry whose ``providerName`` is
   ``ScepRequestValidationFEService`` (compared case-insensitively) gives the service ``uri``.
   A tenant whose app registration lacks the Intune permission gets no such entry.
2. Calls: ``POST {uri}/ScepActions/validateRequest`` (and ``successNotification``,
   ``failureNotification``) with a token for the Intune API (scope
   ``https://api.manage.microsoft.com//.default``), headers ``client-request-id`` (a fresh
   UUID) and ``api-version: 2018-02-20``, a JSON body ``{"request": {...}}`` or
   ``{"notification": {...}}``.
3. Answer: HTTP 200 and ``{"code": "Success" | <error code>, "errorDescription": ...}``; only
   ``Success`` passes. Any other status fails, and the discovered address is forgotten (the
   service may have moved), as Microsoft's client does.

Every failure is a `ProviderError`; the caller decides what a failure means (a deny).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers._http import BearerAuth, UpstreamClient, bounded, checked_url, read_model
from providers.base import ProviderError
from providers.intune._api import GraphApi
from providers.intune._auth import IntuneTokens
from providers.intune._settings import IntuneSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.intune")

INTUNE_APP_ID = "0000000a-0000-0000-c000-000000000000"
"""The Intune service principal's application id (the same in every tenant)."""
VALIDATION_SERVICE = "ScepRequestValidationFEService"
API_VERSION = "2018-02-20"
SUCCESS = "Success"
MAX_DESCRIPTION = 255
"""Intune takes at most this many characters of a failure's ``errorDescription``."""
E_FAIL = 0x80004005
"""The HRESULT sent when step-ca reports a failure without an error code (it always does)."""

_ENDPOINTS_ROUTE = "/v1.0/servicePrincipals/appId={appId}/endpoints"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ServiceEndpoint(_Model):
    """One entry of the Intune service principal's ``endpoints``."""

    provider_name: str | None = Field(default=None, alias="providerName")
    uri: str | None = None


class ServiceEndpointPage(_Model):
    """Graph's ``{"value": [...]}`` of endpoints."""

    value: tuple[ServiceEndpoint, ...] = ()


class ScepAnswer(_Model):
    """``{"code", "errorDescription"}``: Intune's verdict on a request or a notification."""

    code: str = Field(min_length=1, max_length=100)
    error_description: str | None = Field(default=None, alias="errorDescription")


@dataclass(frozen=True, slots=True)
class ScepVerdict:
    """Intune's answer.

    Attributes:
        code: ``Success`` or one of Intune's error codes (``ChallengeExpired``, ...).
        description: Intune's explanation, printable and at most 200 characters.
    """

    code: str
    description: str

    @property
    def ok(self) -> bool:
        """Only ``Success`` counts."""
        return self.code == SUCCESS


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What a success notification tells Intune about the certificate.

    Attributes:
        thumbprint: SHA-1 of the DER, upper-case hex.
        serial: Serial number, upper-case hex.
        expires: Expiry, ISO 8601 UTC.
        issuer: The issuing CA's name.
        ca_configuration: Which CA configuration issued it (free text).
    """

    thumbprint: str
    serial: str
    expires: str
    issuer: str
    ca_configuration: str


def _printable(text: str | None, limit: int) -> str:
    return "".join(c if c.isprintable() else " " for c in (text or ""))[:limit].strip()


class IntuneScepClient:
    """Validates SCEP requests with Intune and reports issuance results to it."""

    def __init__(
        self,
        name: str,
        settings: IntuneSettings,
        *,
        scope: str,
        caller_info: str,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._caller_info = caller_info
        headers = {"Accept": "application/json"}
        graph_base = httpx.URL(f"{settings.graph_host}/v1.0/")
        self._login = UpstreamClient(
            name, settings.authority_host, settings, headers=headers, hooks=hooks
        )
        self._graph = UpstreamClient(name, str(graph_base), settings, headers=headers, hooks=hooks)
        # The service's address is only known after discovery: requests carry absolute URLs.
        self._service = UpstreamClient(name, "", settings, headers=headers, hooks=hooks)
        graph_tokens = IntuneTokens(
            name, settings, self._login, on_state=self._set_ready, hooks=hooks, clock=clock, now=now
        )
        intune_tokens = IntuneTokens(
            name,
            settings,
            self._login,
            on_state=self._set_ready,
            hooks=hooks,
            clock=clock,
            now=now,
            scope=scope,
        )
        self._graph_api = GraphApi(name, self._graph, graph_tokens.cache, graph_base)
        self._auth = BearerAuth(name, intune_tokens.cache)
        self._uri: str | None = None
        self._finding: asyncio.Task[str] | None = None  # the one discovery under way
        self.ready = False
        """Whether Entra granted the last token asked for."""

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready

    async def validate(self, transaction_id: str, csr_b64: str, *, budget: float) -> ScepVerdict:
        """Intune's verdict on a CSR carrying an Intune challenge; `ProviderError` if unasked."""
        body = {
            "request": {
                "transactionId": transaction_id,
                "certificateRequest": csr_b64,
                "callerInfo": self._caller_info,
            }
        }
        return await self._post("validateRequest", body, budget)

    async def notify_success(
        self, transaction_id: str, csr_b64: str, cert: IssuedCertificate, *, budget: float
    ) -> ScepVerdict:
        """Tell Intune the certificate was issued (it shows in Intune's certificate report)."""
        body = {
            "notification": {
                "transactionId": transaction_id,
                "certificateRequest": csr_b64,
                "certificateThumbprint": cert.thumbprint,
                "certificateSerialNumber": cert.serial,
                "certificateExpirationDateUtc": cert.expires,
                "issuingCertificateAuthority": cert.issuer,
                "callerInfo": self._caller_info,
                "caConfiguration": cert.ca_configuration,
                "certificateAuthority": cert.issuer,
            }
        }
        return await self._post("successNotification", body, budget)

    async def notify_failure(
        self,
        transaction_id: str,
        csr_b64: str,
        *,
        hresult: int,
        description: str,
        budget: float,
    ) -> ScepVerdict:
        """Tell Intune the issuance failed."""
        body = {
            "notification": {
                "transactionId": transaction_id,
                "certificateRequest": csr_b64,
                "hResult": hresult or E_FAIL,
                "errorDescription": _printable(description, MAX_DESCRIPTION) or "issuance failed",
                "callerInfo": self._caller_info,
            }
        }
        return await self._post("failureNotification", body, budget)

    async def _post(self, action: str, body: Mapping[str, object], budget: float) -> ScepVerdict:
        route = f"/ScepActions/{action}"
        async with bounded(self._name, budget) as deadline:
            uri = self._uri or await self._address(deadline)
            try:
                response = await self._service.request(
                    "POST",
                    f"{uri}{route}",
                    route=route,
                    json=body,
                    headers={"client-request-id": str(uuid.uuid4()), "api-version": API_VERSION},
                    deadline=deadline,
                    auth=self._auth,
                )
                answer = read_model(
                    self._name,
                    response,
                    ScepAnswer,
                    where=f"Intune {route}",
                    refusal=lambda r: f"Intune {route} answered HTTP {r.status_code}",
                )
            except ProviderError:
                self._uri = None
                raise
        return ScepVerdict(answer.code, _printable(answer.error_description, 200))

    async def _address(self, deadline: float) -> str:
        """The service's address, found once for every caller asking while it is unknown (a
        failed call forgets it: a burst of callers must not each ask Graph again)."""
        finding = self._finding
        if finding is None or finding.done():
            finding = self._finding = asyncio.create_task(self._discover(deadline))
            finding.add_done_callback(_seen)  # its failure reached whoever still waited
        # Shielded: the caller that started it giving up must not fail the others.
        return await asyncio.shield(finding)

    async def _discover(self, deadline: float) -> str:
        """The validation service's address, from the Intune service principal's endpoints."""
        page = await self._graph_api.get(
            f"servicePrincipals/appId={INTUNE_APP_ID}/endpoints",
            ServiceEndpointPage,
            route=_ENDPOINTS_ROUTE,
            deadline=deadline,
        )
        wanted = VALIDATION_SERVICE.lower()
        endpoints = page.value if page is not None else ()
        found = next(
            (e.uri for e in endpoints if (e.provider_name or "").lower() == wanted and e.uri), None
        )
        if found is None:
            raise ProviderError(
                self._name,
                f"Graph lists no {VALIDATION_SERVICE} endpoint: grant the app registration "
                "Intune's scep_challenge_provider permission",
            )
        try:
            uri = checked_url(found)
        except ValueError as exc:
            raise ProviderError(self._name, f"the {VALIDATION_SERVICE} address: {exc}") from None
        log.info("intune.scep_service_found", provider=self._name, uri=uri)
        self._uri = uri
        return uri

    async def aclose(self) -> None:
        """Close the three HTTP clients."""
        if self._finding is not None:
            self._finding.cancel()
        for client in (self._login, self._graph, self._service):
            await client.aclose()


def _seen(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        task.exception()
