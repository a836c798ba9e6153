"""Jamf's listing for sync mode against the fake Jamf: pages by id, departments once per sync,
resuming after a failure, rate limits, and the sync engine through it into both store backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from connector.store import Store, SyncState
from connector.sync import PagedLister, Syncer
from providers._listing import ListedPage, iterate
from providers.base import CursorRejected, DeviceRecord, ProviderError
from providers.jamf import JamfProvider, JamfSettings
from providers.observe import NO_HOOKS
from providers.sync_options import SyncOptions
from tests.fakes.jamf import FakeJamf, create_app
from tests.fakes.provider_hooks import RecordingHook
from tests.sqlite_support import StatementGate, gated_store

CODEC: TypeAdapter[DeviceRecord] = TypeAdapter(DeviceRecord)
SYNC = SyncOptions(mode="sync", sync_interval=60, max_staleness=600)
COMPUTERS = "/api/v1/computers-inventory"
MOBILES = "/api/v2/mobile-devices/detail"

MakeProvider = Callable[..., Awaitable[JamfProvider]]


@pytest.fixture
def fake() -> FakeJamf:
    """23 Macs and 7 iPhones across 4 departments."""
    return FakeJamf.generated(23, 7, departments=4)


@pytest.fixture
async def make_provider(aiohttp_server: Any, fake: FakeJamf) -> AsyncIterator[MakeProvider]:
    """Providers listing the fake 10 devices a page (v1, so no version probe); closed after."""
    server = await aiohttp_server(create_app(fake))
    url = str(server.make_url("")).rstrip("/")
    made: list[JamfProvider] = []

    async def make(hooks: RecordingHook | None = None, **overrides: Any) -> JamfProvider:
        settings = JamfSettings.model_validate(
            {
                "kind": "jamf",
                "url": url,
                "client_id": "posture-connector",
                "client_secret": "fake-secret",
                "backoff": 0.01,
                "computers_api_version": "v1",
                "list_page_size": 10,
                **overrides,
            }
        )
        provider = JamfProvider("jamf", settings, hooks=hooks or NO_HOOKS)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def list_all(provider: JamfProvider, cursor: str | None = None) -> list[DeviceRecord]:
    """Every record from `cursor` on, following the cursors."""
    return [record async for record in iterate(provider.list_page, cursor, provider=provider.name)]


def pages(fake: FakeJamf, path: str) -> list[str]:
    """The page numbers requested from `path`, in order."""
    return [dict(r.query)["page"] for r in fake.requests if r.path == path]


def syncer(store: Store, provider: JamfProvider) -> Syncer:
    return Syncer("jamf", provider, SYNC, store, replica="a", encode=CODEC.dump_json)


async def test_listing_pages_by_id_and_reads_departments_once(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Every device arrives, pages sorted by id, and departments cost one request per sync."""
    provider = await make_provider()
    assert isinstance(provider, PagedLister)
    records = await list_all(provider)
    assert sorted(r.serial or "" for r in records) == sorted(
        [c["hardware"]["serialNumber"] for c in fake.computers]
        + [d["hardware"]["serialNumber"] for d in fake.mobile_devices]
    )
    macs = {r.serial: r for r in records if r.platform == "macOS"}
    assert macs["C00000000005"].user is not None
    assert macs["C00000000005"].user.department == "Department 2"
    assert pages(fake, COMPUTERS) == ["0", "1", "2"]
    assert pages(fake, MOBILES) == ["0"]
    assert {dict(r.query)["sort"] for r in fake.requests if "sort" in dict(r.query)} == {
        "id:asc",
        "mobileDeviceId:asc",
    }
    assert fake.count("/api/v1/departments") == 1  # the list, never /departments/{id}


