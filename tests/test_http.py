"""The shared HTTP plumbing (providers._http) against the fake Jamf: waits, deadline, events, errors."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel
from structlog.testing import capture_logs

from providers._coalesce import Coalescer
from providers._http import (
    Backoff,
    BearerAuth,
    Token,
    TokenCache,
    UpstreamClient,
    UpstreamSettings,
    checked_url,
    parse_body,
    read_model,
    retry_after_seconds,
    translate,
)
from providers.base import ProviderError
from tests.fakes.jamf import FakeJamf, create_app
from tests.fakes.provider_hooks import RecordingHook

TOKEN = "/api/oauth/token"
FORM = {
    "grant_type": "client_credentials",
    "client_id": "posture-connector",
    "client_secret": "fake-secret",
}
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> FakeJamf:
    return FakeJamf()


BOMB_MIB = 32
DRIP = {"misbehave": "drip"}


@functools.cache
def gzip_bomb() -> bytes:
    """About 32 KiB of gzip inflating to `BOMB_MIB` MiB of valid JSON (a token answer)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b'{"access_token": "x", "expires_in": 60, "pad": [0')]
    parts += [packer.compress(b",0" * (1 << 19)) for _ in range(BOMB_MIB)]
    return b"".join([*parts, packer.compress(b"]}"), packer.flush()])


def _encoded(coding: str, body: bytes) -> bytes:
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "raw-deflate":  # what some servers send as "deflate"
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return packer.compress(body) + packer.flush()
    return functools.reduce(lambda data, _: gzip.compress(data), coding.split(","), body)


@web.middleware
async def misbehave(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``?misbehave=``: ``drip`` a 200 one blank a tenth of a second for ever, a gzip ``bomb``
    (``bomb401``: as a 401), or the real answer encoded as ``gzip``, ``deflate``, ``raw-deflate``,
    ``gzip,gzip`` or ``gzip*N`` (N times)."""
    kind = request.query.get("misbehave")
    if kind is None:
        return await handler(request)
    if kind == "drip":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while True:  # blanks are valid JSON, each well within any read timeout
            await response.write(b" ")
            await asyncio.sleep(0.1)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    if kind.startswith("bomb"):
        return web.Response(
            status=401 if kind == "bomb401" else 200, body=gzip_bomb(), headers=headers
        )
    answer = await handler(request)
    assert isinstance(answer, web.Response)
    assert isinstance(answer.body, bytes)
    coding, _, times = kind.partition("*")  # "gzip*N": gzip applied N times (a long query else)
    kind = ",".join([coding] * int(times)) if times else kind
    headers["Content-Encoding"] = "deflate" if kind == "raw-deflate" else kind.replace(",", ", ")
    return web.Response(status=answer.status, body=_encoded(kind, answer.body), headers=headers)


@pytest.fixture
async def url(aiohttp_server: Any, fake: FakeJamf) -> str:
    app = create_app(fake)
    app.middlewares.insert(0, misbehave)  # ahead of the fake's token check
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


class Sleeps:
    """Records each requested sleep instead of sleeping."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)


@pytest.fixture
async def make_client(url: str) -> AsyncIterator[Callable[..., UpstreamClient]]:
    made: list[UpstreamClient] = []

    def make(
        hooks: RecordingHook,
        sleeps: Sleeps,
        *,
        backoff: Backoff | None = None,
        **settings: Any,
    ) -> UpstreamClient:
        client = UpstreamClient(
            "up",
            url,
            UpstreamSettings.model_validate(settings),
            hooks=hooks,
            backoff=backoff,
            sleep=sleeps,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


# --- waits and the deadline -----------------------------------------------------------------------


async def test_each_retry_reports_exactly_the_wait_it_sleeps(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """The jittered wait handed to the hook is the very wait that is then slept."""
    fake.inject("503", path=TOKEN, times=2)
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps, backoff=Backoff(0.2), retries=2)
    response = await client.request("POST", TOKEN, route=TOKEN, data=FORM)
    assert response.status_code == 200
    assert sleeps.taken == [r.wait for r in hook.retries]
    assert [(r.attempt, r.reason, r.rate_limited) for r in hook.retries] == [
        (1, "status 503", False),
        (2, "status 503", False),
    ]
    assert 0.1 <= sleeps.taken[0] <= 0.2
    assert 0.2 <= sleeps.taken[1] <= 0.4


async def test_the_deadline_is_checked_against_the_wait_drawn_once(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """One jitter draw per retry: a draw that overruns the deadline fails at once, unslept."""
    fake.inject("503", path=TOKEN, times=None)
    jitter = iter([0.99, 0.0, 0.0])
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps, backoff=Backoff(1.0, jitter=lambda: next(jitter)))
    with pytest.raises(ProviderError, match=f"{TOKEN}: upstream answered 503"):
        await client.request("POST", TOKEN, route=TOKEN, data=FORM, deadline=time.monotonic() + 0.9)
    assert (sleeps.taken, hook.retries) == ([], [])
    assert next(jitter) == 0.0  # only the first value was drawn
    assert fake.count(TOKEN) == 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_sets_the_wait_and_marks_it_rate_limited(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf, form: str
) -> None:
    """Retry-After in seconds or as an HTTP date is the wait, flagged as rate limiting."""
    header = "2" if form == "seconds" else email.utils.format_datetime(NOW + timedelta(seconds=2))
    fake.inject("429", path=TOKEN, retry_after=header)
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps, backoff=Backoff(0.2, now=lambda: NOW))
    assert (await client.request("POST", TOKEN, route=TOKEN, data=FORM)).status_code == 200
    assert sleeps.taken == [2.0]
    assert [(r.wait, r.rate_limited, r.reason) for r in hook.retries] == [(2.0, True, "status 429")]


async def test_retry_after_date_past_the_deadline_fails_at_once(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """A Retry-After date beyond the budget is never waited for."""
    fake.inject(
        "503", path=TOKEN, retry_after=email.utils.format_datetime(NOW + timedelta(minutes=1))
    )
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps, backoff=Backoff(0.2, now=lambda: NOW), budget=4)
    with pytest.raises(ProviderError, match="503"):
        await client.request("POST", TOKEN, route=TOKEN, data=FORM)
    assert sleeps.taken == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Sun, 22 Nov 2026 12:00:05 GMT", 5.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("-3", None),
    ],
    ids=["seconds", "zero", "date", "past-date", "garbage", "negative"],
)
def test_retry_after_parses_seconds_and_dates(header: str, seconds: float | None) -> None:
    """Retry-After is seconds or an HTTP date (a past date is no wait); anything else is ignored."""
    response = httpx.Response(503, headers={"Retry-After": header})
    assert retry_after_seconds(response, NOW) == seconds


