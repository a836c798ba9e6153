"""``mode = "sync"`` through the whole app: the syncer lists the fake upstream into the store,
signed webhook decisions read only the store (the fake sees no request), and a failed sync keeps
the last good generation and says so on /readyz and in the log."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from connector.persistence import PERSISTENCE
from connector.store import AuditQuery
from tests.fakes.graph import FakeGraph
from tests.fakes.graph import create_app as graph_app
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.provider_webhook import GATE, call, provider_config, start_service
from tests.test_intune import intune_table

JAMF_DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
GRAPH_DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
PILOT = {"managed": True, "groups": {"any_of": ["MDA Pilot"]}}
SYNC_KEYS = {"mode": "sync", "sync_interval": 60, "max_staleness": 600}


async def synced_service(
    aiohttp_client: Any,
    name: str,
    table: dict[str, Any],
    policy: dict[str, Any] = PILOT,
    *,
    store: Path | None = None,
) -> TestClient[Any, Any]:
    """The app with `name` in sync mode (its store in the SQLite file `store`, if given), once
    its first sync made it ready and the syncer's report (on /readyz) names the generation (the
    provider may turn ready a moment before)."""
    mapping = provider_config(name, {**table, **SYNC_KEYS}, policy)
    mapping["server"]["provider_retry_interval"] = 0.1
    if store is not None:
        mapping["store"] = {"path": str(store)}
    client = await start_service(aiohttp_client, mapping)
    async with asyncio.timeout(20):
        while True:
            status, body = await readyz(client)
            if status == 200 and body["sync"][name]["generation"] is not None:
                return client
            await asyncio.sleep(0.05)


async def readyz(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


@pytest.fixture
def fake() -> FakeJamf:
    """The fake Jamf's sample inventory."""
    return FakeJamf.from_file(JAMF_DEVICES)


@pytest.fixture
async def jamf_service(
    aiohttp_client: Any, aiohttp_server: Any, fake: FakeJamf
) -> TestClient[Any, Any]:
    """The app with Jamf (pointed at the fake) in sync mode, after its first sync."""
    url = str((await aiohttp_server(jamf_app(fake))).make_url("")).rstrip("/")
    return await synced_service(aiohttp_client, "jamf", jamf_table(url))


def jamf_table(url: str) -> dict[str, Any]:
    """The ``[providers.jamf]`` table for the fake Jamf at `url` (sync keys added later)."""
    return {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
    }


async def test_synced_jamf_decides_from_the_store_alone(
    jamf_service: TestClient[Any, Any], fake: FakeJamf
) -> None:
    """Decisions in sync mode make zero upstream requests, and /readyz names the generation."""
    client = jamf_service
    before = len(fake.requests)
    assert (await call(client, "C02FK3Q7MD6T"))["allow"] is True
    assert (await call(client, "F17ZK8XJN72Q", path=GATE))["allow"] is True
    unmanaged = await call(client, "C02XL0UNMGD1")
    assert (unmanaged["allow"], unmanaged["error"]["code"]) == (False, "device-unmanaged")
    unknown = await call(client, "C02NOSUCHDEV")
    assert (unknown["allow"], unknown["error"]["code"]) == (False, "device-not-found")
    assert fake.requests[before:] == []
    status, body = await readyz(client)
    assert status == 200
    state = body["sync"]["jamf"]
    assert state["mode"] == "sync"
    assert state["generation"] is not None
    assert state["devices"] == 8
    assert state["last_success"] is not None
    assert state["last_error"] is None
    persistence = client.app[PERSISTENCE]
    await persistence.audit.aclose()  # flush
    entries = await persistence.store.query_decisions(AuditQuery())
    assert {e.source for e in entries if e.provider} == {"store"}


async def test_failed_sync_keeps_the_last_generation_and_says_so(
    jamf_service: TestClient[Any, Any], fake: FakeJamf
) -> None:
    """A sync that fails keeps answering from the last good generation; /readyz shows the error
    and the log has sync.failed."""
    client = jamf_service
    _, body = await readyz(client)
    good = body["sync"]["jamf"]["generation"]
    persistence = client.app[PERSISTENCE]
    syncer = persistence.syncers[0]
    state = await persistence.store.load_sync_state(syncer.key)
    await persistence.store.save_sync_state(replace(state, last_success=0.0))  # due now
    fake.inject("503", path="/api/", times=None)
    with capture_logs() as logs:
        assert await syncer.attempt() is False
    assert [e["provider"] for e in logs if e["event"] == "sync.failed"] == ["jamf"]
    status, body = await readyz(client)
    assert status == 200
    assert body["sync"]["jamf"]["generation"] == good
    assert "503" in body["sync"]["jamf"]["last_error"]
    assert (await call(client, "C02FK3Q7MD6T"))["allow"] is True


async def test_a_copy_listed_under_other_settings_never_answers(
    aiohttp_client: Any, aiohttp_server: Any, fake: FakeJamf, tmp_path: Path
) -> None:
    """A restart with settings that list another inventory (fewer device classes, another
    tenant) decides from a copy listed under them, not from the one the store already holds:
    that one would still allow an iPhone, or a Mac of the old tenant, until its next sync."""
    store = tmp_path / "store.sqlite3"
    table = jamf_table(str((await aiohttp_server(jamf_app(fake))).make_url("")).rstrip("/"))
    first = await synced_service(aiohttp_client, "jamf", table, store=store)
    assert (await call(first, "F17ZK8XJN72Q", path=GATE))["allow"] is True  # an iPhone
    assert (await call(first, "C02FK3Q7MD6T"))["allow"] is True  # a Mac
    await first.close()
    narrowed = {**table, "device_classes": "computers"}
    second = await synced_service(aiohttp_client, "jamf", narrowed, store=store)
    iphone = await call(second, "F17ZK8XJN72Q", path=GATE)
    assert (iphone["allow"], iphone["error"]["code"]) == (False, "device-not-found")
    await second.close()
    tenant = FakeJamf.from_file(JAMF_DEVICES)
    tenant.computers = [c for c in tenant.computers if "C02FK3Q7MD6T" not in str(c)]
    other = str((await aiohttp_server(jamf_app(tenant))).make_url("")).rstrip("/")
    third = await synced_service(aiohttp_client, "jamf", {**table, "url": other}, store=store)
    mac = await call(third, "C02FK3Q7MD6T")
    assert (mac["allow"], mac["error"]["code"]) == (False, "device-not-found")


async def test_synced_intune_decides_from_the_store_alone(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Intune in sync mode: listed with users and groups, then decided without Graph."""
    fake = FakeGraph.from_file(GRAPH_DEVICES)
    url = str((await aiohttp_server(graph_app(fake))).make_url("")).rstrip("/")
    policy_groups = {"managed": True, "groups": {"any_of": ["MDA-Pilot-Users"]}}
    client = await synced_service(aiohttp_client, "intune", intune_table(url), policy_groups)
    before = len(fake.requests)
    answer = await call(client, "F17ZK8XJN72Q")
    assert answer["allow"] is True
    assert "MDA-Pilot-Users" in answer["data"]["groups"]
    assert (await call(client, "C02NOSUCHDEV"))["error"]["code"] == "device-not-found"
    assert fake.requests[before:] == []
