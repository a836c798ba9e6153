"""`WorkspaceOneProvider`: lifecycle, the lookup flow and the listing for sync mode."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

import httpx
import structlog

from providers._http import BearerAuth, UpstreamClient, bounded, split_url, starting
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.observe import NO_HOOKS, ProviderHook
from providers.workspaceone import _mapping as mapping
from providers.workspaceone import _models as m
from providers.workspaceone._api import ACCEPT, WorkspaceOneApi
from providers.workspaceone._auth import WorkspaceOneTokens
from providers.workspaceone._settings import WorkspaceOneSettings

log = structlog.get_logger("providers.workspaceone")

# Defence in depth: `providers.identifiers.classify` already admits only these characters.
_SAFE = re.compile(r"[A-Za-z0-9-]{1,80}")


class WorkspaceOneProvider:
    """Looks devices up in Workspace ONE UEM; see the package docstring for the flow."""

    def __init__(
        self,
        name: str,
        settings: WorkspaceOneSettings,
        *,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._settings = settings
        headers = {"Accept": ACCEPT}
        if settings.tenant_code is not None:
            headers["aw-tenant-code"] = settings.tenant_code.get_secret_value()
        self._client = UpstreamClient(name, settings.url, settings, headers=headers, hooks=hooks)
        self._login: UpstreamClient | None = None
        self._tokens: WorkspaceOneTokens | None = None
        auth: httpx.Auth
        if settings.auth_kind == "oauth" and settings.token_url is not None:
            login_headers = {"Accept": "application/json"}
            self._login = UpstreamClient(
                name, split_url(settings.token_url)[0], settings, headers=login_headers, hooks=hooks
            )
            self._tokens = WorkspaceOneTokens(
                name, settings, self._login, on_state=self._set_ready, hooks=hooks, clock=clock
            )
            auth = BearerAuth(name, self._tokens.cache)
        else:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username or "", password)
        self._api = WorkspaceOneApi(
            name, self._client, auth, basic=settings.auth_kind == "basic", on_state=self._set_ready
        )
        self._ready = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True once Workspace ONE accepted the credentials (and has not refused them since)."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    @property
    def auth_kind(self) -> Literal["oauth", "basic"]:
        """Which credential the settings give."""
        return self._settings.auth_kind

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Fetch a token (OAuth) and read one search page, proving URL, credentials and role.

        Raises `ProviderNotReady` with a secret-free message when that fails.
        """
        try:
            with starting(self._name):
                async with bounded(self._name, self._settings.budget) as deadline:
                    if self._tokens is not None:
                        await self._tokens.cache.get()
                    await self._api.search(0, 1, deadline)
        except ProviderError:
            self._ready = False
            raise
        self._ready = True
        log.info("provider.ready", provider=self._name, auth=self.auth_kind)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()
        if self._login is not None:
            await self._login.aclose()

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """The device with this serial or UDID, with its smart groups."""
        if identifier.kind not in (IdentifierKind.SERIAL, IdentifierKind.UDID):
            return None
        if not _SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        async with bounded(self._name, self._settings.budget) as deadline:
            device = await self._find(identifier, deadline)
            if device is None:
                record = None
            else:
                record = await self._record(device, deadline)
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            found=record is not None,
        )
        return record

    async def _find(self, identifier: DeviceIdentifier, deadline: float) -> m.Device | None:
        """Search by the attested form; a dashed UDID is tried once more without dashes."""
        if identifier.kind is IdentifierKind.SERIAL:
            attempts: Sequence[tuple[str, str]] = (("Serialnumber", identifier.value),)
        else:
            attempts = [("Udid", identifier.value)]
            if "-" in identifier.value:
                attempts.append(("Udid", identifier.value.replace("-", "")))
        for searchby, value in attempts:
            device = await self._api.device(searchby, value, deadline)
            if device is None:
                continue
            if not mapping.matches(device, identifier):
                # An answer for another device must never decide (a misread search).
                log.warning(
                    "provider.unmatched_records",
                    provider=self._name,
                    identifier=identifier.value,
                    returned=1,
                    matching=0,
                )
                raise ProviderError(self._name, "Workspace ONE answered another device")
            return device
        return None

    async def _record(self, device: m.Device, deadline: float) -> DeviceRecord:
        groups: tuple[m.SmartGroupRef, ...] = ()
        if self._settings.smart_groups:
            if device.record_id is None:
                raise ProviderError(self._name, "Workspace ONE answered a device without an id")
            groups = await self._api.smart_groups(device.record_id, deadline)
        record = mapping.device_record(
            self._name, device, groups, organization_group=self._settings.organization_group
        )
        if device.ComplianceStatus and record.compliance is None:
            log.warning(
                "provider.unknown_compliance_state",
                provider=self._name,
                value=device.ComplianceStatus,
            )
        return record

    # --- bulk listing (DeviceLister) ------------------------------------------------------------

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device, page by page; smart groups per device (concurrency bounded)."""
        size = self._settings.page_size
        seen = 0
        gate = asyncio.Semaphore(self._settings.max_connections)
        for number in range(1_000_000):
            async with bounded(self._name, self._settings.budget) as deadline:
                page = await self._api.search(number, size, deadline)
            records = await asyncio.gather(*(self._listed(d, gate) for d in page.Devices))
            for record in records:
                yield record
            seen += len(page.Devices)
            # A page without `Total` (0) says nothing of the rest: a short page ends it.
            if not page.Devices or len(page.Devices) < size or 0 < page.Total <= seen:
                break

    async def _listed(self, device: m.Device, gate: asyncio.Semaphore) -> DeviceRecord:
        async with gate, bounded(self._name, self._settings.budget) as deadline:
            return await self._record(device, deadline)