# --- a deadline for the whole call ---------------------------------------------------------------


async def test_an_answer_trickling_in_is_cut_at_the_deadline(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """Reads each well within the read timeout do not stretch a call past its deadline, and
    the connection it held serves the next call."""
    hook = RecordingHook()
    client = make_client(hook, Sleeps(), read_timeout=3, max_connections=1)
    started = time.monotonic()
    async with asyncio.timeout(5):  # what the call did before: wait as long as the drip lasts
        with pytest.raises(ProviderError, match=rf"{TOKEN}: timed out \(DeadlineExceeded"):
            await client.request(
                "POST",
                TOKEN,
                route=TOKEN,
                data=FORM,
                params=DRIP,
                deadline=started + 0.5,
            )
    assert 0.5 <= time.monotonic() - started < 1.5
    assert [(c.status, c.error) for c in hook.calls] == [(200, None)]  # its head was answered
    async with asyncio.timeout(2):
        answer = await client.request("POST", TOKEN, route=TOKEN, data=FORM)
    assert answer.status_code == 200


async def test_a_call_without_a_deadline_ends_within_its_budget(
    make_client: Callable[..., UpstreamClient],
) -> None:
    """No deadline given means the budget from now, for the exchange as for the retries."""
    client = make_client(RecordingHook(), Sleeps(), read_timeout=3, budget=0.5)
    started = time.monotonic()
    async with asyncio.timeout(5):
        with pytest.raises(ProviderError, match="DeadlineExceeded"):
            await client.request("POST", TOKEN, route=TOKEN, data=FORM, params=DRIP)
    assert time.monotonic() - started < 1.5


async def test_an_exchange_cut_at_the_deadline_is_reported_unanswered(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """An exchange with no answer by the deadline counts as one failed exchange, not retried,
    named like the read timeouts are."""
    fake.inject("slow", path=TOKEN, delay=3.0)
    hook = RecordingHook()
    client = make_client(hook, Sleeps(), read_timeout=5, retries=2)
    async with asyncio.timeout(5):
        with pytest.raises(ProviderError, match="DeadlineExceeded"):
            await client.request(
                "POST", TOKEN, route=TOKEN, data=FORM, deadline=time.monotonic() + 0.3
            )
    assert [(c.route, c.status, c.error) for c in hook.calls] == [(TOKEN, None, "DeadlineExceeded")]
    assert hook.retries == []


# --- bounded answers ------------------------------------------------------------------------------


async def test_an_answer_inflating_past_the_limit_fails_before_it_is_read(
    make_client: Callable[..., UpstreamClient],
) -> None:
    """A small gzip answer that would inflate to 32 MiB fails at the limit, unretried."""
    hook = RecordingHook()
    client = make_client(hook, Sleeps(), max_answer_bytes=1 << 20, retries=2)
    bomb = {"misbehave": "bomb"}
    with pytest.raises(ProviderError) as caught:
        await client.request("POST", TOKEN, route=TOKEN, data=FORM, params=bomb)
    assert caught.value.message == (
        f"{TOKEN}: the answer is larger than max_answer_bytes (1048576 bytes)"
    )
    assert [c.status for c in hook.calls] == [200]
    assert hook.retries == []


async def test_a_refusal_is_read_within_the_limit_too(
    make_client: Callable[..., UpstreamClient],
) -> None:
    """The body of a 401 that the auth flow reads before renewing the token is bounded too."""
    client = make_client(RecordingHook(), Sleeps(), max_answer_bytes=1 << 20)
    auth = BearerAuth("up", TokenCache(_token))
    bomb = {"misbehave": "bomb401"}
    with pytest.raises(ProviderError, match="larger than max_answer_bytes"):
        await client.request("GET", "/api/v1/auth", route="/api/v1/auth", params=bomb, auth=auth)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "gzip,gzip"], ids=lambda c: c)
