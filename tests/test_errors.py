"""Error answers through the real app: the catch-all 500 and malformed basic credentials."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs
from structlog.typing import Processor

from connector import create_app
from connector.keys import PROVIDERS, ROUTES, WebhookRuntime
from connector.lookup import ProviderChain
from providers import DeviceIdentifier, DeviceRecord, Provider
from tests.conftest import AppClient
from tests.helpers import FIXED_NOW, config, enrich, make_settings, signed, webhook
from tests.metrics_support import scrape, total, value

PEOPLE = "/webhooks/people"
LEAK = "Bearer eyJhbGciOiJub25lIn0.not-for-the-caller"


class BuggyInventory:
    """A provider with a bug: its records break the enrichment (groups that are not `GroupRef`),
    or, with `crash`, its lookup raises an exception that is not a `ProviderError`."""

    def __init__(self, *, crash: bool = False, error: type[Exception] = KeyError) -> None:
        self.crash = crash
        self.error = error

    name = "inventory"
    ready = True
    cacheable = False

    async def start(self) -> None:
        """Nothing to load."""

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Fail the way a mapping bug would, with something sensitive at hand."""
        if self.crash:
            raise self.error(f"{identifier.value}: {LEAK}")
        return DeviceRecord(
            provider=self.name,
            serial=identifier.value,
            name=LEAK,
            managed=True,
            groups=(LEAK,),  # type: ignore[arg-type]  # the bug under test
        )

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Not offered."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release."""


def serve_from(app: web.Application, provider: BuggyInventory) -> web.Application:
    """Let every webhook of the not yet started `app` ask `provider` alone."""
    providers: dict[str, Provider] = {provider.name: provider}
    app[PROVIDERS] = providers
    for hooks in app[ROUTES].values():
        for webhook_id, runtime in hooks.items():
            chain = ProviderChain([provider], budget=5.0, on_failure="deny")
            hooks[webhook_id] = WebhookRuntime(runtime.settings, chain)
    return app


async def test_unexpected_exception_is_a_logged_json_500(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A bug inside a handler answers a stable JSON 500 (step-ca refuses) and logs one traceback."""
    app = create_app(make_settings(config(inventory)), clock=lambda: FIXED_NOW)
    client = await aiohttp_client(serve_from(app, BuggyInventory()))
    body = enrich("C02TEST00001")
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
    ]
    with capture_logs(processors=processors) as logs:
        response = await client.post(
            PEOPLE,
            data=body,
            headers=signed(body, request_id="req-bug"),
            skip_auto_headers=["Content-Type"],
        )
        text = await response.text()
    assert response.status == 500
    assert await response.json() == {
        "allow": False,
        "error": {"code": "internal-error", "message": "internal error; see the connector's log"},
    }
    assert "eyJ" not in text
    assert "AttributeError" not in text
    [failed] = [event for event in logs if "exception" in event]
    assert (failed["event"], failed["log_level"], failed["path"], failed["request_id"]) == (
        "request.failed",
        "error",
        PEOPLE,
        "req-bug",
    )
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "AttributeError" in failed["exception"]
    assert not [event for event in logs if event["event"] == "webhook.decision"]


@pytest.mark.parametrize("error", [KeyError, TimeoutError])
async def test_provider_crash_is_a_fail_closed_provider_failure(
    aiohttp_client: Any, inventory: Path, error: type[Exception]
) -> None:
    """An unexpected exception inside a provider denies `inventory-unavailable` (never a 500,
    never the next provider's answer) and logs its traceback once; a `TimeoutError` of its own
    (not the decision budget's) too."""
    app = create_app(make_settings(config(inventory)), clock=lambda: FIXED_NOW)
    client = await aiohttp_client(serve_from(app, BuggyInventory(crash=True, error=error)))
    body = enrich("C02TEST00001")
    processors: list[Processor] = [structlog.processors.format_exc_info]
    with capture_logs(processors=processors) as logs:
        response = await client.post(
            PEOPLE, data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
        )
    assert response.status == 200
    answer = await response.json()
    assert answer["allow"] is False
    assert answer["error"]["code"] == "inventory-unavailable"
    assert "eyJ" not in await response.text()
    crashed = [event for event in logs if event["event"] == "provider.lookup_crashed"]
    assert len(crashed) == 1
    assert error.__name__ in crashed[0]["exception"]


def _unpadded(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic %%%not-base64%%%",
        f"Basic {_unpadded(b'ca:pw-s3cret!')}",
        "Basic ca:pw-s3cret!",
        "Basic Y2E6cHctczNjcmV0IQ==ü",
    ],
    ids=["not-base64", "missing-padding", "not-encoded", "non-ascii"],
)
async def test_malformed_basic_credentials_are_refused(
    app_client: AppClient, inventory: Path, authorization: str
) -> None:
    """A Basic header that is not valid base64 is a 401 `unauthorized`, never a 500 or an echo."""
    basic = {"username": "ca", "password": "pw-s3cret!"}
    client = await app_client(config(inventory, webhooks=[webhook(basic_auth=basic)]))
    body = enrich("C02TEST00001")
    response = await client.post(
        PEOPLE,
        data=body,
        headers={**signed(body), "Authorization": authorization},
        skip_auto_headers=["Content-Type"],
    )
    text = await response.text()
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert "s3cret" not in text


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("POST", "/healthz", 405, "method-not-allowed"), ("POST", "/webhooks/nope", 404, "not-found")],
    ids=["wrong-method", "unknown-path"],
)
async def test_routing_refusals_are_json_with_a_stable_code(
    app_client: AppClient, method: str, path: str, status: int, code: str
) -> None:
    """aiohttp's own 404 and 405 get the same JSON shape and stable codes as every refusal."""
    client = await app_client()
    response = await client.request(method, path, data=b"{}")
    assert response.status == status
    answer = await response.json()
    assert (answer["allow"], answer["error"]["code"]) == (False, code)


