"""Intune's listing for sync mode against the fake Graph: the records a lookup would give, users
and groups resolved in bulk (counted at the fake), throttled batches, nextLink cursors that
resume, and the sync engine through it into both store backends."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from connector.store import Store, SyncState
from connector.sync import Syncer
from providers._listing import iterate
from providers.base import CursorRejected, DeviceRecord, ProviderError
from providers.identifiers import IdentifierKind, classify
from providers.intune import IntuneProvider, IntuneSettings
from providers.sync_options import SyncOptions
from tests.fakes.graph import FakeGraph, Fault, create_app
from tests.test_intune import CLIENT_ID, CLIENT_SECRET, TENANT, intune_table

DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
CODEC: TypeAdapter[DeviceRecord] = TypeAdapter(DeviceRecord)
SYNC = SyncOptions(mode="sync", sync_interval=60, max_staleness=600)
MEMBER_OF = "transitiveMemberOf"


def generated() -> FakeGraph:
    """120 devices of 50 users in 7 groups, 40 to a page."""
    fake = FakeGraph.generated(120, users=50, groups=7, tenant_id=TENANT)
    fake.clients = {CLIENT_ID: CLIENT_SECRET}
    fake.page_size = 40
    return fake


@pytest.fixture
def fake() -> FakeGraph:
    """The tenant of ``graph_devices.json``."""
    return FakeGraph.from_file(DEVICES)


class Graphs:
    """Fake Graphs served on 127.0.0.1 and providers against them."""

    def __init__(self, aiohttp_server: Any) -> None:
        self._serve = aiohttp_server
        self._urls: dict[int, str] = {}
        self.made: list[IntuneProvider] = []

    async def url(self, fake: FakeGraph) -> str:
        """Where `fake` answers (served on first use)."""
        if id(fake) not in self._urls:
            server = await self._serve(create_app(fake))
            self._urls[id(fake)] = str(server.make_url("")).rstrip("/")
        return self._urls[id(fake)]

    async def provider(self, fake: FakeGraph, **overrides: Any) -> IntuneProvider:
        """An Intune provider for `fake` with fast retries."""
        url = await self.url(fake)
        settings = IntuneSettings.model_validate(intune_table(url, **overrides))
        provider = IntuneProvider("intune", settings)
        self.made.append(provider)
        return provider


@pytest.fixture
async def graphs(aiohttp_server: Any) -> AsyncIterator[Graphs]:
    """Fakes and providers for one test; providers closed after it."""
    made = Graphs(aiohttp_server)
    yield made
    for provider in made.made:
        await provider.aclose()


async def list_all(provider: IntuneProvider, cursor: str | None = None) -> list[DeviceRecord]:
    """Every record from `cursor` on, following the cursors."""
    return [record async for record in iterate(provider.list_page, cursor, provider=provider.name)]


def syncer(store: Store, provider: IntuneProvider) -> Syncer:
    return Syncer("intune", provider, SYNC, store, replica="a", encode=CODEC.dump_json)


async def test_listed_records_are_what_a_lookup_answers(graphs: Graphs, fake: FakeGraph) -> None:
    """User, department, user and device groups and UDID: the listing matches the lookup."""
    options = {"device_groups": True, "fetch_udid": True}
    records = await list_all(await graphs.provider(fake, **options))
    assert len(records) == len(fake.managed_devices)
    looked_up = await graphs.provider(fake, **options)
    by_id = {r.record_id: r for r in records}
    for record in records:
        assert record.serial is not None
        answer = await looked_up.lookup(classify(record.serial))
        assert answer is not None
        assert answer == by_id[answer.record_id]
    iphone = next(r for r in records if r.serial == "F17ZK8XJN72Q")
    assert iphone.udid == "00008110-000A1C2E3F40801E"
    assert iphone.user is not None
    assert iphone.user.department == "Platform Engineering"
    assert {"MDA-Pilot-Users", "Corporate iPhones"} <= {g.name for g in iphone.groups}


async def test_users_and_groups_are_resolved_in_bulk(graphs: Graphs) -> None:
    """Users come from a listing and each user's groups from one batched request, 20 a batch:
    never one request per device."""
    fake = generated()
    records = await list_all(await graphs.provider(fake))
    assert len(records) == 120
    assert all(r.user is not None and r.user.department for r in records)
    assert all(len(r.groups) == 2 for r in records)
    assert len(fake.http_requests("/deviceManagement/managedDevices")) == 3
    assert len(fake.http_requests("/users")) == math.ceil(50 / 40)  # the user list, not GETs
    assert len(fake.batched(MEMBER_OF)) == 50  # each user once, though owning 2-3 devices
    assert fake.http_requests(MEMBER_OF) == []
    # pages bring 40, 10 and 0 users not yet seen: 2 + 1 + 0 batches
    assert len(fake.http_requests("/$batch")) == 3


async def test_device_groups_and_udids_are_batched_too(graphs: Graphs) -> None:
    """Entra devices are listed once; their groups and the UDIDs go 20 to a batch."""
    fake = generated()
    records = await list_all(
        await graphs.provider(fake, device_groups=True, fetch_udid=True, user_groups=False)
    )
    assert all(r.udid and len(r.groups) == 1 for r in records)
    assert len(fake.http_requests("/devices")) == math.ceil(120 / 40)
    assert len(fake.batched("/devices/")) == 120
    assert len(fake.batched("/managedDevices/")) == 120
    assert len(fake.http_requests("/$batch")) == 2 * 120 // 20


async def test_throttled_batch_requests_wait_for_retry_after(graphs: Graphs) -> None:
    """A 429 inside a batch is sent again only after its Retry-After, and then succeeds."""
    fake = generated()
    fake.faults.append(Fault(429, retry_after="1", path=MEMBER_OF))
    with capture_logs() as logs:
        records = await list_all(await graphs.provider(fake))
    assert all(len(r.groups) == 2 for r in records)
    throttled = [r for r in fake.batched(MEMBER_OF) if r.status == 429]
    assert len(throttled) == 1
    again = [r for r in fake.batched(throttled[0].path) if r.status == 200]
    assert len(again) == 1
    assert again[0].at - throttled[0].at >= 1.0
    assert [e["wait"] for e in logs if e["event"] == "provider.batch_throttled"] == [1.0]


async def test_endless_throttling_fails_the_page(graphs: Graphs) -> None:
    """A batch request throttled past the retries fails the page rather than drop its groups."""
    fake = generated()
    fake.faults.extend(Fault(429, path=MEMBER_OF) for _ in range(200))
    provider = await graphs.provider(fake, retries=2)
    with pytest.raises(ProviderError, match="throttled"):
        await provider.list_page(None)


async def test_resumes_from_the_saved_next_link(graphs: Graphs) -> None:
    """After a failed second page a fresh process resumes at that page's link: the first page
    is not read again, the users are read once more."""
    fake = generated()
    first = await (await graphs.provider(fake)).list_page(None)
    assert first.next_cursor is not None
    assert "$skiptoken=" in first.next_cursor
    fake.faults.extend(Fault(503, path="managedDevices") for _ in range(3))
    with pytest.raises(ProviderError):
        await (await graphs.provider(fake, retries=2)).list_page(first.next_cursor)
    fake.requests.clear()
    rest = await list_all(await graphs.provider(fake), first.next_cursor)
    assert len(first.records) + len(rest) == 120
    pages = fake.http_requests("/deviceManagement/managedDevices")
    assert len(pages) == 2
    assert all("$skiptoken" in r.query for r in pages)
    assert len(fake.http_requests("/users")) == 2


@pytest.mark.parametrize(
    "cursor",
    [
        "https://evil.example/v1.0/deviceManagement/managedDevices?$skiptoken=MQ==",
        "{url}/v1.0/users?$skiptoken=MQ==",
        "not a link",
    ],
    ids=["another-host", "another-collection", "not-a-link"],
)
async def test_cursor_off_the_graph_device_collection_is_rejected_unsent(
    graphs: Graphs, cursor: str
) -> None:
    """A saved cursor pointing anywhere but Graph's device list never gets the token."""
    fake = generated()
    provider = await graphs.provider(fake)
    url = await graphs.url(fake)
    with pytest.raises(CursorRejected):
        await provider.list_page(cursor.format(url=url))
    assert fake.graph_requests() == []


