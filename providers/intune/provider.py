"""`IntuneProvider`: lifecycle, the lookup flow (device, then user, groups and UDID at once) and
the paged listing for sync mode (`_listing`)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import httpx
import structlog

from providers._http import UpstreamClient, bounded, starting
from providers._listing import ListedPage, iterate
from providers._records import newest, text
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind, ascii_upper
from providers.intune import _mapping as mapping
from providers.intune._api import GraphApi
from providers.intune._auth import IntuneTokens
from providers.intune._listing import IntuneLister
from providers.intune._models import DirectoryGroup, GraphUser, ManagedDevice
from providers.intune._settings import IntuneSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.intune")

MAX_UDID_CANDIDATES = 5
"""A UDID filter matching more devices than this is taken as ignored by Graph (fail closed)."""

_SAFE_IDENTIFIER = re.compile(r"[A-Za-z0-9-]{1,80}")
_T = TypeVar("_T")


async def _nothing() -> None:
    return None


class IntuneProvider:
    """Looks attested Apple devices up in Intune; see the package docstring for the flow."""

    def __init__(
        self,
        name: str,
        settings: IntuneSettings,
        *,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._settings = settings
        base = httpx.URL(f"{settings.graph_host}/v1.0/")
        headers = {"Accept": "application/json"}
        self._graph = UpstreamClient(name, str(base), settings, headers=headers, hooks=hooks)
        self._login = UpstreamClient(
            name, settings.authority_host, settings, headers=headers, hooks=hooks
        )
        self._tokens = IntuneTokens(
            name, settings, self._login, on_state=self._set_ready, hooks=hooks, clock=clock, now=now
        )
        self._api = GraphApi(name, self._graph, self._tokens.cache, base)
        self._lister = IntuneLister(name, settings, self._api, base)
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

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Fetch a first token so bad credentials show at startup as `ProviderNotReady`."""
        with starting(self._name):
            async with bounded(self._name, self._settings.budget):
                await self._tokens.cache.get()

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._graph.aclose()
        await self._login.aclose()

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
        requests, rounds = self._plan(identifier.kind is IdentifierKind.UDID)
        async with bounded(self._name, self._settings.budget) as deadline:
            with self._graph.admission(deadline, requests=requests, rounds=rounds):
                record = await self._lookup(identifier, deadline)
        if record is not None and record.compliance not in (None, *mapping.COMPLIANCE_STATES):
            log.warning(
                "provider.unknown_compliance_state", provider=self._name, value=record.compliance
            )
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
        candidates = await self._api.managed_devices(field, identifier.value, deadline)
        udids: dict[str, str | None] = {}
        if by_udid:
            if len(candidates) > MAX_UDID_CANDIDATES:
                raise ProviderError(
                    self._name, f"udid filter matched {len(candidates)} devices; Graph ignored it"
                )
            fetched = await _all(*(self._api.udid(d.id, deadline) for d in candidates))
            udids = {d.id: text(u) for d, u in zip(candidates, fetched, strict=True)}
            wanted = identifier.value.upper()
            matching = [d for d in candidates if ascii_upper(udids[d.id]) == wanted]
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
            candidates = [d for d in candidates if mapping.serial_matches(d, identifier.value)]
        device = newest(
            self._name,
            identifier,
            candidates,
            contact=lambda d: d.last_sync_date_time,
            record_id=lambda d: d.id,
        )
        if device is None:
            return None
        return await self._enrich(device, udids.get(device.id), deadline)

    def _plan(self, by_udid: bool) -> tuple[int, int]:
        """Requests and rounds of a lookup that finds one device: the search, the UDID check,
        then user, groups and UDID at once (device groups take two: the Entra device first)."""
        settings = self._settings
        requests = 2 + int(by_udid) + int(settings.user_groups) + int(settings.fetch_udid)
        requests += 2 * int(settings.device_groups)
        return requests, 1 + int(by_udid) + (2 if settings.device_groups else 1)

    async def _enrich(
        self, device: ManagedDevice, udid: str | None, deadline: float
    ) -> DeviceRecord:
        """The user, the user's and the device's groups and the UDID, all at once."""
        settings = self._settings
        user_id = text(device.user_id)
        azure_id = mapping.entra_device_id(device)
        async with asyncio.TaskGroup() as group:
            user = group.create_task(self._user(user_id, deadline) if user_id else _nothing())
            user_groups = group.create_task(
                self._api.groups("users", user_id, deadline, max_pages=settings.max_group_pages)
                if user_id and settings.user_groups
                else _nothing()
            )
            device_groups = group.create_task(
                self._device_groups(azure_id, deadline)
                if azure_id and settings.device_groups
                else _nothing()
            )
            fetched_udid = group.create_task(
                self._api.udid(device.id, deadline)
                if udid is None and settings.fetch_udid
                else _nothing()
            )
        groups: list[DirectoryGroup] = [
            *(user_groups.result() or ()),
            *(device_groups.result() or ()),
        ]
        return mapping.device_record(
            self._name,
            device,
            udid=udid or fetched_udid.result(),
            user=user.result(),
            groups=groups,
        )

    async def _user(self, user_id: str, deadline: float) -> GraphUser | None:
        user = await self._api.user(user_id, deadline)
        if user is None:
            log.warning("provider.user_not_found", provider=self._name, user_id=user_id)
        return user

    async def _device_groups(self, azure_id: str, deadline: float) -> list[DirectoryGroup]:
        """The Entra device's groups; a device object that is gone fails the lookup, since its
        groups are then unknown, not none (a device an admin put in a "Blocked" group whose
        Entra object was then deleted would pass every ``none_of``)."""
        object_id = await self._api.entra_device(azure_id, deadline)
        if object_id is not None:
            groups = await self._api.groups(
                "devices", object_id, deadline, max_pages=self._settings.max_group_pages
            )
            if groups is not None:
                return groups
        log.warning("provider.entra_device_not_found", provider=self._name, device_id=azure_id)
        raise ProviderError(
            self._name,
            "the managed device's Entra device is not in Entra: its device groups cannot be read",
        )

    # --- bulk listing (DeviceLister, PagedLister) ----------------------------------------------

    async def list_page(self, cursor: str | None) -> ListedPage:
        """One page of every managed device, enriched in bulk; resumable from `cursor`."""
        return await self._lister.list_page(cursor)

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every managed device, page by page (`DeviceLister`)."""
        return iterate(self.list_page, provider=self._name)


async def _all(*calls: Awaitable[_T]) -> list[_T]:
    """Run calls concurrently; the first failure cancels the rest (the boundary picks the error)."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_awaited(c)) for c in calls]
    return [t.result() for t in tasks]


async def _awaited(call: Awaitable[_T]) -> _T:
    return await call
