"""Bearer tokens: one cached token per provider, and an `httpx.Auth` that renews it after a 401.

Modelled on httpx's ``Auth.async_auth_flow``: the flow yields the request, sees the answer, and
on a 401 drops the token, fetches a fresh one and yields the request once more. A second 401
is handed back to the caller (and that token dropped too), so a refused credential never loops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field

import httpx
import structlog

from providers._http._body import read_within
from providers.observe import ProviderHook, TokenEvent

log = structlog.get_logger("providers.http")


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and when (monotonic seconds) it stops being usable.

    Attributes:
        value: The token; kept out of repr.
        expires_at: `time.monotonic()` value at which it expires.
    """

    value: str = field(repr=False)
    expires_at: float


class TokenCache:
    """Caches one bearer token; concurrent callers share a single fetch.

    The token is refreshed `margin` seconds before it expires. `invalidate` drops it after a
    401, but only if nobody has replaced it in the meantime.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Token]],
        *,
        margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> Token | None:
        token = self._token
        if token is not None and token.expires_at - self._margin > self._clock():
            return token
        return None

    async def get(self) -> str:
        """Return a usable token, fetching one if needed."""
        token = self._fresh()
        if token is not None:
            return token.value
        async with self._lock:
            token = self._fresh()
            if token is None:
                token = await self._fetch()
                self._token = token
            return token.value

    def invalidate(self, value: str) -> None:
        """Forget `value` (after the upstream refused it)."""
        if self._token is not None and self._token.value == value:
            self._token = None


class TokenIssuer:
    """Base of a vendor's token fetcher: holds the `TokenCache` and reports every outcome.

    A subclass implements `_fetch` and calls `granted` or `refused`, so both vendors emit the
    same `TokenEvent`s and log lines, and `on_state` (the provider's readiness) follows the
    credentials.
    """

    def __init__(
        self,
        provider: str,
        *,
        margin: float,
        on_state: Callable[[bool], None],
        hooks: ProviderHook,
        clock: Callable[[], float],
    ) -> None:
        self.provider = provider
        self._on_state = on_state
        self._hooks = hooks
        self._clock = clock
        self.cache = TokenCache(self._fetch, margin=margin, clock=clock)

    async def _fetch(self) -> Token:
        raise NotImplementedError

    def granted(self, value: str, lifetime: float, *, margin: float = 0.0, **fields: str) -> Token:
        """A token the upstream issued for `lifetime` seconds, used until `margin` before."""
        self._on_state(True)
        self._hooks.token(TokenEvent(self.provider, "refreshed", expires_in=lifetime))
        log.info(
            "provider.token_refreshed", provider=self.provider, expires_in=round(lifetime), **fields
        )
        return Token(value=value, expires_at=self._clock() + lifetime - margin)

    def refused(self, route: str, status: int | None, detail: str, error: str | None) -> None:
        """The upstream refused to issue a token; the caller raises with `detail`."""
        self._on_state(False)
        self._hooks.token(TokenEvent(self.provider, "refused", detail=detail))
        log.debug(
            "provider.token_failed", provider=self.provider, path=route, status=status, error=error
        )


def _no_code(response: httpx.Response) -> str | None:
    del response
    return None


class BearerAuth(httpx.Auth):
    """Sends the cached token; a 401 drops it and the request is sent once more with a new one.

    `error_code` reads the vendor's error code from a 401 body for the
    ``provider.token_rejected`` log line (it must never return a token).
    """

    def __init__(
        self,
        provider: str,
        tokens: TokenCache,
        *,
        error_code: Callable[[httpx.Response], str | None] = _no_code,
    ) -> None:
        self._provider = provider
        self._tokens = tokens
        self._error_code = error_code

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Providers are async only."""
        raise NotImplementedError("BearerAuth needs an httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send with the cached token; after a 401 renew it and send once more."""
        token = await self._tokens.get()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        await read_within(response)  # httpx would read it unbounded before sending again
        self._tokens.invalidate(token)
        log.info(
            "provider.token_rejected",
            provider=self._provider,
            route=request.extensions.get("route"),
            code=self._error_code(response),
        )
        token = await self._tokens.get()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self._tokens.invalidate(token)