async def test_next_link_to_another_host_is_refused(graphs: Graphs) -> None:
    """A nextLink Graph sends elsewhere fails the listing instead of becoming the cursor."""
    fake = generated()
    fake.next_link_origin = "https://evil.example"
    with pytest.raises(ProviderError, match="another host"):
        await (await graphs.provider(fake)).list_page(None)


async def test_sync_commits_intune_into_the_store_and_resumes(store: Store, graphs: Graphs) -> None:
    """The engine lists Intune into a generation; after a failure on page three it resumes
    there, and the synced record carries its user."""
    fake = generated()
    fake.faults.extend(Fault(503, path="managedDevices", skip=2 if i == 0 else 0) for i in range(3))
    with pytest.raises(ProviderError):
        await syncer(store, await graphs.provider(fake, retries=2)).sync()
    state = await store.load_sync_state("intune")
    assert state.cursor is not None
    assert "$skiptoken=" in state.cursor
    assert await store.current_generation("intune") is None
    fake.requests.clear()
    done = await syncer(store, await graphs.provider(fake)).sync()
    assert done.devices == 120
    assert len(fake.http_requests("/deviceManagement/managedDevices")) == 1
    found = await store.find_device("intune", "serial:F20000000007")
    assert found is not None
    record = CODEC.validate_json(found.payload)
    assert record.user is not None
    assert record.user.username == "user7@example.com"


