"""Sync mode on both backends: generations swap whole, one leader syncs, stale copies fail closed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from connector.store import Store, StoreError, SyncState
from connector.sync import LeaseLost, Page, SyncedProvider, Syncer, copy_name
from connector.sync._engine import MAX_RESUMES
from providers.base import DeviceRecord, ProviderError, ProviderNotReady
from providers.identifiers import classify
from providers.memory import MemoryProvider
from providers.mosyle import MosyleSettings
from providers.sync_options import SyncOptions

_CODEC: TypeAdapter[DeviceRecord] = TypeAdapter(DeviceRecord)
SYNC = SyncOptions(mode="sync", sync_interval=60, max_staleness=600)


def encode(record: DeviceRecord) -> bytes:
    return _CODEC.dump_json(record)


def decode(data: bytes) -> DeviceRecord:
    return _CODEC.validate_json(data)


def device(serial: str, *, managed: bool = True, contact: int = 1) -> DeviceRecord:
    return DeviceRecord(
        provider="jamf",
        serial=serial,
        managed=managed,
        last_contact=datetime.fromtimestamp(1_700_000_000 + contact, UTC),
    )


class ListedInventory:
    """An upstream inventory listed whole or page by page, with a failure after N pages."""

    def __init__(self, records: Sequence[DeviceRecord], *, page_size: int = 2) -> None:
        self.records = list(records)
        self.page_size = page_size
        self.fail_after_pages: int | None = None
        self.pages_served = 0
        self.served = asyncio.Event()  # set whenever a page was served
        self.gate: asyncio.Event | None = None
        self.loop_at: str | None = None  # a page whose next cursor points back to the first

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        for start in range(0, len(self.records), self.page_size):
            page = await self.list_page(str(start) if start else None)
            for record in page.records:
                yield record

    async def list_page(self, cursor: str | None) -> Page:
        if self.fail_after_pages is not None and self.pages_served >= self.fail_after_pages:
            raise ProviderError("jamf", "upstream answered 503")
        if self.gate is not None and self.pages_served:
            await self.gate.wait()
        start = int(cursor or 0)
        self.pages_served += 1
        self.served.set()
        end = start + self.page_size
        if cursor is not None and cursor == self.loop_at:
            return Page(self.records[start:end], str(self.page_size))
        return Page(self.records[start:end], str(end) if end < len(self.records) else None)


class WholeListing:
    """A provider that can only list everything at once (no resume)."""

    def __init__(self, inventory: ListedInventory) -> None:
        self._inventory = inventory

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        return self._inventory.iter_devices()


async def backdate(store: Store, seconds: float) -> None:
    """Make every generation `seconds` older by the database's clock, which judges a copy's
    age (a replica's own clock may be off)."""
    async with store._driver.transaction() as tx:
        await tx.execute(
            "UPDATE generations SET started_at = started_at - ?, completed_at = completed_at - ?",
            seconds,
            seconds,
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def syncer(store: Store, lister: object, replica: str = "a", **kwargs: object) -> Syncer:
    return Syncer("jamf", lister, SYNC, store, replica=replica, encode=encode, **kwargs)  # type: ignore[arg-type]


async def keys(store: Store, *serials: str) -> dict[str, bool | None]:
    """Each serial's synced `managed` flag (None when absent)."""
    out: dict[str, bool | None] = {}
    for serial in serials:
        found = await store.find_device("jamf", f"serial:{serial}")
        out[serial] = None if found is None else decode(found.payload).managed
    return out


async def test_sync_replaces_the_whole_inventory(store: Store) -> None:
    """A device absent from the latest complete listing is absent; changes show at once."""
    inventory = ListedInventory([device("C02A"), device("C02B"), device("C02C")])
    first = await syncer(store, inventory).sync()
    assert first.devices == 3
    inventory.records = [device("C02A", managed=False), device("C02C")]
    second = await syncer(store, inventory).sync()
    assert second.id != first.id
    assert await keys(store, "C02A", "C02B", "C02C") == {"C02A": False, "C02B": None, "C02C": True}


async def test_failed_sync_keeps_the_last_good_generation(store: Store) -> None:
    """A listing that breaks halfway never replaces good data, and the state says why."""
    inventory = ListedInventory([device("C02A"), device("C02B"), device("C02C")])
    good = await syncer(store, inventory).sync()
    inventory.records = [device("C02X"), device("C02Y"), device("C02Z")]
    inventory.fail_after_pages = inventory.pages_served + 1
    with pytest.raises(ProviderError):
        await syncer(store, WholeListing(inventory)).sync()
    current = await store.current_generation("jamf")
    assert current is not None
    assert current.id == good.id
    assert await keys(store, "C02A", "C02X") == {"C02A": True, "C02X": None}
    state = await store.load_sync_state("jamf")
    assert state.last_error == "upstream answered 503"


async def test_only_the_lease_holder_syncs(store: Store) -> None:
    """Two replicas: the one holding the lease syncs, the other leaves it alone."""
    inventory = ListedInventory([device("C02A")])
    assert await syncer(store, inventory, "a").sync_if_due() is not None
    served = inventory.pages_served
    assert await syncer(store, inventory, "b").sync_if_due() is None
    assert inventory.pages_served == served


async def test_sync_is_not_due_before_the_interval(store: Store) -> None:
    """The leader lists again only once sync_interval has passed."""
    clock = Clock()
    inventory = ListedInventory([device("C02A")])
    leader = syncer(store, inventory, clock=clock)
    assert await leader.sync_if_due() is not None
    clock.now += 30
    assert await leader.sync_if_due() is None
    clock.now += 31
    assert await leader.sync_if_due() is not None


async def test_new_leader_resumes_a_dead_leaders_paged_sync(store: Store) -> None:
    """A leader killed mid-sync: the next one continues from the saved cursor, and only the
    complete generation ever becomes current."""
    inventory = ListedInventory([device(f"C02D{i}") for i in range(6)])
    inventory.gate = asyncio.Event()
    dead = asyncio.create_task(syncer(store, inventory, "a", lease_ttl=0.3).sync())
    await inventory.served.wait()
    await asyncio.sleep(0.05)
    dead.cancel()  # the process died while waiting for page two
    with pytest.raises(asyncio.CancelledError):
        await dead
    assert await store.current_generation("jamf") is None
    state = await store.load_sync_state("jamf")
    assert state.building is not None
    assert state.cursor == "2"
    inventory.gate.set()
    heir = syncer(store, inventory, "b", lease_ttl=5)
    assert await heir.sync_if_due() is None  # the dead leader's lease has not lapsed yet
    await asyncio.sleep(0.35)
    done = await heir.sync_if_due()
    assert done is not None
    assert done.id == state.building
    assert done.devices == 6
    assert inventory.pages_served == 3  # page one once (by the dead leader), then two and three


async def test_unresumable_partial_generation_is_thrown_away(store: Store) -> None:
    """Without a cursor the partial rows of a dead leader are discarded, never reused."""
    inventory = ListedInventory([device("C02GONE"), device("C02KEEP")], page_size=1)
    inventory.fail_after_pages = 1
    with pytest.raises(ProviderError):
        await syncer(store, WholeListing(inventory)).sync()
    inventory.records = [device("C02KEEP")]
    inventory.fail_after_pages = None
    await syncer(store, WholeListing(inventory)).sync()
    assert await keys(store, "C02GONE", "C02KEEP") == {"C02GONE": None, "C02KEEP": True}


async def test_a_leader_that_lost_its_lease_does_not_commit(store: Store) -> None:
    """If another replica took the lease during a slow sync, the old leader's work is dropped."""
    inventory = ListedInventory([device(f"C02L{i}") for i in range(4)])
    inventory.gate = asyncio.Event()
    slow = asyncio.create_task(syncer(store, inventory, "a", lease_ttl=0.2).sync())
    await inventory.served.wait()
    async with store._driver.transaction() as tx:  # it lapsed (say, the store was away): b took it
        await tx.execute("UPDATE leases SET holder = 'b' WHERE name = 'sync:jamf'")
    await asyncio.sleep(0.2)  # a renewal (every third of the ttl) finds it gone
    inventory.gate.set()
    with pytest.raises(LeaseLost):
        await slow
    assert await store.current_generation("jamf") is None


async def test_a_slow_listing_of_few_devices_keeps_its_lease(store: Store) -> None:
    """A whole listing that outlasts the lease ttl (far fewer devices than a batch) renews the
    lease as it goes: no other replica can take the sync over, and it commits."""

    class SlowListing:
        async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
            for i in range(8):
                await asyncio.sleep(0.1)
                yield device(f"C02S{i}")

    leader = asyncio.create_task(syncer(store, SlowListing(), "a", lease_ttl=0.3).sync_if_due())
    taken = False
    while not leader.done():
        await asyncio.sleep(0.05)
        taken = taken or await store.acquire_lease("sync:jamf", "b", 30)
    assert not taken
    done = await leader
    assert done is not None
    assert done.devices == 8


async def test_a_page_slower_than_the_lease_keeps_it(store: Store) -> None:
    """The lease was renewed only between pages: a page slower than its ttl (Intune's first
    reads every user of a tenant) let another replica take the sync over, each restarting the
    other's listing. The leader now renews it while it waits, and commits."""

    class SlowPages(ListedInventory):
        async def list_page(self, cursor: str | None) -> Page:
            await asyncio.sleep(0.5)  # over the 0.3 s ttl below
            return await super().list_page(cursor)

    inventory = SlowPages([device("C02S1"), device("C02S2"), device("C02S3")])
    leader = asyncio.create_task(syncer(store, inventory, "a", lease_ttl=0.3).sync_if_due())
    taken = False
    with capture_logs() as logs:
        while not leader.done():
            await asyncio.sleep(0.05)
            taken = taken or await store.acquire_lease("sync:jamf", "b", 30)
        done = await leader
    assert not taken
    assert done is not None
    assert done.devices == 3
    assert "sync.lease_lost" not in {line["event"] for line in logs}


async def test_a_page_that_never_comes_ends_the_sync_at_max_staleness(store: Store) -> None:
    """The leader renewed its lease for as long as a page hung: no other replica could sync,
    and the copy went stale. The listing now fails once its copy would be too old."""
    inventory = ListedInventory([device("C02H1"), device("C02H2"), device("C02H3")])
    inventory.gate = asyncio.Event()  # never set: the second page never comes
    options = SyncOptions.model_construct(mode="sync", sync_interval=0.5, max_staleness=1.0)
    leader = Syncer("jamf", inventory, options, store, replica="a", encode=encode, lease_ttl=0.3)
    with pytest.raises(ProviderError, match="max_staleness"):
        await asyncio.wait_for(leader.sync(), 10)
    await asyncio.sleep(0.4)  # nobody renews it any more
    assert await store.acquire_lease("sync:jamf", "b", 30)


async def test_a_shutdown_as_a_sync_ends_is_not_lost(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation arriving while the sync put its lease keeper away was taken for the
    keeper's own and swallowed: the sync loop went on, and shutdown waited for it forever."""
    leader = syncer(store, ListedInventory([device("C02CANCEL1")]))
    commit = store.commit_generation
    runner: asyncio.Task[None] | None = None

    async def commit_then_shut_down(provider: str, generation: int) -> Any:
        done = await commit(provider, generation)
        assert runner is not None
        runner.cancel()  # the service's shutdown, just as the commit returns
        return done

    monkeypatch.setattr(store, "commit_generation", commit_then_shut_down)
    runner = asyncio.create_task(leader.run())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 5)


async def test_a_leader_whose_lease_lapsed_stops_though_nobody_took_it(store: Store) -> None:
    """Renewing took a lapsed lease back when nobody held it; another replica may have synced
    meanwhile, so the leader now stops at its next write instead."""
    inventory = ListedInventory([device(f"C02G{i}") for i in range(4)])
    inventory.gate = asyncio.Event()
    slow = asyncio.create_task(syncer(store, inventory, "a", lease_ttl=30).sync())
    await inventory.served.wait()
    async with store._driver.transaction() as tx:  # the store was away longer than the ttl
        await tx.execute("UPDATE leases SET expires_at = expires_at - 60")
    inventory.gate.set()
    with pytest.raises(LeaseLost):
        await slow
    assert await store.current_generation("jamf") is None


async def test_a_replica_that_lost_the_lease_leaves_the_sync_state_alone(store: Store) -> None:
    """A failing sync records where it stopped only while it still leads: the replica that
    took over keeps its own state."""

    class FailsOnPageTwo(ListedInventory):
        async def list_page(self, cursor: str | None) -> Page:
            if cursor is None:
                return await super().list_page(cursor)
            await gate.wait()
            raise ProviderError("jamf", "upstream answered 503")

    gate = asyncio.Event()
    inventory = FailsOnPageTwo([device(f"C02F{i}") for i in range(4)])
    slow = asyncio.create_task(syncer(store, inventory, "a", lease_ttl=30).sync())
    while (await store.load_sync_state("jamf")).cursor is None:  # noqa: ASYNC110 - page one stored
        await asyncio.sleep(0.01)
    async with store._driver.transaction() as tx:  # b took it over, and began its own sync
        await tx.execute("UPDATE leases SET holder = 'b'")
    await store.save_sync_state(SyncState("jamf", last_error="b's own"))
    gate.set()
    with pytest.raises(ProviderError):
        await slow
    assert (await store.load_sync_state("jamf")).last_error == "b's own"


async def test_a_lapsed_lease_is_not_taken_back_mid_sync(store: Store) -> None:
    """A leader whose lease ran out (the store away longer than its ttl) stops at its next
    write, even when nobody holds the lease now: another replica may have synced meanwhile."""
    assert await store.acquire_lease("sync:jamf", "a", 0.2)
    await asyncio.sleep(0.3)
    assert not await store.renew_lease("sync:jamf", "a", 30)  # lapsed: not renewed
    assert await store.acquire_lease("sync:jamf", "b", 30)
    assert not await store.renew_lease("sync:jamf", "a", 30)  # another's: not renewed
    assert await store.renew_lease("sync:jamf", "b", 30)


async def test_a_resumed_listing_stops_when_its_copy_would_be_too_old(store: Store) -> None:
    """A partial listing resumed just under max_staleness ran for max_staleness more, counted
    from the resume, and committed a copy already too old to answer (and the next sync was
    only due after sync_interval). Its time now counts from its first page."""
    inventory = ListedInventory([device("C02R1"), device("C02R2"), device("C02R3")], page_size=1)
    inventory.fail_after_pages = 1
    options = SyncOptions(mode="sync", sync_interval=10, max_staleness=30)
    leader = Syncer("jamf", inventory, options, store, replica="a", encode=encode)
    with pytest.raises(ProviderError, match="503"):
        await leader.sync()  # the first page is stored and its cursor saved
    state = await store.load_sync_state("jamf")
    async with store._driver.transaction() as tx:  # that page was listed 29.8 s ago
        await tx.execute(
            "UPDATE generations SET started_at = started_at - 29.8 WHERE id = ?", state.building
        )
    inventory.fail_after_pages = None
    inventory.gate = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, inventory.gate.set)  # the next page is slow
    with pytest.raises(ProviderError, match="max_staleness"):
        await leader.sync()
    assert await store.current_generation("jamf") is None


async def test_a_reader_whose_copy_was_dropped_is_not_ready(store: Store) -> None:
    """A replica on new settings with a shorter max_staleness dropped a copy the old settings'
    replicas still took for fresh: those went on ready, answering every device "not found"."""
    await Syncer(
        "jamf", ListedInventory([device("C02KEPT1")]), SYNC, store, replica="a",
        encode=encode, key="jamf@old",
    ).sync()  # fmt: skip
    await store.release_lease("sync:jamf@old", "a")  # its replicas are between syncs
    await backdate(store, 2400)  # listed 40 minutes ago
    patient = SyncOptions(mode="sync", sync_interval=900, max_staleness=7200)
    reader = SyncedProvider("jamf", patient, store, decode=decode, live=None, key="jamf@old")
    await reader.start()
    assert await reader.lookup(classify("C02KEPT1")) is not None
    dropped = await store.drop_stale_copies(
        "jamf", keep="jamf@new", max_age=1800, holder="n", lease_ttl=30
    )
    assert dropped == ["jamf@old"]
    with pytest.raises(ProviderNotReady, match="no complete sync"):
        await reader.lookup(classify("C02KEPT1"))
    assert not reader.ready


async def test_synced_provider_fails_closed_until_a_sync_and_when_stale(store: Store) -> None:
    """mode = "sync": not ready before the first sync and after max_staleness."""
    clock = Clock()
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None, clock=clock)
    with pytest.raises(ProviderNotReady, match="no complete sync yet"):
        await reader.start()
    assert not reader.ready
    with pytest.raises(ProviderNotReady):
        await reader.lookup(classify("C02AAAAA0001"))
    await syncer(store, ListedInventory([device("C02AAAAA0001")])).sync()
    generation = await store.current_generation("jamf")
    assert generation is not None
    clock.now = generation.completed_at + 1
    await reader.start()
    assert reader.ready
    assert not reader.cacheable
    found = await reader.lookup(classify("C02AAAAA0001"))
    assert found is not None
    assert found.serial == "C02AAAAA0001"
    assert await reader.lookup(classify("C02AAAAA0002")) is None
    clock.now += SYNC.max_staleness + 1
    assert not reader.ready  # between reads, by this replica's clock
    await backdate(store, SYNC.max_staleness + 1)
    with pytest.raises(ProviderNotReady, match="max_staleness"):
        await reader.lookup(classify("C02AAAAA0001"))


