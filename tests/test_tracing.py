"""OpenTelemetry traces: a span per webhook call with verify, lookup and upstream children."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.keys import SETTINGS
from connector.observability import Observability
from connector.persistence import PERSISTENCE
from connector.tracing import FLUSH_TIMEOUT
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as fake_jamf_app
from tests.helpers import FIXED_NOW, SECRET, config, enrich, make_settings, signed, webhook

PEOPLE = "/webhooks/people"
DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
MAC = "C02FK3Q7MD6T"


async def traced(
    aiohttp_client: Any, mapping: dict[str, Any]
) -> tuple[TestClient[Any, Any], InMemorySpanExporter]:
    """The app for `mapping`, tracing into an in-memory exporter."""
    exporter = InMemorySpanExporter()
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW, span_exporter=exporter)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    exporter.clear()  # spans of the providers' start are not the test's
    return client, exporter


async def call(
    client: TestClient[Any, Any], identifier: str, **headers: str
) -> web.StreamResponse | Any:
    body = enrich(identifier)
    return await client.post(
        PEOPLE,
        data=body,
        headers={**signed(body), "X-Request-Id": "req-42", **headers},
        skip_auto_headers=["Content-Type"],
    )


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def attribute_text(spans: tuple[ReadableSpan, ...]) -> str:
    """Every attribute and event attribute of `spans`, as one text."""
    parts: list[str] = []
    for span in spans:
        parts.append(repr(dict(span.attributes or {})))
        parts.extend(repr(dict(event.attributes or {})) for event in span.events)
    return "\n".join(parts)


async def test_a_call_is_one_server_span_with_verify_and_lookup_children(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A webhook call is a SERVER span carrying step-ca's request id, with its steps as children."""
    client, exporter = await traced(aiohttp_client, config(inventory))
    assert (await call(client, "C02TEST00001")).status == 200
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /webhooks/people", "verify", "lookup inventory"}
    root = spans["POST /webhooks/people"]
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    attributes = dict(root.attributes or {})
    assert attributes["stepca.request_id"] == "req-42"
    assert attributes["http.route"] == PEOPLE
    assert attributes["http.response.status_code"] == 200
    assert attributes["posture.webhook"] == "people"
    assert attributes["posture.decision.allow"] is True
    for child in ("verify", "lookup inventory"):
        assert parent_id(spans[child]) == span_id(root)
    lookup = dict(spans["lookup inventory"].attributes or {})
    assert lookup == {
        "posture.provider": "inventory",
        "posture.lookup.outcome": "found",
        "posture.lookup.cached": False,
    }
    verify, look = spans["verify"], spans["lookup inventory"]
    assert root.start_time is not None
    assert verify.end_time is not None
    assert root.start_time <= verify.start_time  # type: ignore[operator]
    assert verify.end_time <= look.start_time  # type: ignore[operator]
    assert look.end_time <= root.end_time  # type: ignore[operator]


