"""Listing a whole Jamf Pro inventory page by page, for the connector's sync mode.

The cursor is ``CLASS:PAGE:TOTAL:LAST`` (``computers:3:120000:1500``): the device class, the
next page, the ``totalCount`` seen so far and the highest id read. It is opaque to the engine,
which saves it after each page so a failed sync resumes there; a cursor this configuration
cannot continue (a device class no longer listed, a malformed one) raises `CursorRejected` and
the sync starts over.

Pages are sorted by id (``id:asc``, ``mobileDeviceId:asc``): Jamf gives a new device a higher id,
so enrolments during a sync append at the end instead of shifting pages. A deletion does shift
every later device one place back, and the device that crossed into the page already read would
be missed; so when ``totalCount`` changed, the pages before are read again and the devices with
an id above the highest read are kept. A missed device would be denied until the next sync.

Departments: a computer names only its department id. The whole department list is read once
per sync (``GET /api/v1/departments``, paged), at the first page and again when a sync resumes
in a fresh process; a department created meanwhile is asked for by id (cached), never per device.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from providers._http import bounded
from providers._listing import ListedPage
from providers._records import text
from providers.base import CursorRejected, DeviceRecord, ProviderError
from providers.jamf import _mapping as mapping
from providers.jamf import _models as m
from providers.jamf._api import (
    COMPUTER_SECTIONS,
    MOBILE_DETAIL_PATH,
    MOBILE_SECTIONS,
    JamfApi,
    computers_path,
)
from providers.jamf._settings import DeviceClass, JamfSettings
from providers.unicode import ascii_digits, ascii_int

log = structlog.get_logger("providers.jamf")

LIST_BUDGET = 120.0
"""Seconds for one listing page, retries and ``Retry-After`` waits included (not a decision)."""
DEPARTMENTS_PATH = "/api/v1/departments"
DEPARTMENT_PAGE = 500
MAX_DEPARTMENT_PAGES = 100
SORTS: dict[DeviceClass, str] = {"computers": "id:asc", "mobile": "mobileDeviceId:asc"}

Device = m.Computer | m.MobileDevice


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stands.

    Attributes:
        device_class: The class being listed.
        page: The next page (from 0).
        total: The class's ``totalCount`` when the previous page was read.
        last_id: The highest numeric id read so far in this class.
    """

    device_class: DeviceClass
    page: int = 0
    total: int | None = None
    last_id: int | None = None

    @classmethod
    def parse(cls, provider: str, raw: str, classes: Sequence[DeviceClass]) -> Cursor:
        """Read a saved cursor; `CursorRejected` when this configuration cannot continue it."""
        parts = raw.split(":")
        numbers = parts[1:]
        if len(parts) not in (2, 4) or not all(ascii_digits(n) for n in numbers):
            raise CursorRejected(provider, f"listing cursor {raw!r} is malformed")
        device_class = next((c for c in classes if c == parts[0]), None)
        if device_class is None:
            raise CursorRejected(provider, f"listing cursor {raw!r} names a class not listed")
        if len(parts) == 2:
            return cls(device_class, int(numbers[0]))
        return cls(device_class, int(numbers[0]), int(numbers[1]), int(numbers[2]))

    def __str__(self) -> str:
        if self.total is None or self.last_id is None:
            return f"{self.device_class}:{self.page}"
        return f"{self.device_class}:{self.page}:{self.total}:{self.last_id}"


def device_id(device: Device) -> int | None:
    """A device's numeric Jamf id (None when Jamf sent something else)."""
    raw = text(device.id) if isinstance(device, m.Computer) else text(device.mobileDeviceId)
    return None if raw is None else ascii_int(raw)


def ascending(devices: Sequence[Device]) -> bool:
    """Whether the page came sorted by id, as asked (the shift repair relies on it)."""
    ids = [device_id(d) for d in devices]
    numbers = [i for i in ids if i is not None]
    return len(numbers) == len(ids) and all(a < b for a, b in itertools.pairwise(numbers))