async def test_a_copy_is_as_old_as_the_database_says(store: Store) -> None:
    """Freshness was this replica's clock minus a time the database stamped: a replica whose
    clock ran an hour behind answered, and allowed, from a copy an hour past max_staleness."""
    await syncer(store, ListedInventory([device("C02AAAAA0001")])).sync()
    await backdate(store, SYNC.max_staleness + 60)
    behind = Clock()
    behind.now = time.time() - 3_600
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None, clock=behind)
    with pytest.raises(ProviderNotReady, match="max_staleness"):
        await reader.start()
    with pytest.raises(ProviderNotReady, match="max_staleness"):
        await reader.lookup(classify("C02AAAAA0001"))


async def test_sync_plus_live_asks_upstream_on_a_miss_and_when_stale(store: Store) -> None:
    """mode = "sync+live": the copy first; the upstream for a new device or a stale copy."""
    clock = Clock()
    await syncer(store, ListedInventory([device("C02SYNCED01")])).sync()
    generation = await store.current_generation("jamf")
    assert generation is not None
    clock.now = generation.completed_at
    live = MemoryProvider("jamf", [device("C02NEWDEV01"), device("C02SYNCED01", managed=False)])
    options = SyncOptions(mode="sync+live", sync_interval=60, max_staleness=600)
    reader = SyncedProvider("jamf", options, store, decode=decode, live=live, clock=clock)
    await reader.start()
    synced = await reader.lookup(classify("C02SYNCED01"))
    assert synced is not None
    assert synced.managed is True
    assert live.calls == []
    assert await reader.lookup(classify("C02NEWDEV01")) is not None
    assert live.calls == ["C02NEWDEV01"]
    await backdate(store, 601)
    stale = await reader.lookup(classify("C02SYNCED01"))
    assert stale is not None
    assert stale.managed is False  # the upstream's fresher answer


