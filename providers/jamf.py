"""Jamf Pro: look attested Macs, iPhones and iPads up by serial or UDID.

Flow of one lookup (bounded by `budget`, retries and token fetch included)::

    token (OAuth client credentials or user bearer, cached, one fetch for all callers)
    ├── GET /api/{v}/computers-inventory?filter=hardware.serialNumber=="X"   (or udid=="X")
    │     └── GET /api/v1/departments/{id}          (cached; computers give only the id)
    └── GET /api/v2/mobile-devices/detail?filter=serialNumber=="X"           (or udid=="X")

Both device classes are searched concurrently. A 401 drops the token and retries once with a
fresh one. When a Pro API collection is missing (404) and `classic_fallback` is on, that device
class switches to the Classic API (``/JSSResource``) for the life of the provider. Every
failure becomes `ProviderError`, which the chain turns into a fail-closed deny.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, TypeVar

import httpx
import structlog
from cachetools import TTLCache
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from providers import _jamf_models as m
from providers._http import Token, TokenCache, UpstreamClient, UpstreamSettings, lookup_budget
from providers.base import DeviceRecord, GroupRef, ProviderError, ProviderNotReady, UserRecord
from providers.config_types import Secret
from providers.identifiers import DeviceIdentifier, IdentifierKind

log = structlog.get_logger("providers.jamf")

OAUTH_PATHS = ("/api/v1/oauth/token", "/api/oauth/token")
USER_TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 - a URL path, not a secret
MOBILE_DETAIL_PATH = "/api/v2/mobile-devices/detail"
COMPUTER_SECTIONS = (
    "GENERAL",
    "HARDWARE",
    "OPERATING_SYSTEM",
    "USER_AND_LOCATION",
    "GROUP_MEMBERSHIPS",
)
MOBILE_SECTIONS = ("GENERAL", "HARDWARE", "USER_AND_LOCATION", "GROUPS")
# Probed newest first when `computers_api_version = "auto"`; v4 arrived in 11.30, v3 in 11.23.
AUTO_VERSIONS = ("v4", "v3", "v1")
MAX_PAGES = 10
# Defence in depth: `providers.identifiers.classify` already admits only these characters.
_RSQL_SAFE = re.compile(r"[A-Za-z0-9-]{1,80}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

DeviceClass = Literal["computers", "mobile"]
TokenPathChoice = Literal["auto", "/api/oauth/token", "/api/v1/oauth/token"]
_Item = TypeVar("_Item", bound=BaseModel)


class JamfSettings(UpstreamSettings):
    """``[providers.NAME]`` with ``kind = "jamf"``.

    Give either `client_id` + `client_secret` (API roles and clients, recommended) or
    `username` + `password` (a Jamf Pro user; older servers).
    """

    kind: Literal["jamf"]
    url: str
    client_id: str | None = None
    client_secret: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    oauth_token_path: TokenPathChoice = "auto"  # noqa: S105 - a path choice, not a secret
    computers_api_version: Literal["auto", "v1", "v2", "v3", "v4"] = "auto"
    device_classes: Literal["computers", "mobile", "both"] = "both"
    classic_fallback: bool = False
    token_margin: float = Field(default=30.0, ge=0, description="renew this long before expiry")
    department_ttl: float = Field(default=3600.0, ge=0, description="seconds a name is cached")
    page_size: int = Field(default=100, ge=1, le=2000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("expected an http(s) URL such as https://example.jamfcloud.com")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> JamfSettings:
        oauth = self.client_id is not None or self.client_secret is not None
        user = self.username is not None or self.password is not None
        if oauth == user:
            raise ValueError("give either client_id and client_secret, or username and password")
        if oauth and (self.client_id is None or self.client_secret is None):
            raise ValueError("client_id and client_secret go together")
        if user and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def classes(self) -> tuple[DeviceClass, ...]:
        """The device classes to search, in a stable order."""
        if self.device_classes == "both":
            return ("computers", "mobile")
        return (self.device_classes,)


class JamfProvider:
    """Looks devices up in Jamf Pro; see the module docstring for the request flow."""

    def __init__(
        self,
        name: str,
        settings: JamfSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._settings = settings
        self._clock = clock
        self._now = now
        self._client = UpstreamClient(
            name, settings.url, settings, headers={"Accept": "application/json"}
        )
        # The refresh margin is applied when the token is stored (see `_token_from`), so a
        # short-lived token still gets used for half its life instead of never.
        self._tokens = TokenCache(self._fetch_token, margin=0.0, clock=clock)
        self._departments: TTLCache[str, str | None] = TTLCache(
            maxsize=1024, ttl=settings.department_ttl, timer=clock
        )
        self._oauth_path: str | None = (
            None if settings.oauth_token_path == "auto" else settings.oauth_token_path  # noqa: S105 - not a secret
        )
        self._computers_api: str | None = (
            None if settings.computers_api_version == "auto" else settings.computers_api_version
        )
        self._version_lock = asyncio.Lock()
        self._classic: set[DeviceClass] = set()
        self._ready = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True once Jamf has accepted the credentials (and not refused them since)."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    @property
    def auth_kind(self) -> Literal["oauth", "user"]:
        """Which credential the settings give."""
        return "oauth" if self._settings.client_id is not None else "user"

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch a token (and pick the computers API version when set to auto).

        Raises `ProviderNotReady` with a secret-free message when Jamf refuses the
        credentials or cannot be reached, so `/readyz` reports the provider as not ready.
        """
        try:
            async with lookup_budget(self._name, self._settings.budget) as deadline:
                await self._tokens.get()
                if "computers" in self._settings.classes:
                    await self._computers_version(deadline)
        except ProviderNotReady:
            self._ready = False
            raise
        except ProviderError as exc:
            self._ready = False  # the app logs the failure once, as `provider.not_ready`
            raise ProviderNotReady(self._name, exc.message) from None
        self._ready = True
        log.info(
            "provider.ready",
            provider=self._name,
            auth=self.auth_kind,
            device_classes=list(self._settings.classes),
            computers_api=self._computers_api,
            classic=sorted(self._classic),
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    # --- lookups -------------------------------------------------------------------------------

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Search the configured device classes concurrently; newest contact wins."""
        if identifier.kind not in (IdentifierKind.SERIAL, IdentifierKind.UDID):
            return None  # Jamf knows Apple serials and UDIDs only
        if not _RSQL_SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has characters unsafe for a filter")
        async with lookup_budget(self._name, self._settings.budget) as deadline:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(self._lookup_class(cls, identifier, deadline))
                        for cls in self._settings.classes
                    ]
            except* ProviderError as failures:
                raise failures.exceptions[0] from None
        found = [record for task in tasks for record in task.result()]
        records = [r for r in found if _matches(r, identifier)]
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            matches=len(records),
        )
        if len(records) < len(found):
            # A server that ignored or misread the filter must never hand us another device.
            log.warning(
                "provider.unmatched_records",
                provider=self._name,
                identifier=identifier.value,
                returned=len(found),
                matching=len(records),
            )
            if not records:
                raise ProviderError(
                    self._name, "Jamf answered records that do not match the filter"
                )
        return self._newest(records, identifier)

    def _newest(
        self, records: Sequence[DeviceRecord], identifier: DeviceIdentifier
    ) -> DeviceRecord | None:
        if not records:
            return None
        floor = datetime.min.replace(tzinfo=UTC)
        chosen = max(records, key=lambda r: r.last_contact or floor)
        if len(records) > 1:
            log.warning(
                "provider.duplicate_records",
                provider=self._name,
                kind=identifier.kind.value,
                identifier=identifier.value,
                record_ids=[r.record_id for r in records],
                chosen=chosen.record_id,
            )
        return chosen

    async def _lookup_class(
        self, cls: DeviceClass, identifier: DeviceIdentifier, deadline: float
    ) -> list[DeviceRecord]:
        serial = identifier.kind is IdentifierKind.SERIAL
        value = identifier.value
        if cls == "computers":
            version = await self._computers_version(deadline)
            if version is not None and "computers" not in self._classic:
                field = "hardware.serialNumber" if serial else "udid"
                computers = await self._search(
                    f"/api/{version}/computers-inventory",
                    m.ComputerResults,
                    COMPUTER_SECTIONS,
                    f'{field}=="{value}"',
                    deadline,
                    privilege="Read Computers",
                )
                if computers is not None:
                    return await self._map_computers(computers, deadline)
                self._missing("computers", f"/api/{version}/computers-inventory")
            return await self._classic_lookup("computers", serial, value, deadline)
        if "mobile" not in self._classic:
            field = "serialNumber" if serial else "udid"
            mobiles = await self._search(
                MOBILE_DETAIL_PATH,
                m.MobileResults,
                MOBILE_SECTIONS,
                f'{field}=="{value}"',
                deadline,
                privilege="Read Mobile Devices",
            )
            if mobiles is not None:
                return [self._map_mobile(d) for d in mobiles]
            self._missing("mobile", MOBILE_DETAIL_PATH)
        return await self._classic_lookup("mobile", serial, value, deadline)

    def _missing(self, cls: DeviceClass, path: str) -> None:
        """A Pro API collection answered 404: switch to Classic, or fail."""
        if not self._settings.classic_fallback:
            hint = "set computers_api_version or " if cls == "computers" else ""
            raise ProviderError(
                self._name,
                f"{path} does not exist on this Jamf Pro server; {hint}enable classic_fallback",
            )
        if cls not in self._classic:
            self._classic.add(cls)
            log.warning(
                "provider.classic_fallback", provider=self._name, device_class=cls, path=path
            )

    async def _computers_version(self, deadline: float) -> str | None:
        """The computers-inventory version to use; probes once when set to auto.

        Answers None when no probed version exists and the Classic fallback takes over.
        """
        if self._computers_api is not None or "computers" in self._classic:
            return self._computers_api
        async with self._version_lock:
            if self._computers_api is not None or "computers" in self._classic:
                return self._computers_api
            for version in AUTO_VERSIONS:
                path = f"/api/{version}/computers-inventory"
                params = [("section", "GENERAL"), ("page", "0"), ("page-size", "1")]
                response = await self._get(path, params, deadline)
                if response.status_code == 404:
                    continue
                self._check(response, path, privilege="Read Computers")
                self._computers_api = version
                log.info("provider.api_version_selected", provider=self._name, version=version)
                return version
            self._missing("computers", "/api/{v4,v3,v1}/computers-inventory")
            return None

    async def _search(
        self,
        path: str,
        model: type[m.SearchResults[_Item]],
        sections: Sequence[str],
        rsql: str,
        deadline: float,
        *,
        privilege: str,
    ) -> list[_Item] | None:
        """All pages of one filtered search; None when the collection itself is missing."""
        items: list[_Item] = []
        for page in range(MAX_PAGES):
            params = [("section", s) for s in sections]
            params += [
                ("page", str(page)),
                ("page-size", str(self._settings.page_size)),
                ("filter", rsql),
            ]
            response = await self._get(path, params, deadline)
            if response.status_code == 404 and page == 0:
                return None
            parsed = self._parse(response, path, model, privilege=privilege)
            items.extend(parsed.results)
            if not parsed.results or len(items) >= parsed.totalCount:
                break
        return items

    # --- mapping -------------------------------------------------------------------------------

    async def _map_computers(
        self, computers: Sequence[m.Computer], deadline: float
    ) -> list[DeviceRecord]:
        ids = {
            c.userAndLocation.departmentId
            for c in computers
            if c.userAndLocation is not None and _text(c.userAndLocation.departmentId)
        }
        names = dict(
            zip(
                ids,
                await asyncio.gather(*(self._department(i, deadline) for i in ids)),
                strict=True,
            )
        )
        return [self._map_computer(c, names) for c in computers]

    def _map_computer(
        self, computer: m.Computer, departments: dict[str | None, str | None]
    ) -> DeviceRecord:
        general = computer.general or m.ComputerGeneral()
        hardware = computer.hardware or m.ComputerHardware()
        system = computer.operatingSystem or m.OperatingSystem()
        remote = general.remoteManagement
        user = None
        if computer.userAndLocation is not None:
            ul = computer.userAndLocation
            user = _user(
                username=ul.username,
                email=ul.email,
                full_name=ul.realname,
                department=departments.get(ul.departmentId),
                title=ul.position,
            )
        groups = tuple(
            GroupRef(name=g.groupName, id=_text(g.groupId), smart=g.smartGroup)
            for g in computer.groupMemberships or ()
            if g.groupName
        )
        return DeviceRecord(
            provider=self._name,
            record_id=_text(computer.id),
            serial=_text(hardware.serialNumber),
            udid=_text(computer.udid),
            name=_text(general.name),
            model=_text(hardware.model),
            platform="macOS",  # computers-inventory holds Macs only
            os_version=_text(system.version),
            managed=remote.managed if remote is not None else None,
            supervised=general.supervised,
            last_contact=m.parse_jamf_time(
                general.lastContact or general.lastContactTime or general.lastCheckIn
            ),
            user=user,
            groups=groups,
        )

    def _map_mobile(self, device: m.MobileDevice) -> DeviceRecord:
        general = device.general or m.MobileGeneral()
        hardware = device.hardware or m.MobileHardware()
        user = None
        if device.userAndLocation is not None:
            ul = device.userAndLocation
            user = _user(
                username=ul.username,
                email=ul.emailAddress,
                full_name=ul.realName,
                department=ul.department,
                title=ul.position,
            )
        groups = tuple(
            GroupRef(name=g.groupName, id=_text(g.groupId), smart=g.smart)
            for g in device.groups or ()
            if g.groupName
        )
        return DeviceRecord(
            provider=self._name,
            record_id=_text(device.mobileDeviceId) or _text(device.id),
            serial=_text(hardware.serialNumber),
            udid=_text(general.udid),
            name=_text(general.displayName),
            model=_text(hardware.model),
            platform=_mobile_platform(
                device.deviceType, hardware.modelIdentifier or hardware.model
            ),
            os_version=_text(general.osVersion),
            managed=general.managed,
            supervised=general.supervised,
            last_contact=m.parse_jamf_time(
                general.lastContactDate or general.lastInventoryUpdateDate
            ),
            user=user,
            groups=groups,
        )

    async def _department(self, department_id: str | None, deadline: float) -> str | None:
        """Resolve a department id to its name; answers (including 404) are cached."""
        if department_id is None:
            return None
        try:
            return self._departments[department_id]
        except KeyError:
            pass
        if not _RSQL_SAFE.fullmatch(department_id):
            return None  # never put an unexpected value into a path
        path = f"/api/v1/departments/{department_id}"
        response = await self._get(path, None, deadline)
        name = None
        if response.status_code != 404:
            name = _text(
                self._parse(response, path, m.Department, privilege="Read Departments").name
            )
        self._departments[department_id] = name
        return name

    # --- Classic API fallback --------------------------------------------------------------------

    async def _classic_lookup(
        self, cls: DeviceClass, serial: bool, value: str, deadline: float
    ) -> list[DeviceRecord]:
        by = "serialnumber" if serial else "udid"
        if cls == "computers":
            path = f"/JSSResource/computers/{by}/{value}"
            response = await self._get(path, None, deadline)
            if response.status_code == 404:
                return []
            computer = self._parse(response, path, m.ClassicComputer, privilege="Read Computers")
            return [self._map_classic_computer(computer.computer)]
        path = f"/JSSResource/mobiledevices/{by}/{value}"
        response = await self._get(path, None, deadline)
        if response.status_code == 404:
            return []
        mobile = self._parse(response, path, m.ClassicMobileDevice, privilege="Read Mobile Devices")
        return [self._map_classic_mobile(mobile.mobile_device)]

    def _map_classic_computer(self, body: m.ClassicComputerBody) -> DeviceRecord:
        general = body.general or m.ClassicComputerGeneral()
        hardware = body.hardware or m.ClassicComputerHardware()
        accounts = body.groups_accounts or m.ClassicGroupsAccounts()
        return DeviceRecord(
            provider=self._name,
            record_id=_text(general.id),
            serial=_text(general.serial_number),
            udid=_text(general.udid),
            name=_text(general.name),
            model=_text(hardware.model),
            platform="macOS",
            os_version=_text(hardware.os_version),
            managed=general.remote_management.managed if general.remote_management else None,
            supervised=general.supervised,
            last_contact=m.parse_jamf_time(general.last_contact_time_utc),
            user=_classic_user(body.location),
            groups=tuple(GroupRef(name=n) for n in accounts.computer_group_memberships or () if n),
        )

    def _map_classic_mobile(self, body: m.ClassicMobileBody) -> DeviceRecord:
        general = body.general or m.ClassicMobileGeneral()
        return DeviceRecord(
            provider=self._name,
            record_id=_text(general.id),
            serial=_text(general.serial_number),
            udid=_text(general.udid),
            name=_text(general.device_name) or _text(general.name),
            model=_text(general.model),
            platform=_mobile_platform(general.os_type, general.model_identifier or general.model),
            os_version=_text(general.os_version),
            managed=general.managed,
            supervised=general.supervised,
            last_contact=m.parse_jamf_time(general.last_inventory_update_utc),
            user=_classic_user(body.location),
            groups=tuple(
                GroupRef(name=g.name, id=_text(g.id))
                for g in body.mobile_device_groups or ()
                if g.name
            ),
        )

    # --- bulk listing --------------------------------------------------------------------------

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every computer and mobile device, page by page (Pro API only)."""
        for cls in self._settings.classes:
            for page in range(1_000_000):
                deadline = time.monotonic() + self._settings.budget
                params = [("page", str(page)), ("page-size", str(self._settings.page_size))]
                if cls == "computers":
                    version = await self._computers_version(deadline)
                    if version is None:
                        raise ProviderError(self._name, "listing needs the Jamf Pro API")
                    path = f"/api/{version}/computers-inventory"
                    params += [("section", s) for s in COMPUTER_SECTIONS]
                    response = await self._get(path, params, deadline)
                    computers = self._parse(
                        response, path, m.ComputerResults, privilege="Read Computers"
                    )
                    for record in await self._map_computers(computers.results, deadline):
                        yield record
                    count = len(computers.results)
                else:
                    params += [("section", s) for s in MOBILE_SECTIONS]
                    response = await self._get(MOBILE_DETAIL_PATH, params, deadline)
                    mobiles = self._parse(
                        response,
                        MOBILE_DETAIL_PATH,
                        m.MobileResults,
                        privilege="Read Mobile Devices",
                    )
                    for device in mobiles.results:
                        yield self._map_mobile(device)
                    count = len(mobiles.results)
                if count < self._settings.page_size:
                    break

    # --- HTTP ----------------------------------------------------------------------------------

    async def _get(
        self, path: str, params: list[tuple[str, str]] | None, deadline: float
    ) -> httpx.Response:
        """GET with a bearer token; on 401 drop the token and retry once with a fresh one."""
        for attempt in (1, 2):
            token = await self._tokens.get()
            response = await self._client.request(
                "GET",
                path,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                deadline=deadline,
            )
            if response.status_code != 401:
                return response
            self._tokens.invalidate(token)
            log.info("provider.token_rejected", provider=self._name, path=path, attempt=attempt)
        raise ProviderError(self._name, f"Jamf refused a fresh token on {path} (HTTP 401)")

    def _check(self, response: httpx.Response, path: str, *, privilege: str) -> None:
        """Turn any answer but 200 into a `ProviderError` that says what to fix."""
        status = response.status_code
        if status == 200:
            return
        if status == 403:
            if "html" in response.headers.get("content-type", ""):
                reason = "an HTML 403 (a proxy or web firewall in front of Jamf refused it)"
            else:
                reason = f"HTTP 403; the API role needs the {privilege!r} privilege"
            raise ProviderError(self._name, f"{path}: {reason}")
        raise ProviderError(self._name, f"{path}: unexpected HTTP {status}")

    def _parse(
        self, response: httpx.Response, path: str, model: type[_Item], *, privilege: str
    ) -> _Item:
        self._check(response, path, privilege=privilege)
        try:
            document = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderError(self._name, f"{path}: malformed JSON") from None
        try:
            return model.model_validate(document)
        except ValidationError as exc:
            where = ", ".join(
                ".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:3]
            )
            raise ProviderError(self._name, f"{path}: unexpected JSON shape at {where}") from None

    # --- tokens --------------------------------------------------------------------------------

    async def _fetch_token(self) -> Token:
        return await (self._fetch_oauth() if self.auth_kind == "oauth" else self._fetch_user())

    async def _fetch_oauth(self) -> Token:
        """Client credentials on one of the two token paths; the path that works is kept."""
        client_id, secret = self._settings.client_id, self._settings.client_secret
        if client_id is None or secret is None:  # pragma: no cover - the settings forbid it
            raise ProviderNotReady(self._name, "no OAuth client credentials configured")
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret.get_secret_value(),
        }
        paths = (self._oauth_path,) if self._oauth_path else OAUTH_PATHS
        refusal: tuple[str, httpx.Response] | None = None
        for path in paths:
            response = await self._client.request("POST", path, data=form)
            if response.status_code in (404, 405):
                log.info("provider.oauth_path_missing", provider=self._name, path=path)
                continue
            if response.status_code in (400, 401, 403):
                # Some servers answer 401 for a token path they lack: try the other one too.
                refusal = refusal or (path, response)
                continue
            parsed = self._parse(response, path, m.OAuthToken, privilege="API client")
            self._oauth_path = path
            return self._token_from(parsed.access_token, parsed.expires_in, path)
        if refusal is not None:
            self._refused(*refusal, "the OAuth client credentials (client_id, client_secret)")
        raise ProviderNotReady(
            self._name, f"no OAuth token endpoint on this server (tried {', '.join(paths)})"
        )

    async def _fetch_user(self) -> Token:
        """A user bearer token from Basic credentials (Jamf Pro 10.35 and later)."""
        username, password = self._settings.username, self._settings.password
        if username is None or password is None:  # pragma: no cover - the settings forbid it
            raise ProviderNotReady(self._name, "no username and password configured")
        auth = httpx.BasicAuth(username, password.get_secret_value())
        response = await self._client.request("POST", USER_TOKEN_PATH, auth=auth)
        if response.status_code in (400, 401, 403):
            self._refused(USER_TOKEN_PATH, response, "the username and password")
        parsed = self._parse(response, USER_TOKEN_PATH, m.UserToken, privilege="user account")
        expires = m.parse_jamf_time(parsed.expires)
        lifetime = (expires - self._now()).total_seconds() if expires else 300.0
        return self._token_from(parsed.token, lifetime, USER_TOKEN_PATH)

    def _token_from(self, value: str, lifetime: float, path: str) -> Token:
        if lifetime <= 0:
            raise ProviderError(self._name, f"{path}: Jamf issued an already expired token")
        margin = min(self._settings.token_margin, lifetime / 2)
        self._ready = True
        log.info(
            "provider.token_refreshed",
            provider=self._name,
            auth=self.auth_kind,
            path=path,
            expires_in=round(lifetime),
        )
        return Token(value=value, expires_at=self._clock() + lifetime - margin)

    def _refused(self, path: str, response: httpx.Response, what: str) -> None:
        """Jamf refused the credentials: not ready, with a message naming no secret."""
        code = _error_code(response)
        self._ready = False
        message = (
            f"Jamf refused {what} (HTTP {response.status_code} on {path}"
            f"{', ' + code if code else ''})"
        )
        log.error(
            "provider.auth_failed",
            provider=self._name,
            path=path,
            status=response.status_code,
            error=code,
        )
        raise ProviderNotReady(self._name, message)


