"""`KandjiProvider`: lifecycle, the lookup flow, and the paged listing for sync mode."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import structlog

from providers._http import UpstreamClient, bounded, starting
from providers._http._static import StaticBearerAuth
from providers._listing import ListedPage, iterate
from providers._records import iso_time, newest
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.kandji import _mapping as mapping
from providers.kandji._api import KandjiApi
from providers.kandji._models import DeviceDetails, KandjiDevice
from providers.kandji._settings import MAX_PAGE_SIZE, KandjiSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.kandji")

MAX_SEARCH_PAGES = 3
"""Pages of substring matches read for one serial before the search counts as broken."""

UDID_HINT = (
    "Kandji cannot search devices by UDID, and a Mac attests its provisioning UDID, which "
    "Kandji does not record; attest the serial number"
)
_SERIAL_SAFE = re.compile(r"[A-Za-z0-9]{1,40}")


class KandjiProvider:
    """Looks attested Apple devices up in Kandji; see the package docstring for the flow."""

    def __init__(
        self, name: str, settings: KandjiSettings, *, hooks: ProviderHook = NO_HOOKS
    ) -> None:
        self._name = name
        self._settings = settings
        self._client = UpstreamClient(
            name, settings.url, settings, headers={"Accept": "application/json"}, hooks=hooks
        )
        auth = StaticBearerAuth(name, settings.api_token, on_state=self._set_ready, hooks=hooks)
        self._api = KandjiApi(name, self._client, auth)
        self._ready = False
        self._udid_hint_logged = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True while Kandji last accepted the API token."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """List one device, so a refused token or a missing permission shows at startup."""
        with starting(self._name):
            async with bounded(self._name, self._settings.budget) as deadline:
                await self._api.devices(deadline, limit=1)
        self._ready = True
        log.info("provider.ready", provider=self._name, fetch_details=self._settings.fetch_details)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    # --- lookups -------------------------------------------------------------------------------

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Search by serial, keep the exact match (newest check-in wins), add its details."""
        if identifier.kind is IdentifierKind.UDID:
            self._no_udid_search()
            return None
        if identifier.kind is not IdentifierKind.SERIAL:
            return None  # Kandji knows Apple serials only
        if not _SERIAL_SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        async with bounded(self._name, self._settings.budget) as deadline:
            matches = await self._search(identifier.value, deadline)
            device = newest(
                self._name,
                identifier,
                matches,
                contact=lambda d: iso_time(d.last_check_in),
                record_id=lambda d: d.device_id,
            )
            if device is None:
                found = None
            else:
                found = await self._record(device, deadline)
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            matches=len(matches),
        )
        return found

    async def _search(self, serial: str, deadline: float) -> list[KandjiDevice]:
        """Every device whose serial is exactly `serial` (Kandji matches substrings)."""
        exact: list[KandjiDevice] = []
        for page in range(MAX_SEARCH_PAGES):
            devices = await self._api.devices(
                deadline, limit=MAX_PAGE_SIZE, offset=page * MAX_PAGE_SIZE, serial=serial
            )
            exact += [d for d in devices if mapping.serial_matches(d, serial)]
            if len(devices) < MAX_PAGE_SIZE:
                return exact
        raise ProviderError(
            self._name, f"more than {MAX_SEARCH_PAGES * MAX_PAGE_SIZE} devices match one serial"
        )

    async def _record(self, device: KandjiDevice, deadline: float) -> DeviceRecord | None:
        details: DeviceDetails | None = None
        if self._settings.fetch_details:
            details = await self._api.details(device.device_id, deadline)
            if details is None:
                return None  # removed from Kandji between the search and the details
        return mapping.device_record(self._name, device, details)

    def _no_udid_search(self) -> None:
        """A UDID is "not in this inventory"; say why once, not on every enrolment."""
        if not self._udid_hint_logged:
            self._udid_hint_logged = True
            log.info("provider.udid_not_searchable", provider=self._name, reason=UDID_HINT)

    # --- listing (sync mode) -------------------------------------------------------------------

    async def list_page(self, cursor: str | None) -> ListedPage:
        """The devices from offset `cursor` on, one Kandji page, each with its details."""
        offset = int(cursor) if cursor else 0
        size = self._settings.page_size
        async with bounded(self._name, self._settings.budget) as deadline:
            devices = await self._api.devices(deadline, limit=size, offset=offset)
        slots = asyncio.Semaphore(self._settings.max_connections)

        async def complete(device: KandjiDevice) -> DeviceRecord | None:
            if not self._settings.fetch_details:
                return mapping.device_record(self._name, device, None)
            async with slots, bounded(self._name, self._settings.budget) as deadline:
                return await self._record(device, deadline)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(complete(d)) for d in devices]
        records = [r for t in tasks if (r := t.result()) is not None]
        return ListedPage(records, str(offset + size) if len(devices) >= size else None)

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device, page by page (`DeviceLister`)."""
        return iterate(self.list_page, provider=self._name)
