"""`MosyleProvider`: lifecycle, the lookup flow, device groups, and the listing for sync mode."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import structlog
from cachetools import TTLCache

from providers._coalesce import Coalescer
from providers._http import UpstreamClient, bounded, starting
from providers._listing import ListedPage, iterate
from providers._records import newest
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.mosyle import _mapping as mapping
from providers.mosyle._api import MosyleApi
from providers.mosyle._auth import MosyleTokens
from providers.mosyle._models import DevicesPayload, MosyleDevice
from providers.mosyle._settings import MosyleSettings
from providers.observe import NO_HOOKS, ProviderHook
from providers.unicode import ascii_digits

log = structlog.get_logger("providers.mosyle")

MAX_LIST_PAGES = 10_000
"""Pages of one device family a listing reads before it counts the server as broken."""

UDID_HINT = (
    "Mosyle's device list cannot be searched by UDID, and a Mac attests its provisioning UDID, "
    "which Mosyle does not record; attest the serial number"
)
_SERIAL_SAFE = re.compile(r"[A-Za-z0-9]{1,40}")


class MosyleProvider:
    """Looks attested Apple devices up in Mosyle Manager; see the package docstring."""

    def __init__(
        self,
        name: str,
        settings: MosyleSettings,
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
        self._tokens = MosyleTokens(
            name,
            settings,
            self._client,
            on_state=self._set_ready,
            hooks=hooks,
            clock=clock,
            now=now,
        )
        self._api = MosyleApi(name, self._client, self._tokens.cache, settings)
        self._groups: TTLCache[str, mapping.GroupIndex] = TTLCache(
            maxsize=8, ttl=settings.group_ttl, timer=clock
        )
        # Shared by lookups, so bounded by no one of them: never longer than one lookup may take.
        self._group_calls: Coalescer[str, mapping.GroupIndex] = Coalescer(
            name, limit=settings.budget
        )
        self._ready = False
        self._udid_hint_logged = False

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True while Mosyle last accepted the login."""
        return self._ready

    @property
    def cacheable(self) -> bool:
        """Remote answers are worth caching."""
        return True

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    async def start(self) -> None:
        """Log in, so refused credentials show at startup as `ProviderNotReady`."""
        with starting(self._name):
            async with bounded(self._name, self._settings.budget):
                await self._tokens.cache.get()
        log.info(
            "provider.ready", provider=self._name, os_families=list(self._settings.os_families)
        )

    async def aclose(self) -> None:
        """Stop shared group fetches and close pooled connections."""
        await self._group_calls.aclose()
        await self._client.aclose()

    # --- lookups -------------------------------------------------------------------------------

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Search every configured family by serial at once; the newest heartbeat wins."""
        if identifier.kind is IdentifierKind.UDID:
            self._no_udid_search()
            return None
        if identifier.kind is not IdentifierKind.SERIAL:
            return None
        if not _SERIAL_SAFE.fullmatch(identifier.value):
            raise ProviderError(self._name, "identifier has an unexpected shape")
        serial = identifier.value
        async with bounded(self._name, self._settings.budget) as deadline:
            async with asyncio.TaskGroup() as group:
                tasks = {
                    family: group.create_task(
                        self._api.devices(family, deadline, page=0, serial=serial)
                    )
                    for family in self._settings.os_families
                }
            returned = [(f, d) for f, t in tasks.items() for d in t.result().devices]
            found = [(f, d) for f, d in returned if mapping.serial_matches(d, serial)]
            log.debug("provider.searched", provider=self._name, kind="serial", matches=len(found))
            if returned and not found:
                # A filter Mosyle ignored must never turn into "not found" or another device.
                log.warning(
                    "provider.unmatched_records",
                    provider=self._name,
                    identifier=serial,
                    returned=len(returned),
                    matching=0,
                )
                raise ProviderError(self._name, "Mosyle answered devices that are not the serial")
            chosen = newest(
                self._name,
                identifier,
                found,
                contact=lambda pair: mapping.last_contact(pair[1]),
                record_id=lambda pair: pair[1].deviceudid,
            )
            if chosen is None:
                return None
            family, device = chosen
            return await self._record(device, family, deadline)

    async def _record(self, device: MosyleDevice, family: str, deadline: float) -> DeviceRecord:
        index = await self._group_index(family, deadline) if self._settings.device_groups else None
        return mapping.device_record(
            self._name,
            device,
            family,
            enrolled=self._settings.enrolled_statuses,
            index=index,
        )

    async def _group_index(self, family: str, deadline: float) -> mapping.GroupIndex:
        """The family's device groups by member UDID: cached, concurrent asks share one read."""
        try:
            return self._groups[family]
        except KeyError:
            pass

        async def fetch() -> mapping.GroupIndex:
            index = await self._read_groups(family, deadline)
            self._groups[family] = index
            return index

        return await self._group_calls.run(family, fetch)

    async def _read_groups(self, family: str, deadline: float) -> mapping.GroupIndex:
        """Every page of device groups; more than `max_group_pages` fails closed."""
        groups = []
        for page in range(1, self._settings.max_group_pages + 1):
            answer = await self._api.group_devices(family, page, deadline)
            groups += answer.groups
            if not answer.groups or (answer.rows is not None and len(groups) >= answer.rows):
                return mapping.group_index(groups)
            if answer.rows is None and len(answer.groups) < (answer.page_size or 1):
                return mapping.group_index(groups)
        # Truncating would let a none_of group rule pass on partial data.
        raise ProviderError(
            self._name,
            f"more than {self._settings.max_group_pages} pages of {family} device groups; "
            "raise max_group_pages",
        )

    def _no_udid_search(self) -> None:
        """A UDID is "not in this inventory"; say why once, not on every enrolment."""
        if not self._udid_hint_logged:
            self._udid_hint_logged = True
            log.info("provider.udid_not_searchable", provider=self._name, reason=UDID_HINT)

    # --- listing (sync mode) -------------------------------------------------------------------

    async def list_page(self, cursor: str | None) -> ListedPage:
        """One page of one family; the cursor is ``FAMILY:PAGE`` (pages count from 0)."""
        families = self._settings.os_families
        family, _, number = (cursor or f"{families[0]}:0").partition(":")
        page = int(number) if ascii_digits(number) else MAX_LIST_PAGES
        if family not in families or page >= MAX_LIST_PAGES:
            raise ProviderError(self._name, f"listing cursor {cursor!r} is out of range")
        async with bounded(self._name, self._settings.budget) as deadline:
            answer = await self._api.devices(family, deadline, page=page)
            records = [await self._record(d, family, deadline) for d in answer.devices]
        return ListedPage(records, self._next(family, page, answer))

    def _next(self, family: str, page: int, answer: DevicesPayload) -> str | None:
        """The same family's next page while Mosyle has more, else the next family's first."""
        count = len(answer.devices)
        size = answer.page_size or count
        if answer.rows is not None:
            more = count > 0 and page * size + count < answer.rows
        else:
            more = count > 0 and count >= size
        if more:
            return f"{family}:{page + 1}"
        families = [str(f) for f in self._settings.os_families]
        position = families.index(family)
        return f"{families[position + 1]}:0" if position + 1 < len(families) else None

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device of every configured family, page by page (`DeviceLister`)."""
        return iterate(self.list_page, provider=self._name)
