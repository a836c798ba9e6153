"""The store on both backends: migrations, atomic generations, leases, audit and challenges."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from connector.settings import ConfigError
from connector.store import (
    LATEST,
    AuditEntry,
    AuditQuery,
    Challenge,
    FailedRule,
    SchemaTooNew,
    Store,
    StoredDevice,
    StoreError,
    StoreSettings,
    SyncState,
    open_store,
)
from connector.store import _store as store_module
from connector.store._schema import MIGRATIONS
from tests.conftest import _fresh_postgres
from tests.helpers import config, make_settings
from tests.sqlite_support import StatementGate, sqlite_store


async def _payload(store: Store, provider: str, key: str) -> tuple[int, bytes] | None:
    found = await store.find_device(provider, key)
    return None if found is None else (found.generation, found.payload)


def _device(serial: str, payload: bytes = b"{}") -> StoredDevice:
    return StoredDevice(keys=(f"serial:{serial}",), payload=payload)


async def test_migration_is_idempotent_across_opens(store_settings: StoreSettings) -> None:
    """Opening a migrated store again changes nothing and reports the latest version."""
    first = await open_store(store_settings)
    assert await first.migrate() == LATEST
    await first.aclose()
    second = await open_store(store_settings)
    assert await second.migrate() == LATEST
    await second.aclose()


async def test_newer_schema_is_refused_untouched(store_settings: StoreSettings) -> None:
    """A database migrated by a newer release is refused with both version numbers."""
    store = await open_store(store_settings)
    async with store._driver.transaction() as tx:
        await tx.execute("INSERT INTO schema_version (version) VALUES (?)", LATEST + 7)
    await store.aclose()
    with pytest.raises(SchemaTooNew) as caught:
        await open_store(store_settings)
    assert caught.value.found == LATEST + 7
    assert f"version {LATEST + 7}" in str(caught.value)
    assert f"up to {LATEST}" in str(caught.value)


async def test_generation_is_invisible_until_committed(store: Store) -> None:
    """Devices of a building generation answer nothing until the commit swaps the head."""
    old = await store.begin_generation("jamf")
    await store.add_devices(old, [_device("C02OLD", b"old")])
    await store.commit_generation("jamf", old)
    new = await store.begin_generation("jamf")
    await store.add_devices(new, [_device("C02NEW", b"new")])
    assert await store.find_device("jamf", "serial:C02NEW") is None
    assert await _payload(store, "jamf", "serial:C02OLD") == (old, b"old")
    current = await store.commit_generation("jamf", new)
    assert current.id == new
    assert current.devices == 1
    assert await _payload(store, "jamf", "serial:C02NEW") == (new, b"new")
    assert await store.find_device("jamf", "serial:C02OLD") is None


async def test_newest_record_wins_across_batches(store: Store) -> None:
    """A device listed twice keeps the record with the later last contact, whatever the order."""
    gen = await store.begin_generation("jamf")
    await store.add_devices(gen, [StoredDevice(("C02DUP",), b"newer", rank=200)])
    await store.add_devices(gen, [StoredDevice(("C02DUP",), b"older", rank=100)])
    await store.add_devices(gen, [StoredDevice(("C02TWO",), b"first", rank=1)])
    await store.add_devices(gen, [StoredDevice(("C02TWO",), b"second", rank=2)])
    await store.commit_generation("jamf", gen)
    assert await _payload(store, "jamf", "C02DUP") == (gen, b"newer")
    assert await _payload(store, "jamf", "C02TWO") == (gen, b"second")


async def test_generation_counts_a_device_added_again_once(store: Store) -> None:
    """Devices whose every key the generation holds already add nothing to its count; a record
    with a key of its own (a re-enrolled Mac's new UDID) does."""
    mac = StoredDevice(("C02MAC", "UDID-1"), b"mac")
    gen = await store.begin_generation("jamf")
    await store.add_devices(gen, [mac, _device("C02TWO"), _device("C02TWO")])
    await store.add_devices(gen, [mac, StoredDevice(("C02MAC",), b"serial only")])
    await store.add_devices(gen, [StoredDevice(("C02MAC", "UDID-2"), b"re-enrolled")])
    assert (await store.commit_generation("jamf", gen)).devices == 3


async def test_aborted_generation_keeps_the_current_one(store: Store) -> None:
    """A failed sync never replaces good data."""
    good = await store.begin_generation("jamf")
    await store.add_devices(good, [_device("C02GOOD")])
    await store.commit_generation("jamf", good)
    broken = await store.begin_generation("jamf")
    await store.add_devices(broken, [_device("C02HALF")])
    await store.abort_generation(broken)
    assert await store.find_device("jamf", "serial:C02GOOD") is not None
    assert await store.find_device("jamf", "serial:C02HALF") is None
    with pytest.raises(StoreError):
        await store.commit_generation("jamf", broken)


async def test_committed_generation_is_dated_from_its_start(store: Store) -> None:
    """A generation's completed_at is when it was begun (its oldest rows), not its commit."""
    gen = await store.begin_generation("jamf")
    age = await store.building_age(gen)
    assert age is not None
    assert 0 <= age < 5
    await store.add_devices(gen, [_device("C02SLOW")])
    await asyncio.sleep(0.2)  # the listing goes on (or waits to be resumed)
    current = await store.commit_generation("jamf", gen)
    assert current.age >= 0.2  # as old as its first rows, not its commit
    found = await store.find_device("jamf", "serial:C02SLOW")
    assert found is not None
    assert found.completed_at == current.completed_at
    assert await store.building_age(gen) is None  # current now, not being built
    assert await store.building_age(gen + 1) is None


async def test_generations_are_per_provider(store: Store) -> None:
    """One provider's generation never answers for another."""
    gen = await store.begin_generation("jamf")
    await store.add_devices(gen, [_device("C02JAMF")])
    await store.commit_generation("jamf", gen)
    assert await store.find_device("intune", "serial:C02JAMF") is None
    assert await store.current_generation("intune") is None
    with pytest.raises(StoreError):
        await store.commit_generation("intune", gen)


async def test_lease_is_exclusive_until_it_expires(store: Store) -> None:
    """Only one holder at a time; another takes over once the lease lapses."""
    assert await store.acquire_lease("sync:jamf", "replica-a", ttl=0.3)
    assert not await store.acquire_lease("sync:jamf", "replica-b", ttl=0.3)
    assert await store.acquire_lease("sync:jamf", "replica-a", ttl=0.3)  # renewal
    await asyncio.sleep(0.4)
    assert await store.acquire_lease("sync:jamf", "replica-b", ttl=5)
    assert not await store.acquire_lease("sync:jamf", "replica-a", ttl=5)
    await store.release_lease("sync:jamf", "replica-b")
    assert await store.acquire_lease("sync:jamf", "replica-a", ttl=5)


async def test_sync_state_round_trips(store: Store) -> None:
    """What one replica records about a sync, another reads back."""
    assert await store.load_sync_state("jamf") == SyncState("jamf")
    state = SyncState("jamf", building=4, cursor="computers:3", last_attempt=10.5, last_error="x")
    await store.save_sync_state(state)
    assert await store.load_sync_state("jamf") == state


async def test_audit_query_filters_and_orders(store: Store) -> None:
    """Entries come back newest first and every query field narrows them."""
    rule = FailedRule("device-unmanaged", "the device is not managed", "false")
    entries = [
        AuditEntry(at=100, webhook="people", webhook_kind="ENRICHING", identifier="C02A",
                   identifier_kind="serial", allow=True, provider="jamf", source="live"),
        AuditEntry(at=200, webhook="people", webhook_kind="ENRICHING", identifier="C02B",
                   identifier_kind="serial", allow=False, code="device-unmanaged",
                   failed_rules=(rule,), request_id="req-1", latency_ms=1.5),
        AuditEntry(at=300, webhook="gate", webhook_kind="AUTHORIZING", identifier="c02a",
                   identifier_kind="serial", allow=True, mode="shadow", would_allow=False,
                   code="device-unmanaged", failed_rules=(rule,), detail={"tx": "1"}),
    ]  # fmt: skip
    await store.record_decisions(entries)
    everything = await store.query_decisions(AuditQuery())
    assert [e.at for e in everything] == [300, 200, 100]
    assert everything[1].failed_rules == (rule,)
    assert everything[0].detail == {"tx": "1"}
    by_id = await store.query_decisions(AuditQuery(identifier="C02A"))
    assert [e.at for e in by_id] == [300, 100]
    denied = await store.query_decisions(AuditQuery(denied_only=True))
    assert [e.at for e in denied] == [300, 200]  # the shadow would-deny counts
    window = await store.query_decisions(AuditQuery(since=150, until=300))
    assert [e.at for e in window] == [200]
    assert [e.at for e in await store.query_decisions(AuditQuery(webhook="gate"))] == [300]
    assert len(await store.query_decisions(AuditQuery(limit=1))) == 1
    assert await store.prune_decisions(before=250) == 2
    assert [e.at for e in await store.query_decisions(AuditQuery())] == [300]


async def test_retention_deletes_in_batches_and_counts_them_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired entries go a batch per transaction (one statement for millions outlasted the
    store's timeout, and none went); every one goes, and none that is kept."""
    monkeypatch.setattr(store_module, "PRUNE_BATCH", 3)
    entries = [
        AuditEntry(at=at, webhook="people", webhook_kind="ENRICHING", identifier=f"C02A{at:08d}",
                   identifier_kind="serial", allow=True)
        for at in range(1, 12)
    ]  # fmt: skip
    await store.record_decisions(entries)
    assert await store.prune_decisions(before=10) == 9  # three full batches, then an empty one
    assert [e.at for e in await store.query_decisions(AuditQuery())] == [11, 10]
    assert await store.prune_decisions(before=10) == 0


async def test_an_identifier_search_reads_its_index(store: Store) -> None:
    """Searching the audit log by identifier (in any case) is served by an index, not by reading
    every entry: at millions of entries a full read took seconds."""
    search = (
        "SELECT id FROM decisions WHERE upper(identifier) = upper(?) "
        "ORDER BY at DESC, id DESC LIMIT ?"
    )
    async with store._driver.transaction() as tx:
        if store.backend == "sqlite":
            plan = await tx.fetchall(f"EXPLAIN QUERY PLAN {search}", "C02A", 50)
        else:  # tables this small would be read whole: ask whether the index can serve it
            await tx.execute("SET LOCAL enable_seqscan = off")
            plan = await tx.fetchall(f"EXPLAIN {search}", "C02A", 50)
    assert "decisions_identifier_upper" in " ".join(str(row) for row in plan)


async def test_an_identifier_other_than_ascii_is_found_as_it_was_recorded(store: Store) -> None:
    """Invalid, probe-like identifiers are the ones worth looking for: SQLite's upper() changes
    ASCII letters only, and the search compared it with Python's, so none was ever found."""
    entry = AuditEntry(
        at=100,
        webhook="people",
        webhook_kind="ENRICHING",
        identifier="c02tëst",
        identifier_kind=None,
        allow=False,
    )
    await store.record_decisions([entry])
    for asked in ("c02tëst", "C02TëST"):
        found = await store.query_decisions(AuditQuery(identifier=asked))
        assert [e.identifier for e in found] == ["c02tëst"], asked


async def test_an_audit_search_under_way_never_delays_a_synced_lookup(tmp_path: Path) -> None:
    """SQLite: a search has a connection of its own, so a decision's read of the synced copy
    is answered while a long search (held here at its start) is still running."""
    store, connections = await sqlite_store(tmp_path / "store.sqlite3")
    generation = await store.begin_generation("jamf")
    await store.add_devices(generation, [_device("C02A", b"a")])
    await store.commit_generation("jamf", generation)
    gate = StatementGate(lambda sql: sql.startswith("SELECT id, ") and "FROM decisions" in sql)
    for conn in connections:
        await conn.set_trace_callback(gate)
    search = asyncio.create_task(store.query_decisions(AuditQuery(identifier="C02A")))
    try:
        await gate.wait()
        async with asyncio.timeout(5):
            assert await _payload(store, "jamf", "serial:C02A") == (generation, b"a")
        assert not search.done()
    finally:
        gate.release()
        assert await search == []
        await store.aclose()


async def test_audit_batch_round_trips_every_value(store: Store) -> None:
    """A batch comes back value for value, in order: text that JSON escapes, floats to the last
    digit, both booleans and every None (SQLite writes a batch as one JSON array of rows)."""
    rule = FailedRule("groups", 'member of "contractors" \\ ☂', '["a", "b"]')
    entries = [
        AuditEntry(at=1764732205.123456, webhook="gate", webhook_kind="AUTHORIZING",
                   identifier="C02\u2028Q\"'", identifier_kind=None, allow=False,
                   code="policy-denied", provider="jamf", source="generation:7",
                   request_id="req\n1", latency_ms=0.01, mode="shadow", would_allow=True,
                   failed_rules=(rule, FailedRule("managed", "unmanaged", None)),
                   user="zoë", email="zoe@example.com", detail={"tx": "😀", "empty": ""}),
        AuditEntry(at=1e-6, webhook="w", webhook_kind="ENRICHING", identifier=None,
                   identifier_kind=None, allow=True, would_allow=False, latency_ms=123456.78),
        AuditEntry(at=2.0, webhook="w", webhook_kind="ENRICHING", identifier="",
                   identifier_kind="serial", allow=True),
    ]  # fmt: skip
    await store.record_decisions(entries)
    back = sorted(await store.query_decisions(AuditQuery()), key=lambda e: e.id or 0)
    assert [replace(e, id=None) for e in back] == entries  # ids follow the batch's order


async def test_audit_text_no_database_holds_is_replaced_not_lost(store: Store) -> None:
    """A NUL (PostgreSQL's text has none; SQLite's JSON would cut the text there) and a lone
    surrogate (not UTF-8) become U+FFFD; the rest of the text and the batch are kept."""
    entries = [
        AuditEntry(at=1.0, webhook="gate", webhook_kind="AUTHORIZING",
                   identifier="C02\x00REST", identifier_kind=None, allow=False,
                   code="identifier-invalid"),
        AuditEntry(at=2.0, webhook="gate", webhook_kind="AUTHORIZING",
                   identifier="C02\udc00X", identifier_kind=None, allow=False,
                   code="identifier-invalid", user="\ud83d\ude00"),
        AuditEntry(at=3.0, webhook="gate", webhook_kind="AUTHORIZING", identifier="C02OK",
                   identifier_kind="serial", allow=True),
    ]  # fmt: skip
    await store.record_decisions(entries)
    back = sorted(await store.query_decisions(AuditQuery()), key=lambda e: e.at)
    assert [e.identifier for e in back] == ["C02\ufffdREST", "C02\ufffdX", "C02OK"]
    assert back[1].user == "😀"  # a surrogate pair is one character again


async def test_challenge_burns_once_and_expires(store: Store) -> None:
    """A challenge is used at most once, only before expiry, only for its webhook."""
    await store.add_challenge(Challenge("ab" * 32, "scep", "C02SCEP", expires_at=1000))
    assert await store.burn_challenge("ab" * 32, "other", now=10) is None
    burnt = await store.burn_challenge("ab" * 32, "scep", now=10)
    assert burnt is not None
    assert burnt.identity == "C02SCEP"
    assert await store.burn_challenge("ab" * 32, "scep", now=11) is None
    await store.add_challenge(Challenge("cd" * 32, "scep", "C02OLD", expires_at=50))
    assert await store.burn_challenge("cd" * 32, "scep", now=60) is None


async def test_a_released_challenge_can_be_used_once_more(store: Store) -> None:
    """Only the use made at the given time is undone, for its webhook; then it burns again."""
    await store.add_challenge(Challenge("ef" * 32, "scep", "C02SCEP", expires_at=1000))
    assert await store.release_challenge("ef" * 32, "scep", used_at=10) is False  # unused
    assert await store.burn_challenge("ef" * 32, "scep", now=10.25) is not None
    assert await store.release_challenge("ef" * 32, "scep", used_at=10) is False  # another use
    assert await store.release_challenge("ef" * 32, "other", used_at=10.25) is False
    assert await store.release_challenge("ef" * 32, "scep", used_at=10.25) is True
    assert await store.burn_challenge("ef" * 32, "scep", now=12) is not None
    assert await store.burn_challenge("ef" * 32, "scep", now=13) is None


async def test_unreachable_postgres_is_a_clear_store_error() -> None:
    """A database nobody listens on fails fast with a password-free reason."""
    settings = StoreSettings(
        backend="postgresql",
        url="postgresql://u:hunter2@127.0.0.1:9/nowhere",
        timeout=1,
    )
    with pytest.raises(StoreError) as caught:
        await open_store(settings)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(settings)
    assert settings.redacted == "postgresql://u@127.0.0.1:9/nowhere"


@pytest.mark.parametrize(
    "url", ["postgresql:/app:hunter2x9@db:5432/posture", "postgres:app:hunter2x9@db/posture"]
)
def test_a_url_without_a_host_part_is_refused_without_echoing_it(url: str, tmp_path: Path) -> None:
    """A slash forgotten after the scheme leaves no host part: the user and password would be
    read as the path, and shown on /readyz and in every store log line."""
    store = {"backend": "postgresql", "url": url}
    with pytest.raises(ConfigError) as caught:
        make_settings({**config(tmp_path / "inventory.csv"), "store": store})
    (problem,) = caught.value.problems
    assert "store: url must start with postgresql://" in problem
    assert "hunter2x9" not in problem


@pytest.mark.parametrize(
    "password", ["2024/Xy9+zzSECRET", "s3cr/et", "s3cr?et", "s3cr#et", "S3cretPw@9", "hunter@2x9"]
)
def test_a_password_that_would_end_the_host_part_is_refused_without_echoing_it(
    password: str, tmp_path: Path
) -> None:
    """An unencoded "/", "?" or "#" would make the rest of the password the port and path,
    shown on /readyz and in every store log line: such a URL is refused, and says how to fix it."""
    store = {"backend": "postgresql", "url": f"postgresql://app:{password}@db:5432/posture"}
    with pytest.raises(ConfigError) as caught:
        make_settings({**config(tmp_path / "inventory.csv"), "store": store})
    (problem,) = caught.value.problems
    assert "store: url has an '@' in its password or after its host: percent-encode" in problem
    for part in re.split("[/?#@]", password):
        assert part not in problem


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@[::1]:5432/x?sslmode=require", "postgresql://u@[::1]:5432/x"),
        ("postgresql://u:pw@h1:5432,h2:5433/x", "postgresql://u@h1:5432,h2:5433/x"),
        ("postgresql://u:pw@db:notaport/x", "postgresql://u@db:notaport/x"),
        ("postgres://db/x", "postgresql://db/x"),
    ],
)
def test_the_store_is_shown_without_its_password_whatever_the_url(url: str, shown: str) -> None:
    assert StoreSettings(backend="postgresql", url=url).redacted == shown


