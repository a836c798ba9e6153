"""Listing every Intune managed device for the connector's sync mode, users and groups in bulk.

A page is ``GET deviceManagement/managedDevices?$select=...&$top=999``; the cursor is Graph's
``@odata.nextLink`` (opaque, not a secret), followed only back to the configured Graph host, so a
tampered cursor never carries the token elsewhere. A link Graph no longer accepts (400, 404,
410) or one this configuration did not make raises `CursorRejected`: the sync starts over.

What one lookup asks per device is asked in bulk, each thing once per sync:

- users: all of them, ``GET /users?$select=...&$top=999`` (a large tenant is a few hundred
  pages, against one request per device user); a user the list lacks (created since) is read
  by id, 20 to a ``$batch``;
- the users' groups: ``users/{id}/transitiveMemberOf/microsoft.graph.group``, the lookup's very
  request (so the same groups: nested ones included, roles and administrative units cast away),
  20 to a ``$batch`` and each user once however many devices they own;
- device groups (``device_groups``): the Entra devices listed once (``id``, ``deviceId``), then
  ``devices/{id}/transitiveMemberOf`` batched the same way;
- UDIDs (``fetch_udid``, or ``udid_lookup = "filter"`` so that synced records answer UDIDs):
  Graph reveals one only per device, so 20 to a ``$batch``.

Not chosen: ``/groups?$expand=members`` answers at most 20 members per group and direct members
only, so large and nested groups would be cut short (a ``none_of`` rule would then pass on
partial data); reading every group's ``transitiveMembers`` costs what the tenant's groups cost,
not what the devices' users do.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar
from urllib.parse import quote

import httpx
import structlog

from providers._http import bounded
from providers._http._parse import validate
from providers._listing import ListedPage
from providers._records import text
from providers.base import CursorRejected, DeviceRecord, ProviderError
from providers.intune import _mapping as mapping
from providers.intune._api import DEVICE_SELECT, GROUP_SELECT, USER_SELECT, GraphApi
from providers.intune._batch import Batcher, BatchGet
from providers.intune._models import (
    DirectoryGroup,
    EntraDeviceList,
    GraphUser,
    GroupPage,
    ManagedDevice,
    ManagedDevicePage,
    ManagedDeviceUdid,
    UserPage,
)
from providers.intune._settings import IntuneSettings

log = structlog.get_logger("providers.intune")

LIST_BUDGET = 120.0
"""Seconds for one listing page (or one page of users), retries and throttling included."""
PAGE = "999"
"""``$top`` of a listing page: Graph's largest."""
MAX_LIST_PAGES = 10_000
"""Pages of users or Entra devices read before the listing is taken as runaway."""
DEVICES = "deviceManagement/managedDevices"
_DEVICES_ROUTE = "/v1.0/deviceManagement/managedDevices"
_GONE = (400, 404, 410)
_P = TypeVar("_P", UserPage, EntraDeviceList)


UserRow = tuple[str | None, str | None, str | None, str | None, str | None]
"""A user as a sync keeps it: display name, UPN, mail, department, job title (a tenant's
users are held for the whole sync: a tuple of strings takes a fifth of the model's memory)."""


def user_row(user: GraphUser) -> UserRow:
    """The compact form; departments and titles repeat, so they are interned."""
    department, title = user.department, user.job_title
    return (
        user.display_name,
        user.user_principal_name,
        user.mail,
        sys.intern(department) if department else department,
        sys.intern(title) if title else title,
    )


def graph_user(user_id: str, row: UserRow) -> GraphUser:
    """The model the mapping reads, back from the compact form."""
    name, upn, mail, department, title = row
    return GraphUser.model_construct(
        id=user_id,
        display_name=name,
        user_principal_name=upn,
        mail=mail,
        department=department,
        job_title=title,
    )


