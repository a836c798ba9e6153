"""``/metrics`` for a remote inventory (the fake Jamf): upstream calls, retries, tokens, the
cache, coalesced lookups and a synced copy in the store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.lookup import encode_answer
from connector.store import StoreSettings, open_store
from connector.sync import Syncer, copy_name
from providers import build_provider
from providers.base import DeviceLister
from providers.sync_options import SyncOptions
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as fake_jamf_app
from tests.helpers import FIXED_NOW, config, enrich, make_settings, signed, webhook
from tests.metrics_support import scrape, total, value

DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
MAC = "C02FK3Q7MD6T"
PEOPLE = "/webhooks/people"


@pytest.fixture
def fake() -> FakeJamf:
    return FakeJamf.from_file(DEVICES)


@pytest.fixture
async def jamf_url(aiohttp_server: Any, fake: FakeJamf) -> str:
    server = await aiohttp_server(fake_jamf_app(fake))
    return str(server.make_url("")).rstrip("/")


def jamf_table(url: str, **provider: Any) -> dict[str, Any]:
    return {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
        **provider,
    }


async def service(aiohttp_client: Any, url: str, **provider: Any) -> TestClient[Any, Any]:
    """The app with one Jamf provider behind the people webhook."""
    sections = {k: provider.pop(k) for k in ("store", "server") if k in provider}
    mapping = config(
        Path("unused.csv"),
        providers={"jamf": jamf_table(url, **provider)},
        webhooks=[webhook(providers=("jamf",), policy={"managed": True})],
        **sections,
    )
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    return client


async def decide(client: TestClient[Any, Any], identifier: str) -> bool:
    body = enrich(identifier)
    response = await client.post(
        PEOPLE, data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    answer: dict[str, Any] = await response.json()
    return bool(answer["allow"])


async def test_upstream_calls_retries_and_tokens_are_counted(
    aiohttp_client: Any, jamf_url: str, fake: FakeJamf
) -> None:
    """Upstream exchanges count by status class, with retries, Retry-After waits and tokens."""
    client = await service(aiohttp_client, jamf_url)
    fake.inject("429", retry_after="0")
    fake.inject("503")
    assert await decide(client, MAC) is True
    _, samples = await scrape(client)
    upstream = "posture_connector_upstream_requests_total"
    assert total(samples, upstream, provider="jamf", status_class="4xx") == 1
    assert total(samples, upstream, provider="jamf", status_class="5xx") == 1
    assert total(samples, upstream, provider="jamf", status_class="2xx") >= 2  # token + answer
    assert value(samples, "posture_connector_upstream_retries_total", provider="jamf") == 2
    assert value(samples, "posture_connector_upstream_rate_limit_waits_total", provider="jamf") == 1
    assert (
        value(
            samples, "posture_connector_token_refreshes_total", provider="jamf", outcome="refreshed"
        )
        == 1
    )
    count = value(
        samples, "posture_connector_upstream_request_duration_seconds_count", provider="jamf"
    )
    assert count == total(samples, upstream, provider="jamf")
    routes = {dict(ls)["route"] for (n, ls) in samples if n == upstream}
    assert MAC not in repr(routes)
    last_ok = value(
        samples, "posture_connector_upstream_last_success_timestamp_seconds", provider="jamf"
    )
    assert last_ok is not None
    assert abs(last_ok - time.time()) < 60


async def test_the_cache_counts_hits_and_misses(aiohttp_client: Any, jamf_url: str) -> None:
    """A repeated lookup of a remote inventory is a cache hit; the first one a miss."""
    client = await service(aiohttp_client, jamf_url)
    assert await decide(client, MAC) is True
    assert await decide(client, MAC) is True
    _, samples = await scrape(client)
    assert value(samples, "posture_connector_cache_misses_total", provider="jamf") == 1
    assert value(samples, "posture_connector_cache_hits_total", provider="jamf") == 1
    assert (
        value(samples, "posture_connector_provider_lookups_total", provider="jamf", outcome="found")
        == 2
    )


async def test_concurrent_lookups_of_one_device_count_as_coalesced(
    aiohttp_client: Any, jamf_url: str, fake: FakeJamf
) -> None:
    """Calls that wait for a lookup already under way count as coalesced waits."""
    client = await service(aiohttp_client, jamf_url)
    fake.inject("slow", delay=0.3)
    answers = await asyncio.gather(*(decide(client, MAC) for _ in range(3)))
    assert answers == [True, True, True]
    _, samples = await scrape(client)
    assert value(samples, "posture_connector_cache_coalesced_waits_total", webhook="people") == 2
    assert value(samples, "posture_connector_cache_misses_total", provider="jamf") == 1


async def test_a_failing_upstream_shows_as_lookup_errors(
    aiohttp_client: Any, jamf_url: str, fake: FakeJamf
) -> None:
    """An upstream that keeps failing shows as error lookups and 5xx exchanges, never cached."""
    client = await service(aiohttp_client, jamf_url, retries=1)
    fake.inject("500", times=None)
    assert await decide(client, MAC) is False
    _, samples = await scrape(client)
    assert (
        value(samples, "posture_connector_provider_lookups_total", provider="jamf", outcome="error")
        == 1
    )
    assert (
        total(
            samples,
            "posture_connector_upstream_requests_total",
            provider="jamf",
            status_class="5xx",
        )
        >= 1
    )
    assert (
        value(
            samples,
            "posture_connector_decisions_total",
            webhook="people",
            kind="ENRICHING",
            allow="false",
            code="inventory-unavailable",
        )
        == 1
    )


async def test_a_synced_copy_reports_its_generation_devices_and_time(
    aiohttp_client: Any, jamf_url: str, tmp_path: Path
) -> None:
    """A synced provider's devices and last sync come from the store's current generation."""
    sync = {"mode": "sync", "sync_interval": 60, "max_staleness": 600}
    settings = make_settings(
        config(
            Path("unused.csv"),
            providers={"jamf": jamf_table(jamf_url, **sync)},
            webhooks=[webhook(providers=("jamf",))],
        )
    )
    store = await open_store(StoreSettings(path=tmp_path / "store.sqlite3"))
    lister = build_provider("jamf", settings.providers["jamf"])
    try:
        await lister.start()
        assert isinstance(lister, DeviceLister)
        options = SyncOptions(mode="sync", sync_interval=60, max_staleness=600)
        table = settings.providers["jamf"]
        assert isinstance(table, SyncOptions)
        key = copy_name("jamf", table)  # the service's own copy
        syncer = Syncer("jamf", lister, options, store, replica="a", encode=encode_answer, key=key)
        generation = await syncer.sync()
    finally:
        await lister.aclose()
        await store.aclose()
    client = await service(
        aiohttp_client,
        jamf_url,
        store={"path": str(tmp_path / "store.sqlite3")},
        server={"provider_retry_interval": 0.1},  # the first start may beat the store's connect
        **sync,
    )
    deadline = time.monotonic() + 10
    while True:
        _, samples = await scrape(client)
        if value(samples, "posture_connector_provider_ready", provider="jamf") == 1:
            break
        assert time.monotonic() < deadline, "the synced provider never turned ready"
        await asyncio.sleep(0.05)
    assert (
        value(samples, "posture_connector_provider_devices", provider="jamf") == generation.devices
    )
    assert generation.devices > 0
    synced = value(
        samples, "posture_connector_provider_last_load_timestamp_seconds", provider="jamf"
    )
    assert synced == generation.completed_at
    assert (
        value(samples, "posture_connector_provider_sync_generation", provider="jamf")
        == generation.id
    )
    assert (
        value(samples, "posture_connector_provider_info", provider="jamf", kind="jamf", mode="sync")
        == 1
    )
