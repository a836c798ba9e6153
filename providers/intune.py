"""Microsoft Intune through Microsoft Graph: app-only token, managed-device lookup, mapping.

One lookup is, in order (all inside one time budget, `UpstreamSettings.budget`):

1. a client-credentials token from Entra (cached, shared by concurrent lookups, refreshed
   `TOKEN_MARGIN` seconds before expiry; a 401 from Graph drops it and retries once);
2. ``GET deviceManagement/managedDevices?$filter=serialNumber eq '...'&$select=...``;
3. concurrently: the Entra user (``/users/{id}`` with department and job title), the user's groups
   (``transitiveMemberOf/microsoft.graph.group``, every ``@odata.nextLink`` followed), and, when
   ``device_groups`` is on, the Entra device's groups; plus the UDID by device id when asked.

UDIDs: Graph blanks ``udid`` in list answers and does not document filtering on it, so a UDID
identifier is answered "not in this inventory" unless ``udid_lookup = "filter"``, which tries the
undocumented filter and trusts only devices whose ``udid`` (fetched by id) matches. See
docs/intune.md.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from providers._graph_models import (
    DirectoryGroup,
    EntraDevicePage,
    GraphErrorAnswer,
    GraphUser,
    GroupPage,
    ManagedDevice,
    ManagedDevicePage,
    ManagedDeviceUdid,
    TokenAnswer,
    TokenErrorAnswer,
)
from providers._http import Token, TokenCache, UpstreamClient, UpstreamSettings, lookup_budget
from providers.base import DeviceRecord, GroupRef, ProviderError, ProviderNotReady, UserRecord
from providers.config_types import ConfigPath, Secret
from providers.identifiers import DeviceIdentifier, IdentifierKind

log = structlog.get_logger("providers.intune")

TOKEN_MARGIN = 120.0
"""Seconds before expiry at which a cached Graph token is replaced."""

DEVICE_SELECT = ",".join(
    (
        "id",
        "userId",
        "deviceName",
        "serialNumber",
        "operatingSystem",
        "osVersion",
        "model",
        "complianceState",
        "managementAgent",
        "managedDeviceOwnerType",
        "lastSyncDateTime",
        "azureADDeviceId",
        "userPrincipalName",
        "emailAddress",
        "userDisplayName",
        "isSupervised",
        "jailBroken",
    )
)
USER_SELECT = "id,displayName,userPrincipalName,mail,department,jobTitle"
GROUP_SELECT = "id,displayName"
COMPLIANCE_STATES = frozenset(
    {"unknown", "compliant", "noncompliant", "conflict", "error", "inGracePeriod", "configManager"}
)
MAX_UDID_CANDIDATES = 5
"""A UDID filter matching more devices than this is taken as ignored by Graph (fail closed)."""

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
_SAFE_IDENTIFIER = re.compile(r"[A-Za-z0-9-]{1,80}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_M = TypeVar("_M", bound=BaseModel)


class IntuneSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "intune"``: an Entra app registration and Graph hosts.

    Give either ``client_secret`` or ``certificate`` plus ``private_key`` (PEM files).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["intune"]
    tenant_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$",
        description="directory (tenant) id or a verified domain such as contoso.onmicrosoft.com",
    )
    client_id: str = Field(pattern=_GUID.pattern, description="application (client) id")
    client_secret: Secret | None = None
    certificate: ConfigPath | None = Field(
        default=None, description="PEM certificate uploaded to the app registration"
    )
    private_key: ConfigPath | None = Field(default=None, description="PEM RSA private key")
    private_key_password: Secret | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_host: str = "https://graph.microsoft.com"
    user_groups: bool = Field(default=True, description="add the user's Entra groups")
    device_groups: bool = Field(default=False, description="add the Entra device's groups")
    fetch_udid: bool = Field(
        default=False, description="fetch the UDID by device id (one more request per lookup)"
    )
    udid_lookup: Literal["unsupported", "filter"] = "unsupported"
    max_group_pages: int = Field(default=10, ge=1, le=100)

    @field_validator("authority_host", "graph_host")
    @classmethod
    def _origin(cls, value: str) -> str:
        try:
            url = httpx.URL(value.rstrip("/"))
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("expected https://host")
        if url.path not in ("", "/") or url.query or url.fragment:
            raise ValueError("expected a scheme and host only, no path or query")
        if url.scheme == "http" and url.host not in _LOOPBACK:
            raise ValueError("plain http is allowed only for 127.0.0.1/localhost (a fake Graph)")
        return str(url).rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> IntuneSettings:
        has_cert = self.certificate is not None or self.private_key is not None
        if self.client_secret is not None and has_cert:
            raise ValueError("give client_secret or certificate + private_key, not both")
        if self.client_secret is None and not has_cert:
            raise ValueError("give client_secret, or certificate and private_key")
        if has_cert and (self.certificate is None or self.private_key is None):
            raise ValueError("certificate and private_key go together")
        return self

    @property
    def token_url(self) -> str:
        """The tenant's v2.0 token endpoint (also the client assertion's audience)."""
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        """App-only scope: every permission granted to the app on this Graph host."""
        return f"{self.graph_host}/.default"


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


def odata_string(value: str) -> str:
    """An OData string literal: single quotes, an embedded quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def describe_token_error(response: httpx.Response, *, redact: str | None = None) -> str:
    """Entra's error body as one readable line without trace ids (and never the secret)."""
    try:
        body = TokenErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        return f"HTTP {response.status_code}"
    description = body.error_description.split("\r\n")[0].split("\n")[0]
    description = description.split(" Trace ID:")[0].strip()
    text = f"{body.error}: {description}" if description else body.error
    if redact:
        text = text.replace(redact, "[redacted]")
    return text[:300]