async def test_store_outage_fails_closed_in_sync_mode(store: Store) -> None:
    """With the database gone, a "sync" provider answers an error, never a stale allow."""
    await syncer(store, ListedInventory([device("C02AAAAA0001")])).sync()
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None)
    await reader.start()
    await store.aclose()
    with pytest.raises(ProviderError):
        await reader.lookup(classify("C02AAAAA0001"))
    with pytest.raises(StoreError):
        await store.current_generation("jamf")


async def test_failed_sync_resumes_from_the_page_it_reached(store: Store) -> None:
    """A listing that fails on page three continues there next time, not from the start."""
    inventory = ListedInventory([device(f"C02R{i}") for i in range(6)])
    inventory.fail_after_pages = 2
    with pytest.raises(ProviderError):
        await syncer(store, inventory).sync()
    state = await store.load_sync_state("jamf")
    assert (state.cursor, state.last_error) == ("4", "upstream answered 503")
    inventory.fail_after_pages = None
    done = await syncer(store, inventory).sync()
    assert done.devices == 6
    assert inventory.pages_served == 3  # pages one and two once, then page three


async def test_a_resumed_sync_is_as_fresh_as_its_first_page(store: Store) -> None:
    """A sync resumed later commits a generation dated from its first page: a reader counts
    max_staleness from when that page was listed, not from the commit."""
    inventory = ListedInventory([device(f"C02P{i}") for i in range(4)])
    inventory.fail_after_pages = 1
    with pytest.raises(ProviderError):
        await syncer(store, inventory).sync()
    first_page_listed = time.time()
    await asyncio.sleep(0.3)  # the resume comes later (here: 0.3 s)
    inventory.fail_after_pages = None
    done = await syncer(store, inventory).sync()
    assert done.completed_at < first_page_listed
    await backdate(store, SYNC.max_staleness - 0.2)  # past it from the first page, not the commit
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None)
    with pytest.raises(ProviderNotReady, match="max_staleness"):
        await reader.start()  # committed 0.3 s after that page: fresh still, were it dated so


