"""`Retry-After` as an HTTP date, through the real `UpstreamClient` against a small real server."""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

from providers import ProviderError
from providers._http import UpstreamClient, UpstreamSettings, retry_after_seconds

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


class BusyOnce:
    """An upstream that answers its first request 503 with `Retry-After: <date>`, then 200."""

    def __init__(self, retry_at: float) -> None:
        self.retry_at = retry_at
        self.arrivals: list[float] = []

    async def handle(self, _request: web.Request) -> web.Response:
        """Record when the request arrived; refuse the first one until `retry_at`."""
        self.arrivals.append(time.time())
        if len(self.arrivals) == 1:
            date = email.utils.formatdate(self.retry_at, usegmt=True)
            return web.json_response({"busy": True}, status=503, headers={"Retry-After": date})
        return web.json_response({"busy": False})


async def _client_for(aiohttp_server: Any, upstream: BusyOnce, budget: float) -> UpstreamClient:
    app = web.Application()
    app.router.add_get("/devices", upstream.handle)
    server = await aiohttp_server(app)
    # A 10 ms backoff: a retry that ignored the date would arrive long before it.
    settings = UpstreamSettings(budget=budget, backoff=0.01, retries=2)
    return UpstreamClient("upstream", str(server.make_url("")), settings)


async def test_http_date_retry_after_is_waited_for(aiohttp_server: Any) -> None:
    """After a 503 with an HTTP-date `Retry-After`, the retry waits until that date, in budget."""
    # HTTP dates have whole seconds: the next whole second at least 0.3 s away.
    upstream = BusyOnce(retry_at=math.ceil(time.time() + 0.3))
    client = await _client_for(aiohttp_server, upstream, budget=3.0)
    started = time.monotonic()
    try:
        response = await client.request("GET", "/devices", route="/devices")
    finally:
        await client.aclose()
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(upstream.arrivals) == 2
    assert upstream.arrivals[1] >= upstream.retry_at - 0.01  # timer granularity only
    assert elapsed < 3.0


async def test_http_date_past_the_budget_fails_at_once(aiohttp_server: Any) -> None:
    """A `Retry-After` date beyond the lookup budget gives up now instead of sleeping into it."""
    upstream = BusyOnce(retry_at=math.ceil(time.time() + 30))
    client = await _client_for(aiohttp_server, upstream, budget=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError, match="upstream answered 503"):
            await client.request("GET", "/devices", route="/devices")
    finally:
        await client.aclose()
    assert len(upstream.arrivals) == 1
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (email.utils.format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Sun, 22 Nov 2026 12:01:30 GMT", 90.0),
        (email.utils.format_datetime(NOW - timedelta(minutes=5), usegmt=True), 0.0),
        ("soon", None),
        (None, None),
    ],
    ids=["seconds", "http-date", "http-date-literal", "date-in-the-past", "unreadable", "absent"],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    """`Retry-After` is seconds or an HTTP date (a past date means now); anything else is None."""
    headers = {} if header is None else {"Retry-After": header}
    response = httpx.Response(503, headers=headers)
    assert retry_after_seconds(response, now=NOW) == seconds


@pytest.mark.parametrize(
    "raw",
    [b"\xb2", b"1\xb2", "\u0661\u0662".encode()],
    ids=["superscript", "mixed", "arabic-indic"],
)
def test_retry_after_with_digits_other_than_ascii_is_unreadable(raw: bytes) -> None:
    """RFC 9110's delay-seconds are ASCII digits. Other characters Unicode calls digits (a
    superscript two read as Latin-1 crashed `float`) are unreadable, not a provider crash."""
    response = httpx.Response(503, headers=[(b"Retry-After", raw)])
    assert retry_after_seconds(response, now=NOW) is None
