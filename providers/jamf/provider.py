"""`JamfProvider`: lifecycle, the lookup flow, API version choice and the Classic fallback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

import structlog
from cachetools import TTLCache

from providers._coalesce import Coalescer
from providers._http import UpstreamClient, bounded, starting
from providers._listing import ListedPage, iterate
from providers._records import newest
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.jamf import _mapping as mapping
from providers.jamf import _models as m
from providers.jamf._api import (
    COMPUTER_SECTIONS,
    MOBILE_DETAIL_PATH,
    MOBILE_SECTIONS,
    JamfApi,
    computers_path,
)
from providers.jamf._auth import JamfTokens
from providers.jamf._listing import JamfLister
from providers.jamf._settings import DeviceClass, JamfSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.jamf")

# Probed newest first when `computers_api_version = "auto"`; v4 arrived in 11.30, v3 in 11.23.
AUTO_VERSIONS = ("v4", "v3", "v1")
# Defence in depth: `providers.identifiers.classify` already admits only these characters.
_RSQL_SAFE = re.compile(r"[A-Za-z0-9-]{1,80}")


class JamfProvider:
    """Looks devices up in Jamf Pro; see the package docstring for the request flow."""

    def __init__(
        self,
        name: str,
        settings: JamfSettings,
        *,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._settings = settings
        self._client = UpstreamClient(
            name, settings.url, settings, headers={"Accept": "application/json"}, hooks=hooks
        )
        self._tokens = JamfTokens(
            name,
            settings,
            self._client,
            on_state=self._set_ready,
            hooks=hooks,
            clock=clock,
            now=now,
        )
        self._api = JamfApi(name, self._client, self._tokens.cache)
        self._departments: TTLCache[str, str | None] = TTLCache(
            maxsize=1024, ttl=settings.department_ttl, timer=clock
        )
        # Shared by lookups, so bounded by no one of them: never longer than one lookup may take.
        self._department_calls: Coalescer[str, str | None] = Coalescer(name, limit=settings.budget)
        self._computers_api: str | None = (
            None if settings.computers_api_version == "auto" else settings.computers_api_version
        )
        self._version_lock = asyncio.Lock()
        self._classic: set[DeviceClass] = set()
        self._ready = False
        self._lister = JamfLister(
            name, settings, self._api, version=self._computers_version, department=self._department
        )

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
        return self._settings.auth_kind

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch a token (and pick the computers API version when set to auto).

        Raises `ProviderNotReady` with a secret-free message when Jamf refuses the
        credentials or cannot be reached, so `/readyz` reports the provider as not ready.
        """
        try:
            with starting(self._name):
                async with bounded(self._name, self._settings.budget) as deadline:
                    await self._tokens.cache.get()
                    if "computers" in self._settings.classes:
                        await self._computers_version(deadline)
        except ProviderError:
            self._ready = False
            raise
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
        """Stop shared department fetches and close pooled connections."""
        await self._department_calls.aclose()
        await self._client.aclose()

    # --- lookups -------------------------------------------------------------------------------

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Search the configured device classes the identifier can belong to, concurrently, as
        one admitted lookup (refused at once when it could not finish in the budget); the newest
        contact wins."""
        if identifier.kind not in (IdentifierKind.SERIAL, IdentifierKind.UDID):
            return None  # Jamf knows Apple serials and UDIDs only
        if not _RSQL_SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has characters unsafe for a filter")
        classes = mapping.classes_for(identifier, self._settings.classes)
        if not classes:
            return None  # a UDID of a platform this provider does not serve
        async with bounded(self._name, self._settings.budget) as deadline:
            # One search per class, at once; department names are mostly cached.
            with self._client.admission(deadline, requests=len(classes)):
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(self._lookup_class(cls, identifier, deadline))
                        for cls in classes
                    ]
        found = [record for task in tasks for record in task.result()]
        records = [r for r in found if mapping.matches(r, identifier)]
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
        return newest(
            self._name,
            identifier,
            records,
            contact=lambda r: r.last_contact,
            record_id=lambda r: r.record_id,
        )

    async def _lookup_class(
        self, cls: DeviceClass, identifier: DeviceIdentifier, deadline: float
    ) -> list[DeviceRecord]:
        serial = identifier.kind is IdentifierKind.SERIAL
        value = identifier.value
        if cls == "computers":
            version = await self._computers_version(deadline)
            if version is not None and "computers" not in self._classic:
                field = "hardware.serialNumber" if serial else "udid"
                computers = await self._api.search(
                    computers_path(version),
                    m.ComputerResults,
                    COMPUTER_SECTIONS,
                    f'{field}=="{value}"',
                    deadline,
                    privilege="Read Computers",
                    page_size=self._settings.page_size,
                )
                if computers is not None:
                    return await self._computer_records(computers, deadline)
                self._missing("computers", computers_path(version))
            return await self._classic_lookup("computers", serial, value, deadline)
        if "mobile" not in self._classic:
            field = "serialNumber" if serial else "udid"
            mobiles = await self._api.search(
                MOBILE_DETAIL_PATH,
                m.MobileResults,
                MOBILE_SECTIONS,
                f'{field}=="{value}"',
                deadline,
                privilege="Read Mobile Devices",
                page_size=self._settings.page_size,
            )
            if mobiles is not None:
                return [mapping.mobile_record(self._name, d) for d in mobiles]
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
                if await self._api.probe(version, deadline):
                    self._computers_api = version
                    log.info("provider.api_version_selected", provider=self._name, version=version)
                    return version
            self._missing("computers", "/api/{v4,v3,v1}/computers-inventory")
            return None

    async def _computer_records(
        self, computers: list[m.Computer], deadline: float
    ) -> list[DeviceRecord]:
        """Map computers after resolving their department ids to names, concurrently."""
        ids = sorted(mapping.department_ids(computers))
        names = await asyncio.gather(*(self._department(i, deadline) for i in ids))
        departments = dict(zip(ids, names, strict=True))
        return [mapping.computer_record(self._name, c, departments) for c in computers]

    async def _department(self, department_id: str, deadline: float) -> str | None:
        """A department's name; answers (404 included) are cached, concurrent asks share one."""
        try:
            return self._departments[department_id]
        except KeyError:
            pass
        if not _RSQL_SAFE.fullmatch(department_id):
            return None  # never put an unexpected value into a path

        async def fetch() -> str | None:
            with self._client.shared():
                name = await self._api.department(department_id, deadline)
            self._departments[department_id] = name
            return name

        return await self._department_calls.run(department_id, fetch)

    async def _classic_lookup(
        self, cls: DeviceClass, serial: bool, value: str, deadline: float
    ) -> list[DeviceRecord]:
        by = "serialnumber" if serial else "udid"
        if cls == "computers":
            computer = await self._api.classic_computer(by, value, deadline)
            if computer is None:
                return []
            return [mapping.classic_computer_record(self._name, computer)]
        mobile = await self._api.classic_mobile(by, value, deadline)
        return [] if mobile is None else [mapping.classic_mobile_record(self._name, mobile)]

    # --- bulk listing (DeviceLister, PagedLister) ----------------------------------------------

    async def list_page(self, cursor: str | None) -> ListedPage:
        """One page of the whole inventory, resumable from `cursor` (see `_listing`)."""
        return await self._lister.list_page(cursor)

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every computer and mobile device, page by page (Pro API only)."""
        return iterate(self.list_page, provider=self._name)