async def test_a_partial_listing_older_than_max_staleness_starts_over(store: Store) -> None:
    """A paged sync stopped partway and resumed after max_staleness lists everything again: its
    early pages (a device since turned unmanaged) never pass for fresh."""
    inventory = ListedInventory([device("C02STOLEN1"), device("C02B"), device("C02C")])
    inventory.fail_after_pages = 1
    with pytest.raises(ProviderError):
        await syncer(store, inventory).sync()
    stale = await store.load_sync_state("jamf")
    assert (stale.building, stale.cursor) != (None, None)
    inventory.records[0] = device("C02STOLEN1", managed=False, contact=99)
    inventory.fail_after_pages = None
    inventory.pages_served = 0
    await backdate(store, SYNC.max_staleness)  # the restarted service, max_staleness later
    with capture_logs() as logs:
        done = await syncer(store, inventory).sync()
    assert done.id != stale.building
    assert inventory.pages_served == 2  # from the first page again
    assert await keys(store, "C02STOLEN1", "C02C") == {"C02STOLEN1": False, "C02C": True}
    restarted = [e for e in logs if e["event"] == "sync.restarted"]
    assert len(restarted) == 1
    assert restarted[0]["generation"] == stale.building
    assert restarted[0]["reason"].startswith("the partial listing began ")
    assert restarted[0]["reason"].endswith("s ago (max_staleness 600s)")
    assert await store.building_age(stale.building or 0) is None  # thrown away