def describe_graph_error(response: httpx.Response) -> tuple[str, str, str | None]:
    """Graph's error body as (code, message, request-id), tolerant of non-JSON bodies."""
    try:
        body = GraphErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        return "unknown", f"HTTP {response.status_code} with a non-Graph body", None
    request_id = body.error.inner_error.get("request-id")
    return (
        body.error.code,
        body.error.message[:300],
        request_id if isinstance(request_id, str) else None,
    )


def _flag(value: str | None) -> bool | None:
    """Graph's ``jailBroken`` is a string: "True", "False" or "Unknown"."""
    match (value or "").strip().lower():
        case "true":
            return True
        case "false":
            return False
    return None


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value is not None else None


class IntuneProvider:
    """Looks attested Apple devices up in Intune; see the module docstring for the flow."""

    def __init__(
        self,
        name: str,
        settings: IntuneSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._settings = settings
        self._clock = clock
        self._graph_base = httpx.URL(f"{settings.graph_host}/v1.0/")
        self._graph = UpstreamClient(
            name, str(self._graph_base), settings, headers={"Accept": "application/json"}
        )
        self._login = UpstreamClient(
            name, settings.authority_host, settings, headers={"Accept": "application/json"}
        )
        self._tokens = TokenCache(self._fetch_token, margin=TOKEN_MARGIN, clock=clock)
        self._credential: CertificateCredential | None = None
        self._ready = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True while Entra last granted a token."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    async def start(self) -> None:
        """Fetch a first token so bad credentials show at startup as `ProviderNotReady`."""
        try:
            async with lookup_budget(self._name, self._settings.budget):
                await self._tokens.get()
        except ProviderNotReady:
            raise
        except ProviderError as exc:
            raise ProviderNotReady(self._name, exc.message) from None

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._graph.aclose()
        await self._login.aclose()

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Not offered: a tenant-wide listing is a sync feature, not a lookup."""
        raise NotImplementedError("the intune provider does not list devices")

    # -- token --------------------------------------------------------------------------

    async def _fetch_token(self) -> Token:
        settings = self._settings
        form = {
            "client_id": settings.client_id,
            "scope": settings.scope,
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
                settings.client_id, settings.token_url, datetime.now(UTC)
            )
            credential = "certificate"
        path = f"/{settings.tenant_id}/oauth2/v2.0/token"
        response = await self._login.request("POST", path, data=form)
        if response.status_code != 200:
            reason = describe_token_error(response, redact=secret)
            log.error(
                "provider.token_failed",
                provider=self._name,
                status=response.status_code,
                error=reason,
            )
            self._ready = False
            error = ProviderNotReady if response.status_code in (400, 401) else ProviderError
            raise error(self._name, f"Entra refused the token request ({reason})")
        try:
            answer = TokenAnswer.model_validate_json(response.content)
        except ValidationError:
            raise ProviderError(self._name, "Entra answered an unreadable token response") from None
        log.info(
            "provider.token_refreshed",
            provider=self._name,
            expires_in=answer.expires_in,
            credential=credential,
        )
        self._ready = True
        return Token(answer.access_token, expires_at=self._clock() + answer.expires_in)

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
                problem = str(exc)
            else:
                return self._credential
            log.error("provider.credential_invalid", provider=self._name, error=problem)
            raise ProviderNotReady(self._name, problem)
        return self._credential

    # -- Graph requests -----------------------------------------------------------------

    async def _get(
        self,
        url: str,
        *,
        deadline: float,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> bytes | None:
        """GET from Graph with the cached token; one retry with a fresh token after a 401.

        Answers the body, or None for a 404 when `missing_ok`. Any other status becomes a
        `ProviderError` after one ``provider.upstream_error`` log line.
        """
        for attempt in (1, 2):
            token = await self._tokens.get()
            response = await self._graph.request(
                "GET",
                url,
                params=params,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                deadline=deadline,
            )
            if response.status_code == 401 and attempt == 1:
                code, _, _ = describe_graph_error(response)
                log.warning("provider.token_rejected", provider=self._name, code=code)
                self._tokens.invalidate(token)
                continue
            break
        if response.status_code == 200:
            return response.content
        if response.status_code == 404 and missing_ok:
            return None
        code, message, request_id = describe_graph_error(response)
        log.error(
            "provider.upstream_error",
            provider=self._name,
            status=response.status_code,
            path=response.request.url.path,
            code=code,
            message=message,
            request_id=request_id,
        )
        raise ProviderError(self._name, f"Graph answered {response.status_code} {code}: {message}")

    def _parse(self, model: type[_M], body: bytes) -> _M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            where = ", ".join(
                ".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:3]
            )
            raise ProviderError(
                self._name, f"Graph answered an unexpected {model.__name__} ({where})"
            ) from None

    def _check_next_link(self, link: str) -> str:
        """Follow only links back to the configured Graph host: the token must not leak."""
        url = httpx.URL(link)
        base = self._graph_base
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise ProviderError(self._name, "Graph sent a nextLink to another host; refused")
        return link

    async def _groups(self, path: str, *, deadline: float) -> list[DirectoryGroup] | None:
        """Every group of a directory object, following nextLink; None when it is gone."""
        groups: list[DirectoryGroup] = []
        url: str | None = path
        params: dict[str, str] | None = {
            "$select": GROUP_SELECT,
            "$count": "true",
            "$top": "999",
        }
        pages = 0
        while url is not None:
            if pages >= self._settings.max_group_pages:
                # Truncating would make a none_of group rule pass on partial data: fail closed.
                raise ProviderError(
                    self._name,
                    f"more than {self._settings.max_group_pages} pages of groups; "
                    "raise max_group_pages",
                )
            body = await self._get(
                url,
                deadline=deadline,
                params=params,
                headers={"ConsistencyLevel": "eventual"},
                missing_ok=True,
            )
            if body is None:
                if pages:
                    raise ProviderError(self._name, "a page of groups vanished while paging")
                return None
            page = self._parse(GroupPage, body)
            groups.extend(page.value)
            pages += 1
            url = self._check_next_link(page.next_link) if page.next_link else None
            params = None  # a nextLink already carries the query
        return groups

    # -- lookup -------------------------------------------------------------------------

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Find the device by serial (or, if enabled, by UDID) and gather user and groups."""
        if identifier.kind not in (IdentifierKind.SERIAL, IdentifierKind.UDID):
            return None
        if not _SAFE_IDENTIFIER.fullmatch(identifier.value):
            # classify() admits nothing else; refuse rather than build OData from it.
            raise ProviderError(self._name, "identifier has an unexpected shape")
        if identifier.kind is IdentifierKind.UDID and self._settings.udid_lookup == "unsupported":
            log.info("provider.udid_not_searchable", provider=self._name)
            return None
        started = time.monotonic()
        async with lookup_budget(self._name, self._settings.budget) as deadline:
            record = await self._lookup(identifier, deadline)
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            found=record is not None,
            compliance=record.compliance if record else None,
            groups=len(record.groups) if record else 0,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return record

    async def _lookup(self, identifier: DeviceIdentifier, deadline: float) -> DeviceRecord | None:
        by_udid = identifier.kind is IdentifierKind.UDID
        field = "udid" if by_udid else "serialNumber"
        body = await self._get(
            "deviceManagement/managedDevices",
            deadline=deadline,
            params={
                "$filter": f"{field} eq {odata_string(identifier.value)}",
                "$select": DEVICE_SELECT,
            },
        )
        assert body is not None  # noqa: S101 - missing_ok is off
        candidates = list(self._parse(ManagedDevicePage, body).value)
        udids: dict[str, str | None] = {}
        wanted = identifier.value.upper()
        if by_udid:
            if len(candidates) > MAX_UDID_CANDIDATES:
                raise ProviderError(
                    self._name, f"udid filter matched {len(candidates)} devices; Graph ignored it"
                )
            fetched = await self._gather(*(self._udid(d.id, deadline) for d in candidates))
            udids = dict(zip((d.id for d in candidates), fetched, strict=True))
            matching = [d for d in candidates if (udids[d.id] or "").upper() == wanted]
            if len(matching) < len(candidates):
                log.warning(
                    "provider.udid_mismatch",
                    provider=self._name,
                    candidates=len(candidates),
                    matching=len(matching),
                )
            candidates = matching
        else:
            # Trust only what matches: a filter Graph silently ignored must not pick a device.
            candidates = [d for d in candidates if (d.serial_number or "").upper() == wanted]
        if not candidates:
            return None
        device = max(
            candidates, key=lambda d: d.last_sync_date_time or datetime.min.replace(tzinfo=UTC)
        )
        if len(candidates) > 1:
            log.warning(
                "provider.duplicate_records",
                provider=self._name,
                count=len(candidates),
                chosen=device.id,
            )
        return await self._enrich(device, udids.get(device.id), deadline)

    async def _enrich(
        self, device: ManagedDevice, udid: str | None, deadline: float
    ) -> DeviceRecord:
        settings = self._settings
        user_id = _text(device.user_id)
        azure_id = _text(device.azure_ad_device_id)
        if azure_id is not None and (not _GUID.fullmatch(azure_id) or azure_id == _NIL_GUID):
            azure_id = None

        async def nothing() -> None:
            return None

        user, user_groups, device_groups, fetched_udid = await self._gather(
            self._user(user_id, deadline) if user_id else nothing(),
            self._groups(
                f"users/{quote(user_id, safe='')}/transitiveMemberOf/microsoft.graph.group",
                deadline=deadline,
            )
            if user_id and settings.user_groups
            else nothing(),
            self._device_groups(azure_id, deadline)
            if azure_id and settings.device_groups
            else nothing(),
            self._udid(device.id, deadline) if udid is None and settings.fetch_udid else nothing(),
        )
        return _to_record(
            self._name,
            device,
            udid=udid or fetched_udid,
            user=user,
            groups=[*(user_groups or ()), *(device_groups or ())],
        )

    async def _gather(self, *coros: Any) -> list[Any]:
        """Run requests concurrently; the first `ProviderError` wins and the rest are cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(c) for c in coros]
        except BaseExceptionGroup as errors:
            first = _first_error(errors)
            raise first from None
        return [t.result() for t in tasks]

    async def _user(self, user_id: str, deadline: float) -> GraphUser | None:
        body = await self._get(
            f"users/{quote(user_id, safe='')}",
            deadline=deadline,
            params={"$select": USER_SELECT},
            missing_ok=True,
        )
        if body is None:
            log.warning("provider.user_not_found", provider=self._name, user_id=user_id)
            return None
        return self._parse(GraphUser, body)

    async def _device_groups(self, azure_id: str, deadline: float) -> list[DirectoryGroup] | None:
        body = await self._get(
            "devices",
            deadline=deadline,
            params={"$filter": f"deviceId eq {odata_string(azure_id)}", "$select": "id,deviceId"},
        )
        assert body is not None  # noqa: S101 - missing_ok is off
        page = self._parse(EntraDevicePage, body)
        if not page.value:
            log.warning("provider.entra_device_not_found", provider=self._name, device_id=azure_id)
            return None
        object_id = quote(page.value[0].id, safe="")
        return await self._groups(
            f"devices/{object_id}/transitiveMemberOf/microsoft.graph.group", deadline=deadline
        )

    async def _udid(self, device_id: str, deadline: float) -> str | None:
        """The UDID of one managed device: Graph fills it only on a GET by id with $select."""
        body = await self._get(
            f"deviceManagement/managedDevices/{quote(device_id, safe='')}",
            deadline=deadline,
            params={"$select": "id,udid"},
            missing_ok=True,
        )
        return _text(self._parse(ManagedDeviceUdid, body).udid) if body is not None else None


def _first_error(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in errors.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if isinstance(error, ProviderError):
            return error
    return errors.exceptions[0]


def _to_record(
    provider: str,
    device: ManagedDevice,
    *,
    udid: str | None,
    user: GraphUser | None,
    groups: list[DirectoryGroup],
) -> DeviceRecord:
    """Normalise a managed device, its user and groups (deduplicated by id, order kept)."""
    agent = (device.management_agent or "").lower()
    owner = device.managed_device_owner_type
    compliance = _text(device.compliance_state)
    if compliance is not None and compliance not in COMPLIANCE_STATES:
        log.warning("provider.unknown_compliance_state", provider=provider, value=compliance)
    seen: set[str] = set()
    refs: list[GroupRef] = []
    for group in groups:
        if group.id in seen:
            continue
        seen.add(group.id)
        # Without GroupMember.Read.All Graph returns groups with a null name: keep the id.
        refs.append(GroupRef(name=_text(group.display_name) or group.id, id=group.id))
    return DeviceRecord(
        provider=provider,
        record_id=device.id,
        serial=_text(device.serial_number),
        udid=udid,
        name=_text(device.device_name),
        model=_text(device.model),
        platform=_text(device.operating_system),
        os_version=_text(device.os_version),
        managed="mdm" in agent if agent else None,
        supervised=device.is_supervised,
        compliance=compliance,
        owner_type=owner if owner in ("company", "personal") else None,
        jailbroken=_flag(device.jail_broken),
        last_contact=device.last_sync_date_time,
        user=_user_record(device, user),
        groups=tuple(refs),
    )


def _user_record(device: ManagedDevice, user: GraphUser | None) -> UserRecord | None:
    """The Entra user, or what the device row says about a user Graph no longer has."""
    if user is not None:
        return UserRecord(
            username=_text(user.user_principal_name),
            email=_text(user.mail) or _text(device.email_address),
            full_name=_text(user.display_name),
            department=_text(user.department),
            title=_text(user.job_title),
            id=user.id,
        )
    if _text(device.user_principal_name) is None:
        return None  # a userless (shared, kiosk, DEP without user affinity) device
    return UserRecord(
        username=_text(device.user_principal_name),
        email=_text(device.email_address),
        full_name=_text(device.user_display_name),
        id=_text(device.user_id),
    )