async def test_a_schema_upgrade_is_not_cut_by_the_statement_timeout(postgres_url: str) -> None:
    """Migration 2 indexes the whole audit log: on a large one that takes longer than any call
    may (`[store] timeout`). It gets `MIGRATION_TIMEOUT`, and says it is under way."""
    url = await _fresh_postgres(postgres_url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0].sql("postgresql"):
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_version VALUES (1)")
        await conn.execute(
            "INSERT INTO decisions (at, webhook, webhook_kind, identifier, identifier_kind,"
            " allow, mode) SELECT 1.7e9 + g, 'people', 'ENRICHING',"
            " 'C02' || lpad(g::text, 9, '0'), 'serial', true, 'enforce'"
            " FROM generate_series(1, 300000) g"
        )
    finally:
        await conn.close()
    settings = StoreSettings(backend="postgresql", url=url, timeout=0.02)
    with capture_logs() as logs:
        store = await open_store(settings)
    try:
        assert await store.migrate() == LATEST
    finally:
        await store.aclose()
    assert [(e["event"], e["version"]) for e in logs if e["event"].startswith("store.")] == [
        ("store.migrating", 2),
        ("store.migrated", 2),
    ]


async def test_waiting_for_a_pooled_postgres_connection_is_bounded(postgres_url: str) -> None:
    """With every pooled connection busy, a query fails after the store timeout, never hangs."""
    url = await _fresh_postgres(postgres_url)
    store = await open_store(StoreSettings(backend="postgresql", url=url, pool_size=1, timeout=0.3))
    try:
        async with store._driver.reader():  # holds the pool's only connection
            started = asyncio.get_running_loop().time()
            with pytest.raises(StoreError, match="TimeoutError"):
                await store.find_device("jamf", "serial:C02BUSY")
            assert asyncio.get_running_loop().time() - started < 5
    finally:
        await store.aclose()