async def test_an_encoded_answer_within_the_limit_is_decoded(
    make_client: Callable[..., UpstreamClient], coding: str
) -> None:
    """Each coding the client asks for is decoded, one applied after another in order."""
    client = make_client(RecordingHook(), Sleeps(), max_answer_bytes=1 << 16)
    params = {"misbehave": coding}
    answer = await client.request("POST", TOKEN, route=TOKEN, data=FORM, params=params)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "Bearer"
    assert answer.request.headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("layers", [3, 1500])
async def test_an_answer_stacking_codings_fails_cleanly(
    make_client: Callable[..., UpstreamClient], layers: int
) -> None:
    """No API stacks codings; a hostile one listing thousands made a decoder each (a gigabyte
    for a few answers) and a recursion per layer that escaped as a crash, not a failed call."""
    client = make_client(RecordingHook(), Sleeps(), max_answer_bytes=1 << 16)
    params = {"misbehave": f"gzip*{layers}"}
    with pytest.raises(ProviderError, match=r"could not be decoded \(bad Content-Encoding\)"):
        await client.request("POST", TOKEN, route=TOKEN, data=FORM, params=params)


async def test_a_shared_call_past_its_limit_fails_every_caller() -> None:
    """A coalesced call has its own limit: its callers do not bound it, it is ended anyway."""
    shared: Coalescer[str, None] = Coalescer("up", limit=0.1)
    callers = [shared.run("key", lambda: asyncio.sleep(30)) for _ in range(2)]
    async with asyncio.timeout(2):
        failures = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(f) for f in failures] == [ProviderError, ProviderError]
    assert "past its 0.1s limit" in str(failures[0])


# --- observation ------------------------------------------------------------------------------------


async def test_every_exchange_is_reported_with_its_route(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """Retried attempts and a dropped connection each count as one exchange under the route."""
    fake.inject("reset", path=TOKEN)
    fake.inject("502", path=TOKEN)
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps, backoff=Backoff(0.01), retries=2)
    await client.request("POST", TOKEN, route="/api/oauth/token", data=FORM)
    assert [(c.method, c.route, c.status) for c in hook.calls] == [
        ("POST", TOKEN, None),
        ("POST", TOKEN, 502),
        ("POST", TOKEN, 200),
    ]
    assert hook.calls[0].error is not None
    assert all(c.seconds >= 0 for c in hook.calls)
    assert [r.reason.startswith("status") for r in hook.retries] == [False, True]