async def test_expired_next_link_restarts_the_sync(store: Store, graphs: Graphs) -> None:
    """A saved link Graph no longer takes (400) drops the partial generation and lists anew."""
    fake = generated()
    provider = await graphs.provider(fake)
    url = await graphs.url(fake)
    stale = await store.begin_generation("intune")
    expired = f"{url}/v1.0/deviceManagement/managedDevices?$skiptoken=expired!"
    await store.save_sync_state(SyncState("intune", building=stale, cursor=expired))
    with capture_logs() as logs:
        done = await syncer(store, provider).sync()
    assert done.id != stale
    assert done.devices == 120
    assert "sync.restarted" in [e["event"] for e in logs]


async def test_a_device_two_entra_objects_claim_is_left_out_of_the_copy(graphs: Graphs) -> None:
    """Two Entra objects with one deviceId (a stale registration, here in a "Blocked" group):
    a lookup refuses the device, since whose groups count cannot be told; the listing took
    whichever object came last. It now leaves the device out of the copy (denied, not allowed
    without the other object's groups) and says so."""
    fake = FakeGraph.generated(2, users=1, groups=2, tenant_id=TENANT)
    fake.clients = {CLIENT_ID: CLIENT_SECRET}
    device = fake.managed_devices[0]
    blocked, stale = "00000000-0000-4000-a000-0000000000ff", "00000000-0000-4000-e000-0000000000ff"
    fake.groups.append({"id": blocked, "displayName": "Blocked"})
    fake.entra_devices.insert(0, {"id": stale, "deviceId": device["azureADDeviceId"]})
    fake.memberships[stale] = [blocked]
    identifier = classify(device["serialNumber"], frozenset({IdentifierKind.SERIAL}))
    with pytest.raises(ProviderError, match="more than one device"):
        await (await graphs.provider(fake, device_groups=True)).lookup(identifier)
    with capture_logs() as logs:
        records = await list_all(await graphs.provider(fake, device_groups=True))
    assert device["id"] not in [r.record_id for r in records]
    assert len(records) == 1
    assert [e["event"] for e in logs if e["event"] == "provider.entra_device_ambiguous"] == [
        "provider.entra_device_ambiguous"
    ]
