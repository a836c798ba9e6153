"""`FleetProvider`: lifecycle, the lookup flow, and the paged listing for sync mode."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import structlog

from providers._http import UpstreamClient, bounded, starting
from providers._http._static import StaticBearerAuth
from providers._listing import ListedPage, iterate
from providers.base import DeviceRecord, ProviderError
from providers.fleet import _mapping as mapping
from providers.fleet._api import FleetApi
from providers.fleet._models import Host
from providers.fleet._settings import FleetSettings
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.fleet")

PROVISIONING_UDID_HINT = (
    "Fleet knows a Mac by its hardware UUID, but a Mac attests its provisioning UDID, which "
    "Fleet does not record; attest the serial number"
)
_SAFE = re.compile(r"[A-Za-z0-9-]{1,80}")


class FleetProvider:
    """Looks attested devices up in Fleet; see the package docstring for the flow."""

    def __init__(
        self, name: str, settings: FleetSettings, *, hooks: ProviderHook = NO_HOOKS
    ) -> None:
        self._name = name
        self._settings = settings
        self._client = UpstreamClient(
            name, settings.url, settings, headers={"Accept": "application/json"}, hooks=hooks
        )
        auth = StaticBearerAuth(name, settings.api_token, on_state=self._set_ready, hooks=hooks)
        self._api = FleetApi(name, self._client, auth)
        self._ready = False
        self._udid_hint_logged = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True while Fleet last accepted the API token."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Ask Fleet who the token belongs to, so a refused token shows at startup."""
        with starting(self._name):
            async with bounded(self._name, self._settings.budget) as deadline:
                await self._api.me(deadline)
        self._ready = True
        log.info("provider.ready", provider=self._name)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """The host with this serial or UUID; a host that is not that device fails closed."""
        if identifier.kind not in (IdentifierKind.SERIAL, IdentifierKind.UDID):
            return None
        if not _SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        async with bounded(self._name, self._settings.budget) as deadline:
            host = await self._api.host_by_identifier(identifier.value, deadline)
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            found=host is not None,
        )
        if host is None:
            if identifier.kind is IdentifierKind.UDID:
                self._provisioning_udid_hint()
            return None
        if not mapping.matches(host, identifier):
            # Fleet also matches hostnames: a host named after this serial is another device.
            log.warning(
                "provider.unmatched_records",
                provider=self._name,
                identifier=identifier.value,
                returned=1,
                matching=0,
                record_id=host.id,
            )
            raise ProviderError(
                self._name, "Fleet answered a host whose serial or UUID is not the identifier"
            )
        return self._record(host)

    def _record(self, host: Host) -> DeviceRecord:
        settings = self._settings
        return mapping.device_record(
            self._name, host, policies=settings.policy_groups, idp=settings.idp_groups
        )

    def _provisioning_udid_hint(self) -> None:
        """Say once why a Mac attested by UDID is never found here."""
        if not self._udid_hint_logged:
            self._udid_hint_logged = True
            log.info(
                "provider.provisioning_udid_unsupported",
                provider=self._name,
                reason=PROVISIONING_UDID_HINT,
            )

    # --- listing (sync mode) -------------------------------------------------------------------

    async def list_page(self, cursor: str | None) -> ListedPage:
        """One page of hosts (by id), each read in full; the cursor is the page number."""
        number = int(cursor) if cursor else 0
        size = self._settings.page_size
        async with bounded(self._name, self._settings.budget) as deadline:
            ids = await self._api.host_ids(number, size, deadline)
        slots = asyncio.Semaphore(self._settings.max_connections)

        async def read(host_id: str) -> Host | None:
            async with slots, bounded(self._name, self._settings.budget) as deadline:
                return await self._api.host(host_id, deadline)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(read(i)) for i in ids]
        records = [self._record(h) for t in tasks if (h := t.result()) is not None]
        return ListedPage(records, str(number + 1) if len(ids) >= size else None)

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every host, page by page (`DeviceLister`)."""
        return iterate(self.list_page, provider=self._name)
