"""``/metrics``: decisions, refusals, providers, the cache and the exposition format."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.metrics import SECONDS_BUCKETS, STEP_CA_TESTED
from connector.settings import ConfigError
from connector.sidecars import SIDE_LISTENERS
from tests.conftest import AppClient
from tests.helpers import (
    AUTH_ID,
    ENRICH_ID,
    FIXED_NOW,
    authorize,
    config,
    enrich,
    make_settings,
    signed,
    webhook,
)
from tests.metrics_support import parse, run_promtool, scrape, total, value

PEOPLE = "/webhooks/people"
GATE = "/webhooks/gate"
MANAGED = {"managed": True}
STEP_VERSIONS = Path(__file__).parent.parent / "scripts" / "step-versions.env"


async def post(
    client: TestClient[Any, Any], identifier: str, *, path: str = PEOPLE, **headers: str
) -> dict[str, Any]:
    """A signed call as step-ca sends it; the JSON answer."""
    body = enrich(identifier) if path == PEOPLE else authorize(identifier)
    sign = signed(body) if path == PEOPLE else signed(body, webhook_id=AUTH_ID)
    response = await client.post(
        path, data=body, headers={**sign, **headers}, skip_auto_headers=["Content-Type"]
    )
    answer: dict[str, Any] = await response.json()
    return answer


def _hooks(**people: Any) -> list[dict[str, Any]]:
    return [webhook(policy=MANAGED, **people), webhook("gate", "AUTHORIZING", policy=MANAGED)]


async def test_decisions_are_counted_by_webhook_kind_allow_and_code(
    app_client: AppClient, inventory: Path
) -> None:
    """Each answer counts once under its webhook, kind, verdict and reason code."""
    client = await app_client(config(inventory, webhooks=_hooks()))
    assert (await post(client, "C02TEST00001"))["allow"] is True
    assert (await post(client, "C02TEST00002"))["allow"] is False
    assert (await post(client, "C02NOTHERE99"))["allow"] is False
    assert (await post(client, "C02TEST00002", path=GATE))["allow"] is False
    _, samples = await scrape(client)
    name = "posture_connector_decisions_total"
    people = {"webhook": "people", "kind": "ENRICHING"}
    assert value(samples, name, **people, allow="true", code="") == 1
    assert value(samples, name, **people, allow="false", code="device-unmanaged") == 1
    assert value(samples, name, **people, allow="false", code="device-not-found") == 1
    assert (
        value(
            samples,
            name,
            webhook="gate",
            kind="AUTHORIZING",
            allow="false",
            code="device-unmanaged",
        )
        == 1
    )
    rule = "posture_connector_policy_rule_failures_total"
    assert value(samples, rule, webhook="people", rule="managed", code="device-unmanaged") == 1
    assert (
        value(samples, "posture_connector_decision_duration_seconds_count", webhook="people") == 3
    )


async def test_decision_latency_uses_the_otel_http_buckets(app_client: AppClient) -> None:
    """The latency histogram has exactly the OpenTelemetry HTTP seconds buckets."""
    client = await app_client()
    await post(client, "C02TEST00001")
    _, samples = await scrape(client)
    bounds = sorted(
        float(dict(labels)["le"])
        for (name, labels), _ in samples.items()
        if name == "posture_connector_decision_duration_seconds_bucket"
        and ("webhook", "people") in labels
    )
    assert bounds == [*(float(b) for b in SECONDS_BUCKETS), float("inf")]
    assert SECONDS_BUCKETS == (
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
        5,
        7.5,
        10,
    )


async def test_refused_requests_are_counted_by_code(app_client: AppClient) -> None:
    """A refusal before any decision counts under its status and reason code."""
    client = await app_client()
    body = enrich("C02TEST00001")
    tampered = {**signed(body), "X-Smallstep-Signature": "00" * 32}
    await client.post(PEOPLE, data=body, headers=tampered, skip_auto_headers=["Content-Type"])
    await client.post(PEOPLE, data=body, headers={"X-Smallstep-Webhook-ID": "nope"})
    await client.get(PEOPLE)
    _, samples = await scrape(client)
    name = "posture_connector_requests_rejected_total"
    assert value(samples, name, status="401", code="signature-invalid") == 1
    assert value(samples, name, status="401", code="unknown-webhook") == 1
    assert value(samples, name, status="405", code="method-not-allowed") == 1
    assert total(samples, "posture_connector_decisions_total") == 0


async def test_shadow_would_denials_are_counted_apart(
    app_client: AppClient, inventory: Path
) -> None:
    """A shadow webhook's allow counts as an allow, and its would-be denial on its own."""
    client = await app_client(config(inventory, webhooks=_hooks(mode="shadow")))
    assert (await post(client, "C02TEST00002"))["allow"] is True
    _, samples = await scrape(client)
    people = {"webhook": "people", "kind": "ENRICHING"}
    assert value(samples, "posture_connector_decisions_total", **people, allow="true", code="") == 1
    assert (
        value(samples, "posture_connector_shadow_denials_total", **people, code="device-unmanaged")
        == 1
    )
    assert value(samples, "posture_connector_webhook_info", **people, mode="shadow") == 1