async def test_a_partial_listing_within_max_staleness_resumes(store: Store) -> None:
    """A partial listing younger than max_staleness is resumed at its cursor, not restarted."""
    inventory = ListedInventory([device(f"C02Y{i}") for i in range(4)])
    inventory.fail_after_pages = 1
    with pytest.raises(ProviderError):
        await syncer(store, inventory).sync()
    building = (await store.load_sync_state("jamf")).building
    inventory.fail_after_pages = None
    later = Clock()
    later.now = time.time() + SYNC.max_staleness - 60
    done = await syncer(store, inventory, clock=later).sync()
    assert done.id == building
    assert inventory.pages_served == 2  # page one, then page two only


async def test_resuming_at_a_cursor_that_keeps_failing_starts_over(store: Store) -> None:
    """After MAX_RESUMES failed resumes at one cursor the listing starts from the beginning."""
    inventory = ListedInventory([device(f"C02S{i}") for i in range(4)])
    inventory.fail_after_pages = 1
    leader = syncer(store, inventory)
    for _ in range(1 + MAX_RESUMES):
        with pytest.raises(ProviderError):
            await leader.sync()
        inventory.pages_served = 1  # page two fails whatever the cursor
    stuck = (await store.load_sync_state("jamf")).building
    inventory.fail_after_pages = None
    with capture_logs() as logs:
        done = await leader.sync()
    assert done.id != stuck
    assert done.devices == 4
    assert "sync.restarted" in [e["event"] for e in logs]