async def test_an_abort_racing_a_commit_leaves_the_committed_copy_whole(
    postgres_url: str,
) -> None:
    """PostgreSQL: a replica aborts a generation another is committing. The abort deleted the
    devices first, by a test the commit (not yet committed) had not changed, so the copy became
    current with no rows: every device "not found". It now waits for the commit and keeps it."""
    url = await _fresh_postgres(postgres_url)
    store = await open_store(StoreSettings(backend="postgresql", url=url))
    try:
        generation = await store.begin_generation("jamf@x")
        await store.add_devices(generation, [_device("C02R1"), _device("C02R2")])
        committer = await asyncpg.connect(url)  # another replica's commit, holding its lock
        try:
            transaction = committer.transaction()
            await transaction.start()
            await committer.execute(
                "UPDATE generations SET state = 'current', completed_at = started_at WHERE id = $1",
                generation,
            )
            await committer.execute(
                "INSERT INTO inventory_heads (provider, generation) VALUES ('jamf@x', $1)",
                generation,
            )
            aborting = asyncio.create_task(store.abort_generation(generation))
            await asyncio.sleep(0.3)  # the abort runs into the committer's lock
            await transaction.commit()
            await asyncio.wait_for(aborting, 10)
        finally:
            await committer.close()
        assert await _payload(store, "jamf@x", "serial:C02R1") is not None
        assert await _payload(store, "jamf@x", "serial:C02R2") is not None
    finally:
        await store.aclose()
