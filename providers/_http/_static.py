"""A long-lived API token from the config, sent as a bearer header and never renewed, and
`StaticTokenApi`, the typed GETs of a provider that authenticates that way.

Kandji and Fleet hand out such tokens. Unlike `BearerAuth` there is nothing to fetch again: a
401 means the configured token is wrong, revoked or expired. It marks the provider not ready
(the service's start retries bring it back once the token works again) and reports a refused
`TokenEvent`; the caller turns the 401 into its `ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from typing import TypeVar

import httpx
import structlog
from pydantic import BaseModel, SecretStr

from providers._http._client import UpstreamClient
from providers._http._parse import read_model
from providers.observe import ProviderHook, TokenEvent

log = structlog.get_logger("providers.http")

_M = TypeVar("_M", bound=BaseModel)


class StaticBearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>``; a 401 reports the token refused, a 2xx accepted."""

    def __init__(
        self,
        provider: str,
        token: SecretStr,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook,
    ) -> None:
        self._provider = provider
        self._token = token
        self._on_state = on_state
        self._hooks = hooks

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Providers are async only."""
        raise NotImplementedError("StaticBearerAuth needs an httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send the token once; record what the answer says about it."""
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        response = yield request
        if response.status_code == 401:
            route = request.extensions.get("route")
            self._on_state(False)
            self._hooks.token(TokenEvent(self._provider, "refused", detail=f"HTTP 401 on {route}"))
            log.debug("provider.token_failed", provider=self._provider, path=route, status=401)
        elif response.is_success:
            self._on_state(True)


class StaticTokenApi:
    """Typed GETs with a `StaticBearerAuth`; a subclass explains refusals in `refusal`.

    A 404 is None when the caller says the record may be missing; any other non-200 answer is
    a `ProviderError` carrying `refusal`'s secret-free text.
    """

    def __init__(self, name: str, client: UpstreamClient, auth: StaticBearerAuth) -> None:
        self._name = name
        self._client = client
        self._auth = auth

    def refusal(self, response: httpx.Response, route: str) -> str:
        """Why the upstream did not answer 200 (override with the vendor's words)."""
        return f"{route}: unexpected HTTP {response.status_code}"

    async def get(
        self,
        path: str,
        route: str,
        model: type[_M],
        deadline: float,
        *,
        params: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> _M | None:
        """GET `path` (reported as `route`) and parse the answer into `model`."""
        response = await self._client.request(
            "GET", path, route=route, params=params, deadline=deadline, auth=self._auth
        )
        if response.status_code == 404 and missing_ok:
            return None
        return read_model(
            self._name, response, model, where=route, refusal=lambda r: self.refusal(r, route)
        )