async def test_a_listing_whose_pages_loop_fails_and_keeps_the_last_generation(
    store: Store,
) -> None:
    """An upstream that hands back an earlier page's cursor would be listed forever: the sync
    fails with that reason after one round, and decisions keep the last good generation."""
    inventory = ListedInventory([device(f"C02L{i}") for i in range(6)])
    good = await syncer(store, inventory).sync()
    inventory.loop_at = "4"  # page three points back to page two
    inventory.pages_served = 0
    with pytest.raises(ProviderError, match="pages loop"):
        await syncer(store, inventory).sync()
    assert inventory.pages_served == 3
    current = await store.current_generation("jamf")
    assert current is not None
    assert current.id == good.id


async def test_a_synced_serial_other_than_ascii_answers_for_no_identifier(store: Store) -> None:
    """'\ufb01'.upper() is "FI": a synced record with that serial is not stored under the
    attested ABCDEFGHFI, so it never answers for that device."""
    inventory = ListedInventory([device("ABCDEFGH\ufb01"), device("C02A00000001")])
    await syncer(store, inventory).sync()
    assert await keys(store, "ABCDEFGHFI", "C02A00000001") == {
        "ABCDEFGHFI": None,
        "C02A00000001": True,
    }


def test_failed_syncs_back_off_up_to_the_interval(store: Store) -> None:
    """Retries after failures wait 10, 20, 40... seconds, never longer than sync_interval."""
    leader = syncer(store, ListedInventory([]))
    assert [leader.pause(n) for n in range(5)] == [10.0, 10.0, 20.0, 40.0, 60.0]