async def test_bearer_auth_renews_a_refused_token_once(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """A 401 drops the token, one fresh token is fetched, and the request is sent once more."""
    hook, sleeps = RecordingHook(), Sleeps()
    client = make_client(hook, sleeps)
    fetched: list[str] = []

    async def fetch() -> Token:
        answer = await client.request("POST", TOKEN, route=TOKEN, data=FORM)
        fetched.append(answer.json()["access_token"])
        return Token(fetched[-1], expires_at=time.monotonic() + 600)

    auth = BearerAuth("up", TokenCache(fetch))
    route = "/api/v1/auth"
    assert (await client.request("GET", route, route=route, auth=auth)).status_code == 200
    fake.expire_tokens()
    with capture_logs() as logs:
        assert (await client.request("GET", route, route=route, auth=auth)).status_code == 200
    assert len(fetched) == 2
    assert [c.status for c in hook.calls if c.route == route] == [200, 401, 200]
    assert [e["event"] for e in logs] == ["provider.token_rejected"]
    assert fetched[0] not in repr(logs)


async def test_a_fresh_token_refused_too_is_answered_not_looped(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """A second 401 comes back to the caller after exactly two attempts."""
    fake.inject("401", path="/api/v1/auth", times=None)
    client = make_client(RecordingHook(), Sleeps())
    auth = BearerAuth("up", TokenCache(_token))
    response = await client.request("GET", "/api/v1/auth", route="/api/v1/auth", auth=auth)
    assert response.status_code == 401
    assert fake.count("/api/v1/auth") == 2


async def _token() -> Token:
    return Token("not-a-real-token", expires_at=time.monotonic() + 600)


# --- errors -------------------------------------------------------------------------------------------


async def test_undecodable_body_is_a_provider_error_naming_the_route(
    make_client: Callable[..., UpstreamClient], fake: FakeJamf
) -> None:
    """A body that says gzip and is not becomes a ProviderError, not httpx.DecodingError."""
    fake.inject("badgzip", path=TOKEN)
    client = make_client(RecordingHook(), Sleeps())
    with pytest.raises(ProviderError, match=f"{TOKEN}: the answer could not be decoded"):
        await client.request("POST", TOKEN, route=TOKEN, data=FORM)


def test_a_group_of_failures_becomes_its_first_provider_error() -> None:
    """Concurrent failures: the ProviderError wins over other exceptions in the group."""
    group = ExceptionGroup(
        "two", [ValueError("x"), ExceptionGroup("in", [ProviderError("up", "b")])]
    )
    assert translate("up", group).message == "b"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx.DecodingError("zlib"), "could not be decoded"),
        (httpx.ReadTimeout("slow"), "timed out (ReadTimeout)"),
        (httpx.ConnectError("refused"), "connection failed (ConnectError)"),
        (httpx.TooManyRedirects("loop"), "HTTP failure (TooManyRedirects)"),
        (KeyError("secret-ish"), "unexpected KeyError"),
        (ExceptionGroup("g", [RuntimeError("bug")]), "unexpected RuntimeError"),
    ],
    ids=["decoding", "timeout", "connect", "redirects", "bug", "group-without-provider-error"],
)
def test_every_failure_translates_to_a_secret_free_provider_error(
    error: Exception, message: str
) -> None:
    """Whatever fails below a provider, the chain sees one ProviderError with a safe message."""
    translated = translate("up", error)
    assert isinstance(translated, ProviderError)
    assert translated.message == message or message in translated.message
    assert "secret-ish" not in translated.message


class _Answer(BaseModel):
    token: int


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b'{"token": ', "/x: malformed JSON"),
        (200, b"\xff\xfe", "/x: malformed JSON"),
        (200, b'{"token": "s3cret-value"}', "/x: unexpected JSON shape at token"),
        (200, b"[1, 2]", "/x: unexpected JSON shape at body"),
        (502, b"<html>bad gateway</html>", "/x: unexpected HTTP 502"),
    ],
    ids=["cut-json", "not-utf8", "wrong-type", "wrong-shape", "status"],
)
def test_an_answer_becomes_a_model_or_a_readable_error(
    status: int, body: bytes, message: str
) -> None:
    """Status, JSON and shape problems name the request and the location, never a value."""
    response = httpx.Response(status, content=body)
    with pytest.raises(ProviderError) as caught:
        read_model("up", response, _Answer, where="/x")
    assert caught.value.message == message
    assert parse_body("up", b'{"token": 7}', _Answer, where="/x") == _Answer(token=7)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://jamf.example.com/", "https://jamf.example.com"),
        ("https://jamf.example.com:8443/jamf", "https://jamf.example.com:8443/jamf"),
        ("http://127.0.0.1:9443", "http://127.0.0.1:9443"),
        ("http://localhost:9443", "http://localhost:9443"),
        ("http://[::1]:9443", "http://[::1]:9443"),
    ],
    ids=["https", "path", "ipv4-loopback", "localhost", "ipv6-loopback"],
)
def test_https_and_loopback_http_urls_are_accepted(value: str, expected: str) -> None:
    """https anywhere, plain http on this machine only (a fake); the trailing slash goes."""
    assert checked_url(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://jamf.example.com", "plain http is allowed only"),
        ("http://10.0.0.5:8080", "plain http is allowed only"),
        ("ftp://jamf.example.com", "expected an https:// URL"),
        ("https://jamf.example.com/?q=1", "without query"),
    ],
    ids=["http-remote", "http-private-ip", "ftp", "query"],
)
def test_plain_http_to_another_machine_is_refused(value: str, problem: str) -> None:
    """Credentials never travel over plain http to another machine."""
    with pytest.raises(ValueError, match=problem):
        checked_url(value)
