"""Store transactions end cleanly whatever interrupts them: cancellation, a failed COMMIT.

A connection left inside a transaction poisons every later write ("cannot start a transaction
within a transaction"), so each test ends by showing the next transaction works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from connector.store import StoreError
from connector.store._drivers import Driver, PostgresDriver, SqliteDriver
from tests.conftest import _fresh_postgres
from tests.sqlite_support import StatementGate, sqlite_connection

SCHEMA = (
    "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
)


@pytest.fixture
async def sqlite_parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteDriver, aiosqlite.Connection]]:
    """A SQLite driver over a WAL file with the test schema, and its raw writer connection."""
    path = tmp_path / "store.sqlite3"
    writer, reader, searcher = [await sqlite_connection(path) for _ in range(3)]
    await writer.execute("PRAGMA journal_mode = WAL")
    for statement in SCHEMA:
        await writer.execute(statement)
    driver = SqliteDriver(writer, reader, searcher)
    yield driver, writer
    await driver.aclose()


async def _parents(driver: Driver) -> list[int]:
    async with driver.reader() as conn:
        return [row[0] for row in await conn.fetchall("SELECT id FROM parent ORDER BY id")]


async def _insert_parent(driver: Driver, key: int) -> None:
    async with driver.transaction() as tx:
        await tx.execute("INSERT INTO parent (id) VALUES (?)", key)


async def test_sqlite_cancel_during_a_waiting_begin_leaves_no_transaction_open(
    sqlite_parts: tuple[SqliteDriver, aiosqlite.Connection], tmp_path: Path
) -> None:
    """A task cancelled while BEGIN waits for another writer's lock leaves the writer idle."""
    driver, raw_writer = sqlite_parts
    begun = StatementGate(lambda sql: sql == "BEGIN IMMEDIATE")
    begun.release()  # only marks the start: the blocker's lock is what keeps BEGIN waiting
    await raw_writer.set_trace_callback(begun)
    blocker = await sqlite_connection(tmp_path / "store.sqlite3")
    try:
        await blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: our BEGIN waits
        task = asyncio.create_task(_insert_parent(driver, 1))
        await begun.wait()
        task.cancel()
        await blocker.execute("ROLLBACK")  # now the waiting BEGIN gets the lock
    finally:
        await blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not raw_writer.in_transaction
    await _insert_parent(driver, 2)
    assert await _parents(driver) == [2]


async def test_sqlite_cancel_during_commit_waits_for_the_commit(
    sqlite_parts: tuple[SqliteDriver, aiosqlite.Connection],
) -> None:
    """A task cancelled during COMMIT ends only after the COMMIT did, so nothing is left open."""
    driver, raw_writer = sqlite_parts
    commit = StatementGate(lambda sql: sql == "COMMIT")
    await raw_writer.set_trace_callback(commit)
    task = asyncio.create_task(_insert_parent(driver, 1))
    await commit.wait()
    task.cancel()
    await asyncio.wait([task], timeout=0.2)
    still_committing = not task.done()
    commit.release()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert still_committing  # the cancelled caller waited for the COMMIT under way
    assert not raw_writer.in_transaction
    await _insert_parent(driver, 2)
    assert await _parents(driver) == [1, 2]


async def test_sqlite_failed_commit_is_rolled_back(
    sqlite_parts: tuple[SqliteDriver, aiosqlite.Connection],
) -> None:
    """A COMMIT that fails (a deferred foreign key) is a StoreError and the writer is idle."""
    driver, raw_writer = sqlite_parts
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        async with driver.transaction() as tx:
            await tx.execute("INSERT INTO child (parent) VALUES (?)", 99)
    assert not raw_writer.in_transaction
    await _insert_parent(driver, 1)
    assert await _parents(driver) == [1]


@pytest.fixture
async def postgres_driver(postgres_url: str) -> AsyncIterator[PostgresDriver]:
    """A PostgreSQL driver with one pooled connection (every transaction reuses it)."""
    url = await _fresh_postgres(postgres_url)
    driver = await PostgresDriver.open(url, pool_size=1, statement_timeout=10)
    async with driver.transaction() as tx:
        for statement in SCHEMA:
            await tx.execute(statement)
    yield driver
    await driver.aclose()


async def _until(conn: asyncpg.Connection, count_query: str) -> bool:
    """Poll a count query on another session until it is positive (at most 10 s)."""
    for _ in range(200):
        if await conn.fetchval(count_query):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_postgres_cancel_during_a_blocked_write_leaves_the_connection_usable(
    postgres_driver: PostgresDriver, postgres_url: str
) -> None:
    """A task cancelled while its statement waits for another session's lock leaves the pooled
    connection outside any transaction."""
    await _insert_parent(postgres_driver, 1)
    async with postgres_driver.reader() as conn:
        [(database,)] = await conn.fetchall("SELECT current_database()")
    other = await asyncpg.connect(postgres_url, database=database)
    try:
        async with other.transaction():
            await other.execute("LOCK TABLE parent IN EXCLUSIVE MODE")
            task = asyncio.create_task(_insert_parent(postgres_driver, 2))
            assert await _until(other, "SELECT count(*) FROM pg_locks WHERE NOT granted")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await other.close()
    await _insert_parent(postgres_driver, 3)
    assert await _parents(postgres_driver) == [1, 3]


async def test_postgres_cancel_during_commit_leaves_the_connection_usable(
    postgres_driver: PostgresDriver, postgres_url: str
) -> None:
    """A task cancelled during a slow COMMIT (a deferred trigger) leaves the pooled connection
    outside any transaction, and the next transaction works."""
    async with postgres_driver.transaction() as tx:
        await tx.execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
        )
        await tx.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON child "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()"
        )
    await _insert_parent(postgres_driver, 1)

    async def slow_commit() -> None:
        async with postgres_driver.transaction() as tx:
            await tx.execute("INSERT INTO child (parent) VALUES (?)", 1)

    async with postgres_driver.reader() as conn:
        [(database,)] = await conn.fetchall("SELECT current_database()")
    task = asyncio.create_task(slow_commit())
    other = await asyncpg.connect(postgres_url, database=database)
    try:
        assert await _until(
            other,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COMMIT%'",
        )
    finally:
        await other.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _insert_parent(postgres_driver, 2)
    assert await _parents(postgres_driver) == [1, 2]
