"""A long-lived API token from the config, sent as a bearer header and never renewed.

Kandji and Fleet hand out such tokens. Unlike `BearerAuth` there is nothing to fetch again: a
401 means the configured token is wrong, revoked or expired. It marks the provider not ready
(the service's start retries bring it back once the token works again) and reports a refused
`TokenEvent`; the caller turns the 401 into its `ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator

import httpx
import structlog
from pydantic import SecretStr

from providers.observe import ProviderHook, TokenEvent

log = structlog.get_logger("providers.http")


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
