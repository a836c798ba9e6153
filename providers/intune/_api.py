"""Microsoft Graph as the Intune provider uses it: bearer GETs, OData literals, paging.

Every ``@odata.nextLink`` is followed only back to the configured Graph host (the token must not
travel elsewhere) and only for a bounded number of pages: truncating a list would let a
``none_of`` group rule pass on partial data, so running past the bound fails closed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from providers._http import BearerAuth, TokenCache, UpstreamClient, parse_body
from providers.base import ProviderError
from providers.intune._models import (
    DirectoryGroup,
    EntraDevicePage,
    GraphErrorAnswer,
    GraphUser,
    GroupPage,
    ManagedDevice,
    ManagedDevicePage,
    ManagedDeviceUdid,
)

log = structlog.get_logger("providers.intune")

DEVICE_SELECT = ",".join(
    (
        "id",
        "userId",
        "deviceName",
        "serialNumber",
        "operatingSystem",
        "osVersion",
        "model",
        "complianceState",
        "managementAgent",
        "managedDeviceOwnerType",
        "lastSyncDateTime",
        "azureADDeviceId",
        "userPrincipalName",
        "emailAddress",
        "userDisplayName",
        "isSupervised",
        "jailBroken",
    )
)
USER_SELECT = "id,displayName,userPrincipalName,mail,department,jobTitle"
GROUP_SELECT = "id,displayName"
MAX_DEVICE_PAGES = 5
"""A serial filter answering more pages of devices than this is taken as broken (fail closed)."""

_DEVICES = "/v1.0/deviceManagement/managedDevices"
_M = TypeVar("_M", bound=BaseModel)
_Page = TypeVar("_Page", GroupPage, ManagedDevicePage)


def odata_string(value: str) -> str:
    """An OData string literal: single quotes, an embedded quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def describe_graph_error(response: httpx.Response) -> tuple[str, str, str | None]:
    """Graph's error body as (code, message, request-id), tolerant of non-JSON bodies."""
    try:
        body = GraphErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        return "unknown", f"HTTP {response.status_code} with a non-Graph body", None
    return _described(body)


def describe_error_document(status: int, document: object) -> tuple[str, str, str | None]:
    """The same for an error already parsed from JSON (one answer inside a ``$batch``)."""
    try:
        body = GraphErrorAnswer.model_validate(document)
    except ValidationError:
        return "unknown", f"HTTP {status} with a non-Graph body", None
    return _described(body)


def _described(body: GraphErrorAnswer) -> tuple[str, str, str | None]:
    request_id = body.error.inner_error.get("request-id")
    return (
        body.error.code,
        body.error.message[:300],
        request_id if isinstance(request_id, str) else None,
    )


def _graph_code(response: httpx.Response) -> str | None:
    return describe_graph_error(response)[0]