class JamfLister:
    """`list_page` for `JamfProvider`; see the module docstring."""

    def __init__(
        self,
        name: str,
        settings: JamfSettings,
        api: JamfApi,
        *,
        version: Callable[[float], Awaitable[str | None]],
        department: Callable[[str, float], Awaitable[str | None]],
    ) -> None:
        self._name = name
        self._settings = settings
        self._api = api
        self._version = version
        self._department = department
        self._departments: dict[str, str | None] | None = None

    async def list_page(self, cursor: str | None) -> ListedPage:
        """The page at `cursor` (None: the first page of a new sync)."""
        classes = self._settings.classes
        at = Cursor(classes[0]) if cursor is None else Cursor.parse(self._name, cursor, classes)
        size = self._settings.list_page_size
        if cursor is None:
            self._departments = None  # a new sync reads them afresh
        async with bounded(self._name, LIST_BUDGET) as deadline:
            if at.device_class == "computers" and self._departments is None:
                self._departments = await self._read_departments(deadline)
            devices, total = await self._read(at.device_class, at.page, deadline)
            if at.total is not None and total != at.total and at.page > 0:
                devices = [*await self._shifted(at, total, deadline), *devices]
            records = await self._records(at.device_class, devices, deadline)
        read_ids = [i for d in devices if (i := device_id(d)) is not None]
        last_id = max([*read_ids, *([] if at.last_id is None else [at.last_id])], default=None)
        if len(devices) >= size and (at.page + 1) * size < total:
            following: Cursor | None = Cursor(at.device_class, at.page + 1, total, last_id)
        else:
            position = classes.index(at.device_class)
            following = Cursor(classes[position + 1]) if position + 1 < len(classes) else None
        return ListedPage(records, None if following is None else str(following))

    async def _read(
        self, device_class: DeviceClass, page: int, deadline: float
    ) -> tuple[list[Device], int]:
        """One page of a class, sorted by id, and the class's ``totalCount``."""
        size = str(self._settings.list_page_size)
        params = [("page", str(page)), ("page-size", size), ("sort", SORTS[device_class])]
        if device_class == "computers":
            version = await self._version(deadline)
            if version is None:
                raise ProviderError(self._name, "listing needs the Jamf Pro API")
            path = computers_path(version)
            params += [("section", s) for s in COMPUTER_SECTIONS]
            response = await self._api.get(path, params, deadline)
            computers = self._api.parse(
                response, path, m.ComputerResults, privilege="Read Computers"
            )
            return list(computers.results), computers.totalCount
        params += [("section", s) for s in MOBILE_SECTIONS]
        response = await self._api.get(MOBILE_DETAIL_PATH, params, deadline)
        mobiles = self._api.parse(
            response, MOBILE_DETAIL_PATH, m.MobileResults, privilege="Read Mobile Devices"
        )
        return list(mobiles.results), mobiles.totalCount

    async def _shifted(self, at: Cursor, total: int, deadline: float) -> list[Device]:
        """Devices a deletion moved back into pages already read (see the module docstring)."""
        assert at.total is not None  # noqa: S101 - the caller checked
        size = self._settings.list_page_size
        back = max(1, math.ceil(abs(at.total - total) / size))
        found: list[Device] = []
        for page in range(max(0, at.page - back), at.page):
            devices, _ = await self._read(at.device_class, page, deadline)
            if not ascending(devices):
                log.warning("provider.listing_unsorted", provider=self._name, page=page)
                return found
            found += [d for d in devices if (device_id(d) or 0) > (at.last_id or 0)]
        log.info(
            "provider.listing_shifted",
            provider=self._name,
            device_class=at.device_class,
            total_was=at.total,
            total=total,
            recovered=len(found),
        )
        return found

    async def _records(
        self, device_class: DeviceClass, devices: Sequence[Device], deadline: float
    ) -> list[DeviceRecord]:
        if device_class == "mobile":
            mobiles = [d for d in devices if isinstance(d, m.MobileDevice)]
            return [mapping.mobile_record(self._name, d) for d in mobiles]
        computers = [d for d in devices if isinstance(d, m.Computer)]
        known = self._departments if self._departments is not None else {}
        for missing in sorted(mapping.department_ids(computers) - known.keys()):
            known[missing] = await self._department(missing, deadline)
        return [mapping.computer_record(self._name, c, known) for c in computers]

    async def _read_departments(self, deadline: float) -> dict[str, str | None]:
        """Every department's name by id, in a few paged requests."""
        names: dict[str, str | None] = {}
        for page in range(MAX_DEPARTMENT_PAGES):
            params = [("page", str(page)), ("page-size", str(DEPARTMENT_PAGE)), ("sort", "id:asc")]
            response = await self._api.get(DEPARTMENTS_PATH, params, deadline)
            answer = self._api.parse(
                response, DEPARTMENTS_PATH, m.DepartmentResults, privilege="Read Departments"
            )
            names.update((i, text(d.name)) for d in answer.results if (i := text(d.id)))
            if not answer.results or len(names) >= answer.totalCount:
                return names
        raise ProviderError(self._name, f"more than {MAX_DEPARTMENT_PAGES} pages of departments")
