"""`GoogleProvider`: lifecycle, the serial lookup and the listing for sync mode."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

import structlog

from providers._http import UpstreamClient, bounded, split_url, starting
from providers._listing import CursorTrail
from providers._records import newest
from providers.base import DeviceRecord, ProviderError
from providers.google import _mapping as mapping
from providers.google import _models as m
from providers.google._api import GoogleApi, rate_limited
from providers.google._auth import GoogleTokens
from providers.google._settings import GoogleSettings
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.google")

# Defence in depth: `classify` admits only these; a serial goes into Google's search syntax.
_SERIAL = re.compile(r"[A-Za-z0-9]{1,80}")


class GoogleProvider:
    """Looks attested iPhones and iPads up in Google endpoint management by serial."""

    def __init__(
        self,
        name: str,
        settings: GoogleSettings,
        *,
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._settings = settings
        headers = {"Accept": "application/json"}
        self._client = UpstreamClient(
            name, settings.api_url, settings, headers=headers, hooks=hooks, retry_when=rate_limited
        )
        origin, _ = split_url(settings.token_url)
        self._login = UpstreamClient(name, origin, settings, headers=headers, hooks=hooks)
        self._tokens = GoogleTokens(
            name, settings, self._login, on_state=self._set_ready, hooks=hooks, clock=clock, now=now
        )
        self._api = GoogleApi(name, self._client, self._tokens.cache, settings.customer_id)
        self._ready = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True once Google granted a token (and has not refused one since)."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    @property
    def auth_kind(self) -> Literal["service_account"]:
        """The only credential this kind takes."""
        return self._settings.auth_kind

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Fetch a token and read one device, proving key, delegation, privilege and customer."""
        try:
            with starting(self._name):
                async with bounded(self._name, self._settings.budget) as deadline:
                    await self._tokens.cache.get()
                    await self._api.page(None, None, 1, deadline)
        except ProviderError:
            self._ready = False
            raise
        self._ready = True
        log.info("provider.ready", provider=self._name, auth=self.auth_kind)

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._client.aclose()
        await self._login.aclose()

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """The device with this serial; Google knows no UDIDs, so a UDID is never found."""
        if identifier.kind is IdentifierKind.UDID:
            log.info("provider.udid_not_searchable", provider=self._name)
            return None
        if identifier.kind is not IdentifierKind.SERIAL:
            return None
        if not _SERIAL.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        settings = self._settings
        async with bounded(self._name, settings.budget) as deadline:
            found = await self._api.by_serial(
                identifier.value, settings.page_size, settings.max_pages, deadline
            )
        exact = [d for d in found if mapping.matches(d, identifier.value)]
        log.debug(
            "provider.searched",
            provider=self._name,
            kind=identifier.kind.value,
            returned=len(found),
            matches=len(exact),
        )
        device = newest(
            self._name,
            identifier,
            exact,
            contact=lambda d: m.parse_time(d.lastSync),
            record_id=lambda d: d.resourceId,
        )
        if device is None:
            return None
        return mapping.device_record(self._name, device, managed_types=settings.managed_types)

    # --- bulk listing (DeviceLister) ------------------------------------------------------------

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every mobile device of the customer, page by page."""
        token: str | None = None
        trail = CursorTrail(self._name)
        while True:
            async with bounded(self._name, self._settings.budget) as deadline:
                page = await self._api.page(None, token, self._settings.page_size, deadline)
            for device in page.mobiledevices:
                yield mapping.device_record(
                    self._name, device, managed_types=self._settings.managed_types
                )
            if not page.nextPageToken:
                return
            token = trail.follow(page.nextPageToken)