async def test_a_file_provider_reports_readiness_devices_and_load_time(
    app_client: AppClient,
) -> None:
    """A file inventory's readiness, device count and load time are on /metrics."""
    before = time.time()
    client = await app_client()
    await post(client, "C02TEST00001")
    _, samples = await scrape(client)
    assert value(samples, "posture_connector_ready") == 1
    assert value(samples, "posture_connector_provider_ready", provider="inventory") == 1
    assert (
        value(
            samples,
            "posture_connector_provider_info",
            provider="inventory",
            kind="csv",
            mode="live",
        )
        == 1
    )
    assert value(samples, "posture_connector_provider_devices", provider="inventory") == 4
    loaded = value(
        samples, "posture_connector_provider_last_load_timestamp_seconds", provider="inventory"
    )
    assert loaded is not None
    assert before - 5 <= loaded <= time.time()
    assert (
        value(
            samples,
            "posture_connector_provider_lookups_total",
            provider="inventory",
            outcome="found",
        )
        == 1
    )
    assert (
        value(
            samples,
            "posture_connector_provider_lookups_total",
            provider="inventory",
            outcome="error",
        )
        == 0
    )


async def test_the_store_turns_ready_on_metrics(app_client: AppClient) -> None:
    """The store's readiness and the audit writer's counts are on /metrics."""
    client = await app_client()
    await post(client, "C02TEST00001")
    deadline = time.monotonic() + 10
    while True:
        _, samples = await scrape(client)
        if value(samples, "posture_connector_audit_entries_written_total") == 1:
            break
        assert time.monotonic() < deadline, "the audit entry was never written"
        await asyncio.sleep(0.05)
    assert value(samples, "posture_connector_store_ready") == 1
    assert value(samples, "posture_connector_audit_entries_dropped_total") == 0


async def test_a_missing_inventory_is_not_ready_on_metrics(
    app_client: AppClient, inventory: Path
) -> None:
    """A provider whose file is missing shows as not ready, and so does the replica."""
    await asyncio.to_thread(inventory.unlink)
    client = await app_client()
    _, samples = await scrape(client)
    assert value(samples, "posture_connector_ready") == 0
    assert value(samples, "posture_connector_provider_ready", provider="inventory") == 0


async def test_no_identifier_user_or_secret_reaches_the_exposition(
    app_client: AppClient, inventory: Path
) -> None:
    """Labels carry config names and codes only: identifiers, users and secrets never appear."""
    client = await app_client(config(inventory, webhooks=_hooks()))
    for identifier in ("C02TEST00001", "C02TEST00002", "C02NOTHERE99", "<script>x"):
        await post(client, identifier, **{"X-Request-Id": "req-7f3a9c"})
    text, _ = await scrape(client)
    settings = make_settings(config(inventory, webhooks=_hooks()))
    secret = settings.webhooks[0].secret.get_secret_value()
    for leak in (
        "C02TEST0000",
        "C02NOTHERE",
        "<script",
        "asharma",
        "anika@",
        "req-7f3a9c",
        secret,
        ENRICH_ID,
    ):
        assert leak not in text


async def test_the_exposition_passes_promtool(app_client: AppClient, inventory: Path) -> None:
    """Prometheus's own linter accepts the exposition after real traffic."""
    client = await app_client(config(inventory, webhooks=_hooks(mode="shadow")))
    await post(client, "C02TEST00001")
    await post(client, "C02TEST00002")
    await post(client, "C02TEST00002", path=GATE)
    await client.get(PEOPLE)
    text, _ = await scrape(client)
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text"),
        ("application/openmetrics-text; version=a", "text/plain; version=0.0.4"),
        ("application/openmetrics-text; version=" + "9" * 5000, "text/plain; version=0.0.4"),
        ("text/html", "text/plain; version=0.0.4"),
    ],
    ids=["openmetrics", "unreadable-version", "huge-version", "other"],
)
async def test_the_format_follows_accept_and_falls_back_to_text(
    app_client: AppClient, accept: str, content_type: str
) -> None:
    """OpenMetrics when asked for; the Prometheus text format for anything else, including an
    Accept header prometheus_client cannot read (it raised, a 500 to any caller)."""
    client = await app_client()
    await post(client, "C02TEST00001")
    response = await client.get("/metrics", headers={"Accept": accept})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert "posture_connector_decisions_total" in await response.text()


async def test_each_app_counts_on_its_own(app_client: AppClient) -> None:
    """Two apps in one process never share a counter (a registry per app)."""
    first = await app_client()
    second = await app_client()
    await post(first, "C02TEST00001")
    _, samples = await scrape(second)
    assert total(samples, "posture_connector_decisions_total") == 0


