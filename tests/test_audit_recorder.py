"""The audit writer: batches off the decision path, survives an outage, flushes at shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connector.store import AuditEntry, AuditQuery, AuditRecorder, Store, StoreSettings, open_store
from tests.sqlite_support import StatementGate, gated_store


def entry(at: float) -> AuditEntry:
    return AuditEntry(
        at=at, webhook="people", webhook_kind="ENRICHING", identifier="C02A",
        identifier_kind="serial", allow=True,
    )  # fmt: skip


async def test_queued_decisions_are_written_at_shutdown(store: Store) -> None:
    """Every recorded decision is in the store after `aclose`, newest first."""
    recorder = AuditRecorder(store, batch=3)
    recorder.start()
    for at in range(10):
        recorder.record(entry(at))
    await recorder.aclose()
    rows = await store.query_decisions(AuditQuery(limit=50))
    assert [r.at for r in rows] == list(reversed(range(10)))
    assert recorder.dropped == 0


async def test_a_full_queue_drops_and_counts_instead_of_growing(store: Store) -> None:
    """With the writer stalled, entries past `max_pending` are dropped and counted."""
    recorder = AuditRecorder(store, max_pending=5)  # not started: nothing drains the queue
    for at in range(8):
        recorder.record(entry(at))
    assert recorder.dropped == 3
    await recorder.flush()
    assert len(await store.query_decisions(AuditQuery(limit=50))) == 5


@pytest.mark.parametrize("held", ["BEGIN IMMEDIATE", "COMMIT"], ids=["begin", "commit"])
async def test_a_write_under_way_at_shutdown_is_recorded_once(tmp_path: Path, held: str) -> None:
    """`aclose` while the writer's BEGIN or COMMIT is under way writes each entry exactly once,
    without a flush timeout."""
    store, writer = await gated_store(tmp_path / "store.sqlite3")
    gate = StatementGate(lambda sql: sql == held)
    await writer.set_trace_callback(gate)
    recorder = AuditRecorder(store)
    recorder.start()
    recorder.record(entry(1))
    await gate.wait()
    with capture_logs() as logs:
        closing = asyncio.create_task(recorder.aclose())
        await asyncio.sleep(0)  # aclose runs up to its first wait: the writer is cancelled
        gate.release()
        await closing
    rows = await store.query_decisions(AuditQuery(limit=50))
    await store.aclose()
    assert [r.at for r in rows] == [1]
    assert recorder.written == 1
    assert [e["event"] for e in logs] == []


async def _written(recorder: AuditRecorder, count: int, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while recorder.written < count:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_burst_is_gathered_into_one_write_after_a_short_linger(store: Store) -> None:
    """Entries recorded together wait `linger` seconds, then reach the store in one batch."""
    recorder = AuditRecorder(store, linger=0.2)
    recorder.start()
    for at in range(5):
        recorder.record(entry(at))
    await asyncio.sleep(0.05)
    assert recorder.written == 0  # still gathering
    assert await _written(recorder, 5, within=2.0)
    await recorder.aclose()
    assert len(await store.query_decisions(AuditQuery(limit=50))) == 5


async def test_full_batches_are_written_without_lingering(store: Store) -> None:
    """A backlog of full batches is written at once; only the short remainder lingers."""
    recorder = AuditRecorder(store, batch=3, linger=30.0)
    recorder.start()
    for at in range(7):
        recorder.record(entry(at))
    assert await _written(recorder, 6, within=5.0)
    assert recorder.written == 6  # the seventh waits for its linger...
    await recorder.aclose()  # ...and is flushed at shutdown
    assert len(await store.query_decisions(AuditQuery(limit=50))) == 7


async def test_a_batch_that_cannot_be_written_is_dropped_and_the_writer_goes_on(
    store: Store,
) -> None:
    """An entry no database can take (here a detail value JSON has no type for) is a bug, not an
    outage: its batch is logged and counted as dropped, never retried forever, and the next
    batch is written."""
    recorder = AuditRecorder(store, linger=0)
    recorder.start()
    broken = AuditEntry(
        at=1, webhook="people", webhook_kind="ENRICHING", identifier="C02A",
        identifier_kind="serial", allow=True, detail={"tx": object()},  # type: ignore[dict-item]
    )  # fmt: skip
    with capture_logs() as logs:
        recorder.record(broken)
        await asyncio.sleep(0.2)
        recorder.record(entry(2))
        assert await _written(recorder, 1, within=5)
    await recorder.aclose()
    assert [r.at for r in await store.query_decisions(AuditQuery(limit=50))] == [2]
    assert recorder.dropped == 1
    [failed] = [e for e in logs if e["event"] == "audit.write_failed"]
    assert failed["error"] == "unexpected TypeError"
    assert failed["entries"] == 1


async def test_only_an_entry_the_database_refuses_is_dropped_never_retried_forever(
    store: Store,
) -> None:
    """A constraint the data breaks (here a missing webhook name, NOT NULL) fails the same way
    every time: the batch is written an entry at a time, only the refused entry is logged and
    dropped, and the writer goes on."""
    recorder = AuditRecorder(store, linger=0.2)
    recorder.start()
    refused = AuditEntry(
        at=2, webhook=None, webhook_kind="ENRICHING", identifier="C02A",  # type: ignore[arg-type]
        identifier_kind="serial", allow=True,
    )  # fmt: skip
    with capture_logs() as logs:
        for item in (entry(1), refused, entry(3)):  # one batch
            recorder.record(item)
        assert await _written(recorder, 2, within=5)
        recorder.record(entry(4))
        assert await _written(recorder, 3, within=5)
    await recorder.aclose()
    rows = await store.query_decisions(AuditQuery(limit=50))
    assert sorted(r.at for r in rows) == [1, 3, 4]
    assert recorder.dropped == 1
    [failed] = [e for e in logs if e["event"] == "audit.write_failed"]
    assert "IntegrityError" in failed["error"] or "NotNullViolation" in failed["error"]
    assert failed["entries"] == 1


async def test_a_flush_that_times_out_counts_what_it_loses(tmp_path: Path) -> None:
    """At shutdown with the database gone, the flush gives up after its time: the entries it
    held were reported as ``pending = 0`` and never counted as dropped."""
    store = await open_store(StoreSettings(path=tmp_path / "store.sqlite3"))
    recorder = AuditRecorder(store)
    for second in range(7):
        recorder.record(entry(1_000.0 + second))
    await store.aclose()  # every write now fails, and is retried until the flush gives up
    with capture_logs() as logs:
        await recorder.aclose(flush_seconds=0.5)
    timeouts = [line for line in logs if line["event"] == "audit.flush_timeout"]
    assert [line["pending"] for line in timeouts] == [7]
    assert (recorder.dropped, recorder.written) == (7, 0)


def _rows_per_write(statements: list[str]) -> list[int]:
    """The entries each transaction inserted, from the writer's traced (expanded) statements:
    one JSON array of rows per insert, or a statement per row where SQLite lacks ``->>``."""
    sizes: list[int] = []
    for sql in statements:
        if sql == "BEGIN IMMEDIATE":
            sizes.append(0)
        elif sql.startswith("INSERT INTO decisions"):
            _, found, rows = sql.partition("json_each('")
            sizes[-1] += (
                len(json.loads(rows.rpartition("')")[0].replace("''", "'"))) if found else 1
            )
    return sizes


async def test_a_backlog_goes_in_full_batches_and_what_keeps_up_in_small_ones(
    tmp_path: Path,
) -> None:
    """While a full batch waits it is written whole; what is left goes `small_batch` entries
    per write, and a remainder under that lingers first (each insert is a burst of CPU beside
    the event loop: short ones keep decisions prompt)."""
    store, writer = await gated_store(tmp_path / "store.sqlite3")
    statements: list[str] = []
    await writer.set_trace_callback(statements.append)
    recorder = AuditRecorder(store, batch=8, small_batch=3, linger=0.05)
    try:
        for at in range(21):
            recorder.record(entry(at))
        recorder.start()
        assert await _written(recorder, 21, within=5.0)
        backlog = _rows_per_write(statements)
        statements.clear()
        for at in range(21, 28):  # a burst after a quiet spell: gathered, then written small
            recorder.record(entry(at))
        assert await _written(recorder, 28, within=5.0)
    finally:  # aiosqlite's threads would keep a failed run from ever exiting
        await recorder.aclose()
        await store.aclose()
    assert backlog == [8, 8, 3, 2]  # the last lingered: under a small batch
    assert _rows_per_write(statements) == [3, 3, 1]