async def test_a_refused_call_ends_verify_as_an_error_with_its_code(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A refused signature shows as an errored verify span naming the reason code."""
    client, exporter = await traced(aiohttp_client, config(inventory))
    response = await call(client, "C02TEST00001", **{"X-Smallstep-Signature": "00" * 32})
    assert response.status == 401
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /webhooks/people", "verify"}
    verify = spans["verify"]
    assert verify.status.status_code is StatusCode.ERROR
    assert dict(verify.attributes or {})["posture.rejection.code"] == "signature-invalid"
    root = dict(spans["POST /webhooks/people"].attributes or {})
    assert root["error.type"] == "signature-invalid"
    assert root["http.response.status_code"] == 401


async def test_a_denial_names_its_failed_rules_on_the_span(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A policy denial carries its code and failed rule names, never the device's data."""
    hooks = [webhook(policy={"managed": True}), webhook("gate", "AUTHORIZING")]
    client, exporter = await traced(aiohttp_client, config(inventory, webhooks=hooks))
    await call(client, "C02TEST00002")
    spans = exporter.get_finished_spans()
    root = dict(by_name(spans)["POST /webhooks/people"].attributes or {})
    assert root["posture.decision.allow"] is False
    assert root["posture.decision.code"] == "device-unmanaged"
    assert root["posture.policy.failed_rules"] == ("managed",)
    text = attribute_text(spans)
    for private in ("C02TEST00002", "MBA-TWO", "Loaners", SECRET):
        assert private not in text


async def test_upstream_requests_are_client_spans_under_their_lookup(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Each upstream attempt is a CLIENT span under the lookup it served; a retry is an event."""
    fake = FakeJamf.from_file(DEVICES)
    server = await aiohttp_server(fake_jamf_app(fake))
    jamf = {
        "kind": "jamf",
        "url": str(server.make_url("")).rstrip("/"),
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
    }
    mapping = config(
        Path("unused.csv"), providers={"jamf": jamf}, webhooks=[webhook(providers=("jamf",))]
    )
    client, exporter = await traced(aiohttp_client, mapping)
    fake.inject("503")
    assert (await call(client, MAC)).status == 200
    spans = exporter.get_finished_spans()
    lookup = by_name(spans)["lookup jamf"]
    upstream = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(upstream) >= 2
    assert all(parent_id(s) == span_id(lookup) for s in upstream)
    statuses = [dict(s.attributes or {}).get("http.response.status_code") for s in upstream]
    assert statuses[0] == 503
    assert 200 in statuses
    assert upstream[0].status.status_code is StatusCode.ERROR
    assert all(str(dict(s.attributes or {})["url.template"]).startswith("/") for s in upstream)
    assert [e.name for e in lookup.events] == ["retry"]
    assert MAC not in attribute_text(spans)
    assert "fake-secret" not in attribute_text(spans)


@pytest.mark.parametrize("header", ["traceparent", "Traceparent"])
async def test_a_callers_traceparent_is_continued(
    aiohttp_client: Any, inventory: Path, header: str
) -> None:
    """A W3C traceparent header makes the call's span part of the caller's trace, in any case
    (Go's net/http writes it ``Traceparent``)."""
    client, exporter = await traced(aiohttp_client, config(inventory))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    await call(client, "C02TEST00001", **{header: f"00-{trace_id}-{parent}-01"})
    root = by_name(exporter.get_finished_spans())["POST /webhooks/people"]
    assert root.context is not None
    assert f"{root.context.trace_id:032x}" == trace_id
    assert parent_id(root) == int(parent, 16)


@pytest.mark.parametrize("flags", ["01", "00"])
async def test_a_caller_cannot_choose_to_be_sampled(
    aiohttp_client: Any, inventory: Path, flags: str
) -> None:
    """Anyone can send a traceparent before any signature is checked: neither its sampled flag
    nor its trace id (a small one passes any ratio that reads the id) may override the
    configured ratio, 1 % here: of 50 such calls, 10 traced would be a 1-in-10^13 draw."""
    mapping = {**config(inventory), "tracing": {"sample_ratio": 0.01}}
    client, exporter = await traced(aiohttp_client, mapping)
    for n in range(1, 51):
        await call(client, "C02TEST00001", traceparent=f"00-{n:032x}-{1:016x}-{flags}")
    roots = [s for s in exporter.get_finished_spans() if s.name == "POST /webhooks/people"]
    assert len(roots) < 10


async def test_a_request_id_that_is_not_utf8_is_exported_as_valid_text(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A header's bytes that are not UTF-8 (anyone may send them) reach the span as U+FFFD, as
    in the log and the audit log: OTLP's encoder refused the lone surrogates aiohttp keeps, and
    logged a traceback per request."""
    client, exporter = await traced(aiohttp_client, config(inventory))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST {PEOPLE} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"X-Request-Id: req-\xff-42\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert (await reader.read()).startswith(b"HTTP/1.1 401")  # unsigned: refused, traced
    writer.close()
    root = by_name(exporter.get_finished_spans())[f"POST {PEOPLE}"]
    assert (root.attributes or {})["stepca.request_id"] == "req-\ufffd-42"
    [encoded] = [
        span
        for resource in encode_spans([root]).resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert "stepca.request_id" in [kv.key for kv in encoded.attributes]


async def test_health_checks_are_not_traced(aiohttp_client: Any, inventory: Path) -> None:
    """Only webhook calls open spans: probes and scrapes do not."""
    client, exporter = await traced(aiohttp_client, config(inventory))
    for path in ("/healthz", "/readyz", "/metrics", "/nowhere"):
        await client.get(path)
    assert exporter.get_finished_spans() == ()


def test_tracing_is_off_unless_configured(inventory: Path) -> None:
    """Without [tracing] enabled (or an exporter) no tracer or hook exists."""
    observability = Observability(make_settings(config(inventory)))
    assert observability.tracing is None
    assert [type(h).__name__ for h in observability.hooks] == ["Activity", "Metrics"]


async def test_spans_reach_an_otlp_collector_with_its_headers(
    aiohttp_client: Any, aiohttp_server: Any, inventory: Path
) -> None:
    """With [tracing] enabled, spans are exported over OTLP/HTTP with the configured headers."""
    received: list[tuple[str, str | None, int]] = []

    async def collect(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((request.content_type, request.headers.get("x-api-key"), len(body)))
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    server = await aiohttp_server(collector)
    tracing = {
        "enabled": True,
        "endpoint": str(server.make_url("/v1/traces")),
        "headers": {"x-api-key": "collector-key"},
        "timeout": 5,
    }
    app = create_app(make_settings(config(inventory, tracing=tracing)), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    assert (await call(client, "C02TEST00001")).status == 200
    await client.close()  # the app's cleanup flushes the batch exporter
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.05)
    assert received
    content_type, key, size = received[0]
    assert content_type == "application/x-protobuf"
    assert key == "collector-key"
    assert size > 0


async def test_a_collector_that_never_answers_holds_the_shutdown_only_briefly(
    aiohttp_client: Any, aiohttp_server: Any, inventory: Path
) -> None:
    """A collector that takes the spans and never answers gets `FLUSH_TIMEOUT` at shutdown,
    not the SDK's 30 s or an export timeout per queued batch; the audit log is flushed first."""
    stuck = asyncio.Event()

    async def collect(request: web.Request) -> web.Response:
        await request.read()
        await stuck.wait()  # never set: the answer never comes
        return web.Response()

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    server = await aiohttp_server(collector)
    tracing = {"enabled": True, "endpoint": str(server.make_url("/v1/traces")), "timeout": 5}
    app = create_app(make_settings(config(inventory, tracing=tracing)), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    for _ in range(500):  # the store opens beside the service: its rows need it
        if app[PERSISTENCE].store.ready:
            break
        await asyncio.sleep(0.01)
    for _ in range(3):
        assert (await call(client, "C02TEST00001")).status == 200
    began = time.monotonic()
    with capture_logs() as logs:
        await client.close()
    assert time.monotonic() - began < FLUSH_TIMEOUT + 1.5
    timeouts = [e for e in logs if e["event"] == "service.close_timeout"]
    assert timeouts == [
        {
            "event": "service.close_timeout",
            "what": "tracing",
            "timeout": FLUSH_TIMEOUT,
            "log_level": "warning",
        }
    ]
    with sqlite3.connect(app[SETTINGS].store.path) as db:  # flushed, not held up by tracing
        assert db.execute("SELECT count(*) FROM decisions").fetchone() == (3,)


@pytest.mark.parametrize(
    "tracing",
    [{"enabled": True, "endpoint": "localhost:4318"}, {"sample_ratio": 2}],
    ids=["endpoint-scheme", "ratio"],
)
def test_bad_tracing_settings_are_refused(inventory: Path, tracing: dict[str, Any]) -> None:
    """The OTLP endpoint must be an http(s) URL and the sample ratio within 0..1."""
    from connector.settings import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError) as caught:
        make_settings(config(inventory, tracing=tracing))
    assert caught.value.problems[0].startswith("<test>: tracing.")


async def test_a_shadow_decision_carries_the_policys_own_verdict(
    aiohttp_client: Any, inventory: Path
) -> None:
    """In shadow mode the span says step-ca got an allow and what the policy would have said."""
    hooks = [webhook(policy={"managed": True}, mode="shadow"), webhook("gate", "AUTHORIZING")]
    client, exporter = await traced(aiohttp_client, config(inventory, webhooks=hooks))
    await call(client, "C02TEST00002")
    root = dict(by_name(exporter.get_finished_spans())["POST /webhooks/people"].attributes or {})
    assert root["posture.decision.allow"] is True
    assert root["posture.decision.shadow"] is True
    assert root["posture.decision.would_allow"] is False
    assert root["posture.decision.code"] == "device-unmanaged"


def test_events_outside_a_call_open_no_span(inventory: Path) -> None:
    """Background work (syncs, provider starts) reports events but opens no span."""
    from connector.observe import DecisionEvent, LookupEvent  # noqa: PLC0415
    from providers.observe import RetryScheduled, TokenEvent, UpstreamCall  # noqa: PLC0415

    exporter = InMemorySpanExporter()
    tracing = Observability(make_settings(config(inventory)), span_exporter=exporter).tracing
    assert tracing is not None
    tracing.upstream_call(UpstreamCall("jamf", "GET", "/api/{id}", 200, 0.01))
    tracing.retry(RetryScheduled("jamf", "/api/{id}", 1, 0.1, "status 503"))
    tracing.token(TokenEvent("jamf", "refreshed", expires_in=60))
    tracing.lookup(LookupEvent("jamf", found=True, outcome="found", latency=0.01))
    tracing.decision(DecisionEvent("people", "ENRICHING", None, None, True, None, None, None, 0.1))
    tracing.request_rejected(401, "signature-invalid")
    tracing.provider.force_flush()
    assert exporter.get_finished_spans() == ()


async def test_a_token_fetched_during_a_lookup_is_an_event_and_a_span(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A token refreshed inside a lookup shows as a lookup event and its own CLIENT span."""
    fake = FakeJamf.from_file(DEVICES)
    server = await aiohttp_server(fake_jamf_app(fake))
    jamf = {
        "kind": "jamf",
        "url": str(server.make_url("")).rstrip("/"),
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
    }
    mapping = config(
        Path("unused.csv"), providers={"jamf": jamf}, webhooks=[webhook(providers=("jamf",))]
    )
    client, exporter = await traced(aiohttp_client, mapping)
    fake.expire_tokens()
    assert (await call(client, MAC)).status == 200
    spans = exporter.get_finished_spans()
    lookup = by_name(spans)["lookup jamf"]
    assert "token.refreshed" in [e.name for e in lookup.events]
    routes = [
        dict(s.attributes or {}).get("url.template") for s in spans if s.kind is SpanKind.CLIENT
    ]
    assert any("token" in str(r) for r in routes)
