"""The Workspace ONE UEM MDM API as the provider uses it: device by alternate id, smart groups,
and the search pages for listing.

Every answer goes through `WorkspaceOneApi.read`: 200 is parsed, 204 ("no content", which
Workspace ONE answers for an empty search) and a JSON 404 ("no such device") are None, and
everything else is a `ProviderError` that names the path and status, never a credential.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel

from providers._http import UpstreamClient, json_field, parse_body
from providers.base import ProviderError, ProviderNotReady
from providers.workspaceone import _models as m

DEVICES = "/API/mdm/devices"
SEARCH = "/API/mdm/devices/search"
SMART_GROUPS_ROUTE = "/API/mdm/devices/{id}/smartgroups"
ACCEPT = "application/json;version=1"

_M = TypeVar("_M", bound=BaseModel)


class WorkspaceOneApi:
    """Typed GETs against one Workspace ONE API server."""

    def __init__(
        self,
        name: str,
        client: UpstreamClient,
        auth: httpx.Auth,
        *,
        basic: bool,
        on_state: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._client = client
        self._auth = auth
        self._basic = basic
        self._on_state = on_state

    async def read(
        self,
        path: str,
        model: type[_M],
        deadline: float,
        *,
        route: str,
        params: list[tuple[str, str]] | None = None,
        missing_ok: bool = False,
    ) -> _M | None:
        """GET `path` as `model`; None for 204, and for a JSON 404 when `missing_ok`."""
        response = await self._client.request(
            "GET", path, route=route, params=params, deadline=deadline, auth=self._auth
        )
        status = response.status_code
        if status == 204:
            return None
        if status == 404 and missing_ok and isinstance(json_field(response), dict):
            return None
        if status != 200:
            raise self._refusal(route, response)
        return parse_body(self._name, response.content, model, where=route)

    def _refusal(self, route: str, response: httpx.Response) -> ProviderError:
        status = response.status_code
        code = json_field(response, "errorCode")
        detail = f"HTTP {status}" + (f", errorCode {code}" if isinstance(code, int) else "")
        if status == 401:
            if self._basic:
                # Basic credentials have no token to renew: the admin must fix them.
                self._on_state(False)
                return ProviderNotReady(
                    self._name,
                    f"Workspace ONE refused the user name, password or tenant_code ({detail})",
                )
            return ProviderError(self._name, f"{route}: Workspace ONE refused a fresh token")
        if status == 403:
            return ProviderError(
                self._name, f"{route}: {detail}; the admin role needs read access to devices"
            )
        if status == 404 and not isinstance(json_field(response), dict):
            return ProviderError(
                self._name, f"{route}: a 404 that is not Workspace ONE's (is url the API host?)"
            )
        return ProviderError(self._name, f"{route}: unexpected {detail}")

    async def device(self, searchby: str, value: str, deadline: float) -> m.Device | None:
        """``GET /API/mdm/devices?searchby=...&id=...``; None when Workspace ONE lacks it."""
        return await self.read(
            DEVICES,
            m.Device,
            deadline,
            route=f"{DEVICES}?searchby={searchby}",
            params=[("searchby", searchby), ("id", value)],
            missing_ok=True,
        )

    async def smart_groups(self, device_id: str, deadline: float) -> tuple[m.SmartGroupRef, ...]:
        """The smart groups the device is in (a device found a moment ago must have an answer)."""
        found = await self.read(
            f"{DEVICES}/{device_id}/smartgroups", m.SmartGroups, deadline, route=SMART_GROUPS_ROUTE
        )
        return found.SmartGroup if found is not None else ()

    async def search(self, page: int, size: int, deadline: float) -> m.DeviceSearch:
        """One page (0-based) of every device the admin's organisation group sees."""
        found = await self.read(
            SEARCH,
            m.DeviceSearch,
            deadline,
            route=SEARCH,
            params=[("page", str(page)), ("pagesize", str(size))],
        )
        return found if found is not None else m.DeviceSearch()