def _matches(record: DeviceRecord, identifier: DeviceIdentifier) -> bool:
    """Whether the record really carries the identifier (Jamf compares case-insensitively)."""
    wanted = identifier.normalized
    return any(v is not None and v.upper() == wanted for v in (record.serial, record.udid))


def _text(value: str | None) -> str | None:
    """Jamf writes "" for unset strings; the record says None."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _user(
    *,
    username: str | None,
    email: str | None,
    full_name: str | None,
    department: str | None,
    title: str | None,
) -> UserRecord | None:
    user = UserRecord(
        username=_text(username),
        email=_text(email),
        full_name=_text(full_name),
        department=_text(department),
        title=_text(title),
    )
    return user if user != UserRecord() else None


def _classic_user(location: m.ClassicLocation | None) -> UserRecord | None:
    if location is None:
        return None
    return _user(
        username=location.username,
        email=location.email_address,
        full_name=location.realname or location.real_name,
        department=location.department,
        title=location.position,
    )


def _mobile_platform(device_type: str | None, model: str | None) -> str | None:
    """Jamf says "iOS" (or "ios") for iPhones and iPads alike; the model tells them apart."""
    kind = (device_type or "").casefold()
    hint = (model or "").casefold().replace(" ", "")
    if "ipad" in hint:
        return "iPadOS"
    if "tv" in kind or "appletv" in hint:
        return "tvOS"
    if "vision" in kind or "realitydevice" in hint or "visionpro" in hint:
        return "visionOS"
    if kind in ("ios", "iphone", "ipod") or "iphone" in hint or "ipod" in hint:
        return "iOS"
    return _text(device_type)


def _error_code(response: httpx.Response) -> str | None:
    """A short, secret-free error code from a Jamf or OAuth error body, if there is one."""
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    code = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            code = body["error"]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0].get("code")
            code = first if isinstance(first, str) else code
    return code if code is not None and _ERROR_CODE.fullmatch(code) else None