async def test_build_info_names_the_step_ca_release_tested(app_client: AppClient) -> None:
    """build_info carries the version, Python and the step-ca release the tests pin."""
    pinned = dict(
        line.split("=", 1) for line in STEP_VERSIONS.read_text().splitlines() if "=" in line
    )
    assert pinned["STEP_CA_VERSION"] == STEP_CA_TESTED
    client = await app_client()
    _, samples = await scrape(client)
    (labels,) = [dict(ls) for (n, ls) in samples if n == "posture_connector_build_info"]
    assert labels["step_ca_tested"] == STEP_CA_TESTED
    assert labels["signature"] == "hmac-sha256"
    assert labels["version"]
    assert labels["python"].count(".") == 2


async def test_metrics_can_be_turned_off(app_client: AppClient, inventory: Path) -> None:
    """With ``[metrics] enabled = false`` the service port has no /metrics."""
    client = await app_client(config(inventory, metrics={"enabled": False}))
    assert (await client.get("/metrics")).status == 404


async def test_metrics_on_a_listener_of_their_own(aiohttp_client: Any, inventory: Path) -> None:
    """``listen = "host:port"`` serves /metrics there, and not on the service port."""
    settings = make_settings(config(inventory, metrics={"listen": "127.0.0.1:0"}))
    app = create_app(settings, clock=lambda: FIXED_NOW)
    client = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    await post(client, "C02TEST00001")
    assert (await client.get("/metrics")).status == 404
    host, port = app[SIDE_LISTENERS]["metrics"].addresses[0]
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{host}:{port}/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert total(samples, "posture_connector_decisions_total", allow="true") == 1
    assert value(samples, "posture_connector_connections_open", listener="metrics") == 1


def test_a_webhook_cannot_take_the_metrics_path(inventory: Path) -> None:
    """A webhook at /metrics is refused while metrics are served on the service port."""
    mapping = config(inventory, webhooks=[webhook(path="/metrics")])
    with pytest.raises(ConfigError) as caught:
        make_settings(mapping)
    assert caught.value.problems == [
        '<test>: webhooks[0].path: /metrics is served by [metrics] listen = "service"'
    ]
    make_settings(
        config(inventory, webhooks=[webhook(path="/metrics")], metrics={"listen": "127.0.0.1:9464"})
    )


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("9464", "not host:port"),
        ("::1:9464", "IPv6 address in brackets"),
        ("127.0.0.1:99999", "not host:port"),
    ],
    ids=["no-host", "bare-ipv6", "port-range"],
)
def test_a_bad_metrics_listen_address_is_refused(
    inventory: Path, listen: str, problem: str
) -> None:
    """``[metrics] listen`` must be "service" or host:port."""
    with pytest.raises(ConfigError) as caught:
        make_settings(config(inventory, metrics={"listen": listen}))
    (line,) = caught.value.problems
    assert line.startswith("<test>: metrics.listen: ")
    assert problem in line


async def test_connections_open_evicted_and_refused_reach_metrics(
    inventory: Path,
) -> None:
    """The service listener's open, evicted and refused connections are on /metrics."""
    from connector.server import make_listener, running  # noqa: PLC0415

    settings = make_settings(config(inventory, server={"port": 0, "max_connections": 2}))
    listener = make_listener(settings.server)
    listener.bind()
    app = create_app(settings, clock=lambda: FIXED_NOW)
    async with running(app, listener, settings), httpx.AsyncClient() as http:
        await app[PROVIDERS_STARTED].wait()
        url = f"http://127.0.0.1:{listener.addresses[0][1]}"
        body = enrich("C02TEST00001")
        # A signed call on a kept-alive connection: step-ca's, never displaced at the cap.
        step_ca = await http.post(f"{url}/webhooks/people", content=body, headers=signed(body))
        assert step_ca.status_code == 200
        silent = await asyncio.open_connection("127.0.0.1", listener.addresses[0][1])
        await _until(lambda: listener.open_connections == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.addresses[0][1])
        await _until(lambda: listener.evicted_total == 1)  # the silent one made room
        head = f"POST /webhooks/people HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in signed(body).items())
        writer.write(head.encode() + b"\r\n" + body)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        refused = await asyncio.open_connection("127.0.0.1", listener.addresses[0][1])
        await _until(lambda: listener.refused_total == 1)
        samples = parse((await http.get(f"{url}/metrics")).text)
        for _, w in (silent, (reader, writer), refused):
            w.close()
    assert value(samples, "posture_connector_connections_open", listener="service") == 2
    assert value(samples, "posture_connector_connections_evicted_total", listener="service") == 1
    assert value(samples, "posture_connector_connections_refused_total", listener="service") == 1


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_metrics_port_that_cannot_be_bound_leaves_the_service_running(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A taken metrics port is one server.side_listen_failed line; webhooks are still answered."""
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(config(inventory, metrics={"listen": f"127.0.0.1:{port}"}))
        app = create_app(settings, clock=lambda: FIXED_NOW)
        with capture_logs() as logs:
            client = await aiohttp_client(app)
            await app[PROVIDERS_STARTED].wait()
        assert (await post(client, "C02TEST00001"))["allow"] is True
    failed = [e for e in logs if e["event"] == "server.side_listen_failed"]
    assert len(failed) == 1
    assert failed[0]["listener"] == "metrics"
    assert failed[0]["port"] == port
    assert "metrics" not in app[SIDE_LISTENERS]
