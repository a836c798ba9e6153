"""Mosyle Manager's API as the provider uses it: JSON POSTs with the API token in the body.

Every request carries the JWT through `BearerAuth` (a 401 logs in again once) and the API
token as ``accessToken`` in the body. Answers are read through the ``{"status", "response"}``
envelope (`providers.mosyle._models.payload`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from providers._http import BearerAuth, TokenCache, UpstreamClient, parse_body
from providers._http._parse import validate
from providers.base import ProviderError
from providers.mosyle._auth import error_code, secret_free
from providers.mosyle._models import (
    DevicesPayload,
    Envelope,
    GroupsPayload,
    MosyleRefusal,
    payload,
)
from providers.mosyle._settings import MosyleSettings

LIST_DEVICES = "/listdevices"
LIST_GROUP_DEVICES = "/listdevicegroupsdevices"

_P = TypeVar("_P", bound=BaseModel)


class MosyleApi:
    """Typed POSTs against Mosyle Manager."""

    def __init__(
        self, name: str, client: UpstreamClient, tokens: TokenCache, settings: MosyleSettings
    ) -> None:
        self._name = name
        self._client = client
        self._settings = settings
        self._auth = BearerAuth(name, tokens, error_code=error_code)

    async def _post(
        self, route: str, options: dict[str, Any], model: type[_P], deadline: float
    ) -> _P | None:
        body = {"accessToken": self._settings.access_token.get_secret_value(), "options": options}
        response = await self._client.request(
            "POST", route, route=route, json=body, deadline=deadline, auth=self._auth
        )
        if response.status_code == 401:
            raise ProviderError(self._name, f"Mosyle refused a fresh token on {route} (HTTP 401)")
        if response.status_code == 403:
            raise ProviderError(
                self._name, f"{route}: HTTP 403; the Mosyle admin account may not read devices"
            )
        if response.status_code != 200:
            raise ProviderError(self._name, f"{route}: unexpected HTTP {response.status_code}")
        envelope = parse_body(self._name, response.content, Envelope, where=route)
        try:
            body_object = payload(envelope)
        except MosyleRefusal as refusal:
            info = secret_free(refusal.info, self._settings)
            said = f" ({info})" if info else ""
            raise ProviderError(
                self._name, f"{route}: Mosyle answered {refusal.code!r}{said}"
            ) from None
        if body_object is None:
            return None
        return validate(self._name, body_object, model, where=route)

    async def devices(
        self, os: str, deadline: float, *, page: int, serial: str | None = None
    ) -> DevicesPayload:
        """One page of one device family (0-based); empty when Mosyle finds none."""
        options: dict[str, Any] = {"os": os, "page": page}
        if serial is not None:
            options["serial_numbers"] = [serial]
        found = await self._post(LIST_DEVICES, options, DevicesPayload, deadline)
        return found if found is not None else DevicesPayload()

    async def group_devices(self, os: str, page: int, deadline: float) -> GroupsPayload:
        """One page (1-based, as Mosyle numbers this operation) of device groups with members."""
        options = {"os": os, "page": page}
        found = await self._post(LIST_GROUP_DEVICES, options, GroupsPayload, deadline)
        return found if found is not None else GroupsPayload()