class IntuneLister:
    """`list_page` for `IntuneProvider`; see the module docstring."""

    def __init__(self, name: str, settings: IntuneSettings, api: GraphApi, base: httpx.URL) -> None:
        self._name = name
        self._settings = settings
        self._api = api
        self._base = base
        self._batcher = Batcher(
            name,
            api,
            retries=settings.retries,
            backoff=settings.backoff,
            concurrency=max(1, settings.max_connections - 1),  # one left for lookups
        )
        self._users: dict[str, UserRow | None] | None = None
        self._entra: dict[str, str | None] | None = None
        self._user_groups: dict[str, tuple[DirectoryGroup, ...]] = {}
        self._groups: dict[str, DirectoryGroup] = {}

    async def list_page(self, cursor: str | None) -> ListedPage:
        """The page at `cursor` (None: the first page of a new sync)."""
        link = None if cursor is None else self._link(cursor, CursorRejected)
        if cursor is None:
            self._users, self._entra = None, None
            self._user_groups, self._groups = {}, {}
        if self._users is None:
            self._users = await self._read_users()
        if self._settings.device_groups and self._entra is None:
            self._entra = await self._read_entra_devices()
        async with bounded(self._name, LIST_BUDGET) as deadline:
            page = await self._api.get(
                link or DEVICES,
                ManagedDevicePage,
                route=_DEVICES_ROUTE,
                deadline=deadline,
                params=None if link else {"$select": DEVICE_SELECT, "$top": PAGE},
                none_for=_GONE if link else (),
            )
            if page is None:
                raise CursorRejected(self._name, "Graph no longer accepts the saved page link")
            records = await self._records(page.value, deadline)
        following = self._link(page.next_link, ProviderError) if page.next_link else None
        return ListedPage(records, following)

    def _link(self, raw: str, error: type[ProviderError]) -> str:
        """A nextLink into the managed-device collection on the Graph host, or `error`."""
        if httpx.URL(self._same_host(raw, error)).path.rstrip("/") != _DEVICES_ROUTE:
            raise error(self._name, "a device page link points at another collection; refused")
        return raw

    def _same_host(self, raw: str, error: type[ProviderError]) -> str:
        """A link on the configured Graph host (the token must not travel), or `error`."""
        try:
            url = httpx.URL(raw)
        except httpx.InvalidURL:
            raise error(self._name, "a page link is not a URL") from None
        base = self._base
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise error(self._name, "Graph sent a nextLink to another host; refused")
        return raw

    async def _read_users(self) -> dict[str, UserRow | None]:
        """Every user with the properties enrichment needs (department is not a default one)."""
        users: dict[str, UserRow | None] = {}
        async for page in self._pages("users", UserPage, {"$select": USER_SELECT}):
            users.update((u.id, user_row(u)) for u in page.value)
        return users

    async def _read_entra_devices(self) -> dict[str, str | None]:
        """Entra object id by ``deviceId`` (what a managed device's ``azureADDeviceId`` is);
        None for a ``deviceId`` two objects claim (whose groups count cannot be told: a live
        lookup refuses it too)."""
        found: dict[str, str | None] = {}
        async for page in self._pages("devices", EntraDeviceList, {"$select": "id,deviceId"}):
            for entra in page.value:
                if entra.device_id:
                    key = entra.device_id.lower()
                    found[key] = entra.id if found.get(key, entra.id) == entra.id else None
        return found

    async def _pages(
        self, collection: str, model: type[_P], params: dict[str, str]
    ) -> AsyncIterator[_P]:
        """Every page of a directory collection, each within its own budget."""
        url = collection
        query: dict[str, str] | None = {**params, "$top": PAGE}
        for _ in range(MAX_LIST_PAGES):
            async with bounded(self._name, LIST_BUDGET) as deadline:
                page = await self._api.get(
                    url, model, route=f"/v1.0/{collection}", deadline=deadline, params=query
                )
            if page is None:  # only asked-for statuses answer None; none were asked for
                raise ProviderError(self._name, f"Graph answered no {collection}")
            yield page
            if not page.next_link:
                return
            url, query = self._same_host(page.next_link, ProviderError), None
        raise ProviderError(self._name, f"more than {MAX_LIST_PAGES} pages of {collection}")

    async def _records(
        self, devices: Sequence[ManagedDevice], deadline: float
    ) -> list[DeviceRecord]:
        """The page's devices with their users, groups and UDIDs, asked for in bulk."""
        settings = self._settings
        owners = list(dict.fromkeys(u for d in devices if (u := text(d.user_id))))
        await self._add_missing_users(owners, deadline)
        if settings.user_groups:
            wanted = [u for u in owners if u not in self._user_groups]
            listed = await self._member_of("users", wanted, deadline)
            self._user_groups.update({u: listed.get(u, ()) for u in wanted})  # gone: none
        objects: dict[str, str] = {}
        ambiguous: set[str] = set()  # and gone: their device groups cannot be read
        device_groups: dict[str, tuple[DirectoryGroup, ...]] = {}
        if settings.device_groups and self._entra is not None:
            for device in devices:
                azure_id = mapping.entra_device_id(device)
                if azure_id is None:
                    continue
                key = azure_id.lower()
                if (found := self._entra.get(key)) is not None:
                    objects[device.id] = found
                elif key in self._entra:  # two Entra objects: left out of the copy, as refused
                    ambiguous.add(device.id)
                    log.warning(
                        "provider.entra_device_ambiguous", provider=self._name, device_id=azure_id
                    )
                else:  # left out too: a lookup refuses it (its device groups are unknown)
                    ambiguous.add(device.id)
                    log.warning(
                        "provider.entra_device_not_found", provider=self._name, device_id=azure_id
                    )
            device_groups = await self._member_of("devices", list(objects.values()), deadline)
        udids = await self._udids(devices, deadline)
        users = self._users or {}
        records = []
        gone = {d for d, o in objects.items() if o not in device_groups}  # deleted meanwhile
        for object_id in {objects[d] for d in gone}:
            log.warning("provider.entra_device_not_found", provider=self._name, object_id=object_id)
        for device in devices:
            if device.id in ambiguous or device.id in gone:
                continue
            owner = text(device.user_id)
            groups = [
                *(self._user_groups.get(owner, ()) if owner else ()),
                *device_groups.get(objects.get(device.id, ""), ()),
            ]
            row = users.get(owner) if owner else None
            user = None if row is None or owner is None else graph_user(owner, row)
            record = mapping.device_record(
                self._name, device, udid=udids.get(device.id), user=user, groups=groups
            )
            records.append(record)
        return records

    async def _add_missing_users(self, owners: Sequence[str], deadline: float) -> None:
        """Users created since the list was read, by id; gone ones are remembered as None."""
        users = self._users if self._users is not None else {}
        missing = [u for u in owners if u not in users]
        if not missing:
            return
        gets = [BatchGet(u, f"users/{quote(u, safe='')}?$select={USER_SELECT}") for u in missing]
        answers = await self._batcher.get_all(gets, deadline, route="/v1.0/users/{id}")
        for key, item in answers.items():
            if item.status == 404:
                log.warning("provider.user_not_found", provider=self._name, user_id=key)
                users[key] = None
            else:
                found = validate(self._name, item.body, GraphUser, where="Graph user")
                users[key] = user_row(found)

    async def _member_of(
        self, kind: str, ids: Sequence[str], deadline: float
    ) -> dict[str, tuple[DirectoryGroup, ...]]:
        """Each user's or device's groups (nested included), 20 objects to a batch; one that
        is gone (404) is left out."""
        route = f"/v1.0/{kind}/{{id}}/transitiveMemberOf/microsoft.graph.group"
        gets = [
            BatchGet(
                i,
                f"{kind}/{quote(i, safe='')}/transitiveMemberOf/microsoft.graph.group"
                f"?$select={GROUP_SELECT}&$count=true&$top=999",
                {"ConsistencyLevel": "eventual"},
            )
            for i in ids
        ]
        found: dict[str, tuple[DirectoryGroup, ...]] = {}
        for key, item in (await self._batcher.get_all(gets, deadline, route=route)).items():
            if item.status == 404:
                continue
            page = validate(self._name, item.body, GroupPage, where=f"Graph {route}")
            groups: Sequence[DirectoryGroup] = page.value
            if page.next_link:  # more than 999 groups: read them all as a lookup does
                groups = (
                    await self._api.groups(
                        kind, key, deadline, max_pages=self._settings.max_group_pages
                    )
                    or ()
                )
            found[key] = tuple(self._groups.setdefault(g.id, g) for g in groups)
        return found

    async def _udids(self, devices: Sequence[ManagedDevice], deadline: float) -> dict[str, str]:
        """Each device's UDID (only a GET by id reveals it), when the settings want UDIDs."""
        settings = self._settings
        if not (settings.fetch_udid or settings.udid_lookup == "filter"):
            return {}
        gets = [
            BatchGet(d.id, f"{DEVICES}/{quote(d.id, safe='')}?$select=id,udid") for d in devices
        ]
        route = f"{_DEVICES_ROUTE}/{{id}}"
        udids: dict[str, str] = {}
        for key, item in (await self._batcher.get_all(gets, deadline, route=route)).items():
            if item.status == 200:
                answer = validate(self._name, item.body, ManagedDeviceUdid, where=f"Graph {route}")
                if (udid := text(answer.udid)) is not None:
                    udids[key] = udid
        return udids
