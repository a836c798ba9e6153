"""`AbmProvider`: lifecycle, the ownership lookup and the listing for sync mode."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

import structlog

from providers._http import UpstreamClient, bounded, split_url, starting
from providers._listing import CursorTrail
from providers.abm import _mapping as mapping
from providers.abm import _models as m
from providers.abm._api import AbmApi
from providers.abm._auth import AbmTokens
from providers.abm._settings import AbmSettings
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind, ascii_upper
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.abm")

_SERIAL = re.compile(r"[A-Za-z0-9]{1,80}")
MAX_SERVER_PAGES = 100
"""Pages of device management services read at start and per listing (100 per page)."""


class AbmProvider:
    """Answers whether the organisation holds a serial, and which MDM service it is assigned to."""

    def __init__(
        self,
        name: str,
        settings: AbmSettings,
        *,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._settings = settings
        headers = {"Accept": "application/json"}
        self._client = UpstreamClient(
            name, settings.api_base, settings, headers=headers, hooks=hooks
        )
        origin, _ = split_url(settings.token_url)
        self._login = UpstreamClient(name, origin, settings, headers=headers, hooks=hooks)
        self._tokens = AbmTokens(
            name, settings, self._login, on_state=self._set_ready, hooks=hooks, clock=clock, now=now
        )
        self._api = AbmApi(name, self._client, self._tokens.cache)
        self._ready = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True once Apple granted a token (and has not refused one since)."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    @property
    def auth_kind(self) -> Literal["client_assertion"]:
        """The only credential this kind takes."""
        return self._settings.auth_kind

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Fetch a token and read the device management services, checking `mdm_servers`.

        A configured service Apple does not list is logged (``provider.mdm_server_unknown``):
        with a typo there, every device would be unmanaged.
        """
        try:
            with starting(self._name):
                async with bounded(self._name, self._settings.budget) as deadline:
                    await self._tokens.cache.get()
                    servers = await self._servers(deadline)
        except ProviderError:
            self._ready = False
            raise
        self._ready = True
        for entry in self._settings.mdm_servers:
            if not any(mapping.is_ours(s, (entry,)) for s in servers):
                log.warning("provider.mdm_server_unknown", provider=self._name, mdm_server=entry)
        log.info(
            "provider.ready",
            provider=self._name,
            auth=self.auth_kind,
            mdm_servers=len(servers),
        )

    async def _servers(self, deadline: float) -> list[m.MdmServer]:
        servers: list[m.MdmServer] = []
        cursor: str | None = None
        for _ in range(MAX_SERVER_PAGES):
            page = await self._api.servers(cursor, 100, deadline)
            servers.extend(page.data)
            cursor = m.next_cursor(page.meta)
            if cursor is None:
                return servers
        raise ProviderError(self._name, "more device management services than can be read")

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._client.aclose()
        await self._login.aclose()

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """The device the organisation holds under this serial; a released one is not held."""
        if identifier.kind is IdentifierKind.UDID:
            log.info("provider.udid_not_searchable", provider=self._name)
            return None
        if identifier.kind is not IdentifierKind.SERIAL:
            return None
        if not _SERIAL.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        serial = identifier.value.upper()
        async with bounded(self._name, self._settings.budget) as deadline:
            device = await self._api.device(serial, deadline)
            if device is not None and ascii_upper(device.serial) != serial:
                raise ProviderError(self._name, "Apple answered another device")
            server = None
            if device is not None and not device.released and _may_be_assigned(device):
                server = await self._api.assigned_server(serial, deadline)
        if device is not None and device.released:
            log.info("provider.device_released", provider=self._name, identifier=serial)
            device = None
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            found=device is not None,
            assigned=server is not None,
        )
        if device is None:
            return None
        return mapping.device_record(self._name, device, server, self._settings.mdm_servers)

    # --- bulk listing (DeviceLister) ------------------------------------------------------------

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device the organisation holds, with its assigned service.

        The assignment comes from each service's device list (a few pages) rather than one
        request per device.
        """
        assigned = await self._assignments()
        cursor: str | None = None
        trail = CursorTrail(self._name)
        while True:
            async with bounded(self._name, self._settings.budget) as deadline:
                page = await self._api.devices(cursor, self._settings.page_size, deadline)
            for device in page.data:
                if not device.released:
                    yield mapping.device_record(
                        self._name,
                        device,
                        assigned.get(ascii_upper(device.serial)),
                        self._settings.mdm_servers,
                    )
            cursor = m.next_cursor(page.meta)
            if cursor is None:
                return
            trail.follow(cursor)

    async def _assignments(self) -> dict[str, m.MdmServer]:
        """Serial (upper case) to the device management service it is assigned to."""
        async with bounded(self._name, self._settings.budget) as deadline:
            servers = await self._servers(deadline)
        assigned: dict[str, m.MdmServer] = {}
        for server in servers:
            cursor: str | None = None
            trail = CursorTrail(self._name)
            while True:
                async with bounded(self._name, self._settings.budget) as deadline:
                    page = await self._api.server_devices(
                        quote(server.id, safe=""), cursor, self._settings.page_size, deadline
                    )
                for linkage in page.data:
                    if key := ascii_upper(linkage.id):
                        assigned[key] = server
                cursor = m.next_cursor(page.meta)
                if cursor is None:
                    break
                trail.follow(cursor)
        return assigned


def _may_be_assigned(device: m.OrgDevice) -> bool:
    """Only a device Apple does not mark UNASSIGNED is worth asking about its service."""
    return (device.attributes.status or "").upper() != "UNASSIGNED"