# --- copies listed under other settings --------------------------------------------------------


async def test_a_listing_under_other_settings_neither_resumes_nor_mixes(store: Store) -> None:
    """A sync interrupted under one configuration is never resumed under another (whose cursor
    may well parse): the new copy holds the new inventory's devices only."""
    old = ListedInventory([device("OLD1"), device("OLD2"), device("OLD3"), device("OLD4")])
    old.fail_after_pages = 1
    with pytest.raises(ProviderError):
        await syncer(store, old, key="jamf@old").sync()
    new = ListedInventory([device("NEW1"), device("NEW2"), device("NEW3"), device("NEW4")])
    current = await syncer(store, new, key="jamf@new").sync()
    assert current.devices == 4
    assert await store.find_device("jamf@new", "serial:OLD1") is None
    assert await store.find_device("jamf@new", "serial:NEW1") is not None
    assert (await store.load_sync_state("jamf@old")).building is not None  # still its own


@pytest.mark.parametrize("other", ["jamf@other", "jamf"], ids=["other-settings", "earlier-release"])
async def test_a_reader_answers_only_from_its_own_settings_copy(store: Store, other: str) -> None:
    """A copy made under other settings is another inventory, and one an earlier release made
    (named for the provider alone) was listed under settings nobody knows: this provider may be
    pointed elsewhere now. Until its own copy is complete it is not ready, as at a first start;
    then its own copy decides."""
    await syncer(store, ListedInventory([device("C02SYNCA0001")]), key=other).sync()
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None, key="jamf@mine")
    with pytest.raises(ProviderNotReady, match="no complete sync yet"):
        await reader.start()
    with pytest.raises(ProviderNotReady):
        await reader.lookup(classify("C02SYNCA0001"))
    await syncer(store, ListedInventory([device("C02SYNCB0002")]), key="jamf@mine").sync()
    await reader.start()
    assert await reader.lookup(classify("C02SYNCA0001")) is None
    found = await reader.lookup(classify("C02SYNCB0002"))
    assert found is not None
    assert found.serial == "C02SYNCB0002"


async def test_stale_copies_of_other_settings_are_dropped_fresh_ones_kept(store: Store) -> None:
    """After a sync, the provider's other copies that can no longer answer (nothing of them
    newer than max_staleness) go; one that replicas still keep fresh stays, as does one a
    replica is syncing (it holds its lease), and the copies of another provider whose name the
    first one's begins with."""
    copies = ("jamf", "jamf@stale", "jamf@fresh", "jamf@leased", "jamf2@stale", "jamf_x@stale")
    for key in copies:
        await syncer(store, ListedInventory([device("C02SYNCA0001")]), key=key).sync()
    async with store._transaction() as tx:  # age them by the database's clock
        await tx.execute(
            "UPDATE generations SET completed_at = completed_at - 10000, "
            "started_at = started_at - 10000 WHERE provider <> 'jamf@fresh'"
        )
    assert await store.acquire_lease("sync:jamf@leased", "b", 30)  # b is syncing it now
    with capture_logs() as logs:
        await syncer(store, ListedInventory([device("C02SYNCB0002")]), key="jamf@mine").sync()
    assert [e["copies"] for e in logs if e["event"] == "sync.copies_dropped"] == [2]
    for gone in ("jamf", "jamf@stale"):
        assert await store.current_generation(gone) is None
        assert (await store.load_sync_state(gone)).last_success is None
    for kept in ("jamf@fresh", "jamf@leased", "jamf2@stale", "jamf_x@stale", "jamf@mine"):
        assert await store.current_generation(kept) is not None


