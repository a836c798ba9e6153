"""The Apple Business Manager API as the provider uses it: one device, its assigned service,
and the pages for listing (services, their devices, the organisation's devices).

A 404 for a device means "not the organisation's"; any other refusal is a `ProviderError`
naming Apple's JSON:API error code, never the token.
"""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel

from providers._http import BearerAuth, TokenCache, UpstreamClient, json_field, parse_body
from providers.abm import _models as m
from providers.base import ProviderError

_M = TypeVar("_M", bound=BaseModel)


def error_code(response: httpx.Response) -> str | None:
    """The first ``errors[].code`` of a JSON:API error body (``NOT_FOUND``, ``FORBIDDEN``)."""
    errors = json_field(response, "errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return code if isinstance(code, str) and len(code) <= 64 else None
    return None


class AbmApi:
    """Typed GETs against the Apple Business Manager API."""

    def __init__(self, name: str, client: UpstreamClient, tokens: TokenCache) -> None:
        self._name = name
        self._client = client
        self._auth = BearerAuth(name, tokens, error_code=error_code)

    async def _fetch(
        self,
        path: str,
        deadline: float,
        *,
        route: str,
        params: list[tuple[str, str]] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        """GET `path`: a 200 (or, when `missing_ok`, a 404) answer; anything else raises."""
        response = await self._client.request(
            "GET", path, route=route, params=params, deadline=deadline, auth=self._auth
        )
        status = response.status_code
        if status == 200 or (status == 404 and missing_ok):
            return response
        code = error_code(response)
        detail = f"HTTP {status}" + (f" {code}" if code else "")
        if status == 401:
            raise ProviderError(self._name, f"{route}: Apple refused a fresh token ({detail})")
        if status == 403:
            raise ProviderError(
                self._name,
                f"{route}: {detail}; the API account's role must be allowed to view "
                "devices and device management services",
            )
        raise ProviderError(self._name, f"{route}: unexpected {detail}")

    async def _read(
        self,
        path: str,
        model: type[_M],
        deadline: float,
        *,
        route: str,
        params: list[tuple[str, str]] | None = None,
    ) -> _M:
        response = await self._fetch(path, deadline, route=route, params=params)
        return parse_body(self._name, response.content, model, where=route)

    async def device(self, serial: str, deadline: float) -> m.OrgDevice | None:
        """``GET /v1/orgDevices/{serial}``; None when the organisation does not hold it."""
        route = "/v1/orgDevices/{id}"
        response = await self._fetch(
            f"/v1/orgDevices/{serial}", deadline, route=route, missing_ok=True
        )
        if response.status_code == 404:
            return None
        return parse_body(self._name, response.content, m.OrgDeviceResponse, where=route).data

    async def assigned_server(self, serial: str, deadline: float) -> m.MdmServer | None:
        """``GET /v1/orgDevices/{serial}/assignedServer``; None when it is assigned to none."""
        route = "/v1/orgDevices/{id}/assignedServer"
        response = await self._fetch(
            f"/v1/orgDevices/{serial}/assignedServer", deadline, route=route, missing_ok=True
        )
        if response.status_code == 404:
            return None
        return parse_body(self._name, response.content, m.MdmServerResponse, where=route).data

    async def servers(
        self, cursor: str | None, limit: int, deadline: float
    ) -> m.MdmServersResponse:
        """One page of the organisation's device management services."""
        return await self._read(
            "/v1/mdmServers",
            m.MdmServersResponse,
            deadline,
            route="/v1/mdmServers",
            params=_page(cursor, limit),
        )

    async def server_devices(
        self, server_id: str, cursor: str | None, limit: int, deadline: float
    ) -> m.LinkagesResponse:
        """One page of the serials assigned to a device management service."""
        return await self._read(
            f"/v1/mdmServers/{server_id}/relationships/devices",
            m.LinkagesResponse,
            deadline,
            route="/v1/mdmServers/{id}/relationships/devices",
            params=_page(cursor, limit),
        )

    async def devices(
        self, cursor: str | None, limit: int, deadline: float
    ) -> m.OrgDevicesResponse:
        """One page of the organisation's devices."""
        return await self._read(
            "/v1/orgDevices",
            m.OrgDevicesResponse,
            deadline,
            route="/v1/orgDevices",
            params=_page(cursor, limit),
        )


def _page(cursor: str | None, limit: int) -> list[tuple[str, str]]:
    params = [("limit", str(limit))]
    if cursor is not None:
        params.append(("cursor", cursor))
    return params