class GraphApi:
    """Typed GETs against Microsoft Graph v1.0 with the provider's cached token."""

    def __init__(
        self, name: str, client: UpstreamClient, tokens: TokenCache, base: httpx.URL
    ) -> None:
        self._name = name
        self._client = client
        self._base = base
        self._auth = BearerAuth(name, tokens, error_code=_graph_code)

    async def get(
        self,
        url: str,
        model: type[_M],
        *,
        route: str,
        deadline: float,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        none_for: Collection[int] = (),
    ) -> _M | None:
        """GET and parse; None for a 404 when `missing_ok` (or a status in `none_for`), any
        other failure a ProviderError.

        Graph's error code and message go into the error; its request id is logged at debug.
        """
        response = await self._client.request(
            "GET",
            url,
            route=route,
            params=params,
            headers=headers,
            deadline=deadline,
            auth=self._auth,
        )
        if (response.status_code == 404 and missing_ok) or response.status_code in none_for:
            return None
        return self._parse(response, model, route)

    async def post(
        self, url: str, body: object, model: type[_M], *, route: str, deadline: float
    ) -> _M:
        """POST JSON (a ``$batch``) and parse the 200 answer; anything else is a ProviderError."""
        response = await self._client.request(
            "POST", url, route=route, json=body, deadline=deadline, auth=self._auth
        )
        return self._parse(response, model, route)

    def _parse(self, response: httpx.Response, model: type[_M], route: str) -> _M:
        if response.status_code != 200:
            raise self.refusal(response.status_code, route, describe_graph_error(response))
        return parse_body(self._name, response.content, model, where=f"Graph {route}")

    def refusal(
        self, status: int, route: str, described: tuple[str, str, str | None]
    ) -> ProviderError:
        """The error for a non-200 answer: Graph's code and message (request id at debug)."""
        code, message, request_id = described
        log.debug(
            "provider.upstream_error",
            provider=self._name,
            status=status,
            path=route,
            code=code,
            message=message,
            request_id=request_id,
        )
        return ProviderError(self._name, f"Graph answered {status} {code}: {message}")

    def _next(self, link: str) -> str:
        """Follow only links back to the configured Graph host: the token must not leak."""
        url = httpx.URL(link)
        if (url.scheme, url.host, url.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise ProviderError(self._name, "Graph sent a nextLink to another host; refused")
        return link

    async def _pages(
        self,
        url: str,
        model: type[_Page],
        *,
        route: str,
        deadline: float,
        params: Mapping[str, str],
        max_pages: int,
        too_many: str,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> list[_Page] | None:
        """Every page of a collection, following nextLink; None when it is gone (404)."""
        pages: list[_Page] = []
        next_url: str | None = url
        query: Mapping[str, str] | None = params
        while next_url is not None:
            if len(pages) >= max_pages:
                raise ProviderError(self._name, too_many)
            page = await self.get(
                next_url,
                model,
                route=route,
                deadline=deadline,
                params=query,
                headers=headers,
                missing_ok=missing_ok,
            )
            if page is None:
                if pages:
                    raise ProviderError(self._name, f"a page of {route} vanished while paging")
                return None
            pages.append(page)
            next_url = self._next(page.next_link) if page.next_link else None
            query = None  # a nextLink already carries the query
        return pages

    async def managed_devices(self, field: str, value: str, deadline: float) -> list[ManagedDevice]:
        """Managed devices whose `field` equals `value` (every page, bounded)."""
        pages = await self._pages(
            "deviceManagement/managedDevices",
            ManagedDevicePage,
            route=_DEVICES,
            deadline=deadline,
            params={"$filter": f"{field} eq {odata_string(value)}", "$select": DEVICE_SELECT},
            max_pages=MAX_DEVICE_PAGES,
            too_many=f"more than {MAX_DEVICE_PAGES} pages of devices for one {field}",
        )
        return [device for page in pages or () for device in page.value]

    async def udid(self, device_id: str, deadline: float) -> str | None:
        """The UDID of one managed device: Graph fills it only on a GET by id with $select."""
        found = await self.get(
            f"deviceManagement/managedDevices/{quote(device_id, safe='')}",
            ManagedDeviceUdid,
            route=f"{_DEVICES}/{{id}}",
            deadline=deadline,
            params={"$select": "id,udid"},
            missing_ok=True,
        )
        return found.udid if found is not None else None

    async def user(self, user_id: str, deadline: float) -> GraphUser | None:
        """The Entra user with department and job title; None when Graph no longer has it."""
        return await self.get(
            f"users/{quote(user_id, safe='')}",
            GraphUser,
            route="/v1.0/users/{id}",
            deadline=deadline,
            params={"$select": USER_SELECT},
            missing_ok=True,
        )

    async def entra_device(self, device_id: str, deadline: float) -> str | None:
        """The Entra object id of the device with this ``deviceId``, if Entra has it."""
        page = await self.get(
            "devices",
            EntraDevicePage,
            route="/v1.0/devices",
            deadline=deadline,
            params={"$filter": f"deviceId eq {odata_string(device_id)}", "$select": "id,deviceId"},
        )
        if page is None:
            return None
        # Only rows for this deviceId: a filter Graph ignored must not lend another device's
        # groups (the device search checks its serials the same way).
        wanted = device_id.lower()
        found = [d.id for d in page.value if (d.device_id or "").lower() == wanted]
        if len(found) > 1:
            raise ProviderError(self._name, "Entra has more than one device with this deviceId")
        return found[0] if found else None

    async def groups(
        self, kind: str, object_id: str, deadline: float, *, max_pages: int
    ) -> list[DirectoryGroup] | None:
        """Every group of a user or device (`kind`), nested ones included; None when it is gone."""
        pages = await self._pages(
            f"{kind}/{quote(object_id, safe='')}/transitiveMemberOf/microsoft.graph.group",
            GroupPage,
            route=f"/v1.0/{kind}/{{id}}/transitiveMemberOf/microsoft.graph.group",
            deadline=deadline,
            params={"$select": GROUP_SELECT, "$count": "true", "$top": "999"},
            headers={"ConsistencyLevel": "eventual"},
            max_pages=max_pages,
            # Truncating would make a none_of group rule pass on partial data: fail closed.
            too_many=f"more than {max_pages} pages of groups; raise max_group_pages",
            missing_ok=True,
        )
        return None if pages is None else [g for page in pages for g in page.value]