def test_a_copy_name_says_what_is_listed_and_nothing_else() -> None:
    """The same settings name the same copy in every process (a set's order changes with the
    hash seed: each replica, and each restart, named its own copy); a secret or a timeout does
    not make another inventory, another URL or fewer statuses does."""
    code = (
        "from providers.mosyle import MosyleSettings\n"
        "from connector.sync import copy_name\n"
        "print(copy_name('mdm', MosyleSettings.model_validate({'kind': 'mosyle',"
        " 'url': 'https://a.mosyle.com', 'access_token': 't', 'email': 'a@b.c',"
        " 'password': 'p', 'enrolled_statuses': ['IN', 'PENDING', 'OUT'], 'mode': 'sync'})))"
    )
    names = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for seed in range(4)
    }  # fmt: skip
    assert len(names) == 1
    base: dict[str, object] = {
        "kind": "mosyle",
        "url": "https://a.mosyle.com",
        "access_token": "t",
        "email": "a@b.c",
        "password": "p",
        "mode": "sync",
    }
    name = copy_name("mdm", MosyleSettings.model_validate(base))
    same: list[dict[str, object]] = [{"password": "x"}, {"budget": 3.0}, {"sync_interval": 600}]
    other: list[dict[str, object]] = [
        {"url": "https://b.mosyle.com"},
        {"enrolled_statuses": ["IN", "PENDING"]},
    ]
    for change in same:
        assert copy_name("mdm", MosyleSettings.model_validate(base | change)) == name, change
    for change in other:
        assert copy_name("mdm", MosyleSettings.model_validate(base | change)) != name, change


class EndlessListing:
    """An upstream whose pages never end: a new cursor with every page."""

    def __init__(self, cursor_size: int = 16) -> None:
        self.pages = 0
        self.cursor_size = cursor_size

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        while True:
            for record in (await self.list_page(None)).records:
                yield record

    async def list_page(self, cursor: str | None) -> Page:
        del cursor
        self.pages += 1
        await asyncio.sleep(0.01)
        record = device(f"C02END{self.pages:06d}")
        return Page([record], f"{self.pages:0{self.cursor_size}d}")


async def test_a_listing_that_never_ends_is_stopped_at_max_staleness(store: Store) -> None:
    """A copy whose listing began `max_staleness` ago could not answer: the listing is given
    up then (it grew the store and the memory for as long as the upstream kept paging)."""
    options = SyncOptions.model_construct(mode="sync", sync_interval=0.1, max_staleness=0.3)
    endless = EndlessListing()
    syncer = Syncer("jamf", endless, options, store, replica="a", encode=encode)
    with pytest.raises(ProviderError, match="has run for over max_staleness"):
        async with asyncio.timeout(10):
            await syncer.sync()
    assert await store.current_generation("jamf") is None
    assert 5 < endless.pages < 100


async def test_a_cursor_longer_than_any_api_gives_is_refused(store: Store) -> None:
    """Each cursor is kept for the loop check and stored for resuming: a huge one is refused."""
    with pytest.raises(ProviderError, match="next-page cursor has 9000 characters"):
        await syncer(store, EndlessListing(cursor_size=9000)).sync()


async def test_two_records_tied_on_contact_answer_nothing(store: Store) -> None:
    """Two different records of one serial with the same last contact: a live lookup refuses
    such a tie, and so does the copy (the one listed last won, so the upstream's order decided
    between a compliant and a noncompliant record). A newer record settles it; the same record
    listed twice (a page read again on resume) is no tie."""
    twin = device("C02TIE000001", managed=True, contact=5)
    rival = device("C02TIE000001", managed=False, contact=5)
    other = device("C02TIE000002", contact=5)
    await syncer(store, ListedInventory([twin, other, rival, other], page_size=1)).sync()
    reader = SyncedProvider("jamf", SYNC, store, decode=decode, live=None)
    await reader.start()
    with pytest.raises(ProviderError, match="which one is current cannot be told"):
        await reader.lookup(classify("C02TIE000001"))
    found = await reader.lookup(classify("C02TIE000002"))
    assert found is not None
    newer = device("C02TIE000001", managed=False, contact=6)
    await syncer(store, ListedInventory([twin, rival, newer])).sync()
    settled = await reader.lookup(classify("C02TIE000001"))
    assert settled is not None
    assert settled.managed is False
