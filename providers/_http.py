"""Shared plumbing for providers that call an HTTP API: one client, retries, a time budget,
and a bearer-token cache.

httpx errors and retryable statuses are translated into `ProviderError` here, at one boundary,
so provider modules only handle the answers they understand (200, 401, 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from providers.base import ProviderError
from providers.config_types import ConfigPath

log = structlog.get_logger("providers.http")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class UpstreamSettings(BaseModel):
    """Connection settings shared by every HTTP provider (fields of its config table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout: float = Field(default=2.0, gt=0, le=30)
    read_timeout: float = Field(default=3.0, gt=0, le=30)
    budget: float = Field(
        default=4.0, gt=0, le=9, description="seconds for a whole lookup, retries included"
    )
    retries: int = Field(default=2, ge=0, le=5, description="extra attempts on retryable errors")
    backoff: float = Field(default=0.2, gt=0, le=5, description="first backoff in seconds")
    max_connections: int = Field(default=5, ge=1, le=100)
    verify_tls: bool = True
    ca_bundle: ConfigPath | None = None


class RetryableStatusError(Exception):
    """When the upstream answered a status worth retrying (429, 502, 503, 504)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"upstream answered {response.status_code}")
        self.response = response


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


class UpstreamClient:
    """An httpx client bound to one provider, with retries inside a per-call deadline."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        settings: UpstreamSettings,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        verify: ssl.SSLContext | bool = settings.verify_tls
        if settings.verify_tls and settings.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.budget,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            follow_redirects=False,
        )

    async def request(
        self, method: str, url: str, *, deadline: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request, retrying transport errors and retryable statuses.

        Retries back off exponentially with jitter, honour `Retry-After`, and never sleep past
        `deadline` (a `time.monotonic()` value): a wait that would overrun it fails at once.
        Any other status is returned for the caller to interpret.
        """
        end = deadline if deadline is not None else time.monotonic() + self.settings.budget
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((httpx.TransportError, RetryableStatusError)),
            wait=self._wait,
            stop=lambda state: self._should_stop(state, end),
            reraise=True,
            sleep=asyncio.sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._client.request(method, url, **kwargs)
                    if response.status_code in RETRYABLE_STATUSES:
                        await response.aread()
                        raise RetryableStatusError(response)
                    return response
        except RetryableStatusError as exc:
            raise ProviderError(self.provider, str(exc)) from None
        except httpx.TimeoutException as exc:
            raise ProviderError(self.provider, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise ProviderError(
                self.provider, f"connection failed ({type(exc).__name__})"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatusError):
            hinted = retry_after_seconds(exc.response)
            if hinted is not None:
                return hinted
        exponential = float(self.settings.backoff * 2 ** (state.attempt_number - 1))
        return exponential / 2 + random.uniform(0, exponential / 2)  # noqa: S311 - jitter, not crypto

    def _should_stop(self, state: RetryCallState, end: float) -> bool:
        if state.attempt_number > self.settings.retries:
            return True
        # Checked before sleeping: a wait that overruns the deadline gives up now.
        return time.monotonic() + self._wait(state) >= end

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()


@contextlib.asynccontextmanager
async def lookup_budget(provider: str, seconds: float) -> AsyncIterator[float]:
    """Bound a whole lookup (token, queries, retries); yields the monotonic deadline."""
    deadline = time.monotonic() + seconds
    try:
        async with asyncio.timeout(seconds):
            yield deadline
    except TimeoutError:
        raise ProviderError(provider, f"lookup exceeded its {seconds:g}s budget") from None


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