async def raw_exchange(client: Any, head: list[bytes], body: bytes = b"") -> bytes:
    """Send one request written byte for byte; everything the server wrote until it closed."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"\r\n".join([*head, b"Host: localhost", b"", b""]) + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()


def signed_post(
    path: str, body: bytes, *extra: bytes, version: bytes = b"1.1", method: bytes = b"POST"
) -> list[bytes]:
    """The head of a signed request (POST) of `body` to `path`, with `extra` header lines."""
    head = [method + b" " + path.encode() + b" HTTP/" + version]
    head += [f"{name}: {value}".encode() for name, value in signed(body).items()]
    return [*head, b"Content-Length: " + str(len(body)).encode(), *extra]


@pytest.mark.parametrize(
    ("method", "path", "expect"),
    [
        (b"POST", PEOPLE, b"\xff\xfe"),
        (b"POST", PEOPLE, b"\xc3\x28continue"),
        (b"POST", PEOPLE, b"nonsense"),
        (b"POST", PEOPLE, b"100-continue, other"),
        (b"GET", "/healthz", b"\xff"),
    ],
    ids=["not-utf8", "bad-utf8-sequence", "unknown", "two-expectations", "health-not-utf8"],
)
async def test_an_expectation_other_than_continue_is_a_json_417(
    app_client: AppClient, method: bytes, path: str, expect: bytes
) -> None:
    """aiohttp answers `Expect:` before any middleware, and its own refusal of a value that is not
    UTF-8 was a 500: ours is a logged JSON 417 that closes the connection, and decides nothing."""
    client = await app_client()
    body = enrich("C02TEST00001")
    with capture_logs() as logs:
        request = signed_post(path, body, b"Expect: " + expect, method=method)
        answer = await raw_exchange(client, request, body)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 417 "), answer[:200]
    assert b"Connection: close" in head
    error = json.loads(payload)
    assert (error["allow"], error["error"]["code"]) == (False, "expectation-failed")
    [rejected] = [e for e in logs if e["event"] == "request.rejected"]
    assert (rejected["status"], rejected["code"]) == (417, "expectation-failed")
    assert not [e for e in logs if e["event"] == "webhook.decision"]
    _, samples = await scrape(client)
    name = "posture_connector_requests_rejected_total"
    assert value(samples, name, status="417", code="expectation-failed") == 1
    assert total(samples, "posture_connector_decisions_total") == 0


async def test_expect_continue_is_answered_and_the_call_decided(app_client: AppClient) -> None:
    """`Expect: 100-continue` (any case) gets its interim answer, then the decision."""
    client = await app_client()
    body = enrich("C02TEST00001")
    answer = await raw_exchange(
        client, signed_post(PEOPLE, body, b"Expect: 100-Continue", b"Connection: close"), body
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2].partition(b"\r\n\r\n")[2])["allow"] is True


async def test_http_1_0_ignores_expect(app_client: AppClient) -> None:
    """HTTP/1.0 has no `Expect:`; the call is decided as if it were not there (as aiohttp does)."""
    client = await app_client()
    body = enrich("C02TEST00001")
    head = signed_post(PEOPLE, body, b"Expect: nonsense", version=b"1.0")
    answer = await raw_exchange(client, head, body)
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n"), answer[:200]