async def test_each_sync_reads_the_departments_again(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A renamed department shows in the next sync: the list is read per sync, not kept."""
    provider = await make_provider(device_classes="computers")
    await list_all(provider)
    fake.departments["2"] = "Renamed"
    records = await list_all(provider)
    assert fake.count("/api/v1/departments") == 2
    renamed = next(r for r in records if r.serial == "C00000000005")
    assert renamed.user is not None
    assert renamed.user.department == "Renamed"


async def test_department_created_during_a_sync_is_asked_for_once_by_id(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Devices naming a department the list did not have cost one request for it, not one each."""
    provider = await make_provider(device_classes="computers")
    first = await provider.list_page(None)
    fake.departments["99"] = "New Team"
    for computer in fake.computers[10:]:
        computer["userAndLocation"]["departmentId"] = "99"
    rest = await list_all(provider, first.next_cursor)
    assert {r.user.department for r in rest if r.user} == {"New Team"}
    assert fake.count("/api/v1/departments/") == 1


async def test_listing_needs_no_started_provider_and_one_connection(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A sync-only provider lists without start(), one request at a time (Jamf asks for <= 5)."""
    fake.inject("slow", path="/api/", times=None, delay=0.01)
    provider = await make_provider()
    assert len(await list_all(provider)) == 30
    assert fake.max_in_flight == 1


async def test_deleted_device_during_listing_is_not_missed(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A deletion shifts later devices back a place; the one crossing into a read page is kept."""
    provider = await make_provider(device_classes="computers")
    first = await provider.list_page(None)
    del fake.computers[3]  # on page 0, already read: device 11 moves onto page 0
    rest = await list_all(provider, first.next_cursor)
    listed = [r.serial for r in [*first.records, *rest]]
    still_there = [c["hardware"]["serialNumber"] for c in fake.computers]
    assert set(still_there) <= set(listed)
    assert len(listed) == len(set(listed))  # and nothing twice
    assert pages(fake, COMPUTERS) == ["0", "1", "0", "2"]  # page 0 read again once


async def test_unchanged_inventory_reads_each_page_once(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Without deletions no page is read twice."""
    provider = await make_provider(device_classes="computers")
    await list_all(provider)
    assert pages(fake, COMPUTERS) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("cursor", "classes"),
    [
        ("mobile:1", "computers"),
        ("printers:0", "both"),
        ("computers:x", "both"),
        ("computers:1:2", "both"),
    ],
    ids=["class-no-longer-listed", "unknown-class", "not-a-number", "wrong-shape"],
)
async def test_cursor_this_configuration_cannot_continue_is_rejected(
    make_provider: MakeProvider, fake: FakeJamf, cursor: str, classes: str
) -> None:
    """A saved cursor from another configuration, or garbage, asks for a fresh listing."""
    provider = await make_provider(device_classes=classes)
    with pytest.raises(CursorRejected):
        await provider.list_page(cursor)
    assert pages(fake, COMPUTERS) == []


async def test_rate_limit_is_waited_out_even_beyond_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A 429 with Retry-After longer than a lookup's budget is honoured: a sync is no decision."""
    hook = RecordingHook()
    provider = await make_provider(hooks=hook, budget=1.0, device_classes="computers")
    fake.inject("429", path=COMPUTERS, retry_after="2", when={"page": "1"})
    started = time.monotonic()
    assert len(await list_all(provider)) == 23
    assert time.monotonic() - started >= 2
    assert [(r.wait, r.rate_limited) for r in hook.retries] == [(2.0, True)]
    assert pages(fake, COMPUTERS) == ["0", "1", "1", "2"]


async def test_sync_resumes_at_the_failed_page(
    store: Store, make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A sync failing on page 2 keeps the last good generation; the next one (in a new process)
    continues at page 2, reads the departments once more and commits every device."""
    await syncer(store, await make_provider()).sync()
    good = await store.current_generation("jamf")
    assert good is not None
    fake.requests.clear()
    fake.inject("500", path=COMPUTERS, times=None, when={"page": "1"})
    with pytest.raises(ProviderError):
        await syncer(store, await make_provider()).sync()
    state = await store.load_sync_state("jamf")
    assert state.cursor == "computers:1:23:10"
    assert state.last_error is not None
    assert (await store.current_generation("jamf")) == good
    fake.clear_faults()
    fake.requests.clear()
    done = await syncer(store, await make_provider()).sync()
    assert done.id == state.building
    assert done.devices == 30
    assert pages(fake, COMPUTERS) == ["1", "2"]
    assert fake.count("/api/v1/departments") == 1
    found = await store.find_device("jamf", "serial:C00000000022")
    assert found is not None
    user = CODEC.validate_json(found.payload).user
    assert user is not None
    assert user.department == "Department 3"


async def test_sync_resumed_before_its_cursor_was_saved_counts_each_device_once(
    tmp_path: Path, make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A sync stopped after page 2 was stored but before its cursor was saved lists page 2 again
    when it resumes; the generation still counts each of the 30 devices once."""
    store, writer = await gated_store(tmp_path / "store.sqlite3")
    try:
        saving = StatementGate(lambda sql: "INTO sync_state" in sql and "'computers:2:" in sql)
        await writer.set_trace_callback(saving)
        stopped = asyncio.create_task(syncer(store, await make_provider()).sync())
        await saving.wait()
        stopped.cancel()  # the process dies while page 2's cursor is being saved
        saving.release()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        state = await store.load_sync_state("jamf")
        assert state.cursor == "computers:1:23:10"  # page 2's devices are stored, its cursor not
        fake.requests.clear()
        done = await syncer(store, await make_provider()).sync()
    finally:
        await store.aclose()
    assert pages(fake, COMPUTERS) == ["1", "2"]  # page 2 listed again
    assert done.id == state.building
    assert done.devices == 30


async def test_rejected_cursor_restarts_the_sync_from_scratch(
    store: Store, make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A building generation whose cursor the provider rejects is dropped and listed anew."""
    stale = await store.begin_generation("jamf")
    await store.save_sync_state(SyncState("jamf", building=stale, cursor="mobile:3:40:30"))
    provider = await make_provider(device_classes="computers")
    with capture_logs() as logs:
        done = await syncer(store, provider).sync()
    assert done.id != stale
    assert done.devices == 23
    assert [e["event"] for e in logs if e["event"] == "sync.restarted"] == ["sync.restarted"]
    assert pages(fake, COMPUTERS) == ["0", "1", "2"]


async def test_listed_page_has_the_engine_page_shape(make_provider: MakeProvider) -> None:
    """Providers answer their own `ListedPage`, read by the engine through two attributes."""
    page = await (await make_provider()).list_page(None)
    assert isinstance(page, ListedPage)
    assert page.next_cursor == "computers:1:23:10"
    assert len(page.records) == 10
