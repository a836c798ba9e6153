"""Two thin database drivers behind one small interface: aiosqlite and asyncpg.

The store's SQL is written once with ``?`` placeholders; the PostgreSQL driver numbers them
(``$1``, ``$2``...). Every driver error becomes `StoreError` here, at one boundary, with a
message that names the backend and never the password.

Why these libraries: aiosqlite is the standard asyncio bridge to the standard library's sqlite3
(nothing to install for the embedded default); asyncpg is the fastest well-kept PostgreSQL
driver for asyncio, with a built-in pool and per-command timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg

from connector.store._model import StoreError, StoreRefused
from connector.store._schema import Dialect

Row = tuple[Any, ...]


class Connection(Protocol):
    """One connection (inside a transaction, or for a read)."""

    async def execute(self, sql: str, *args: object, time_limit: float | None = None) -> None:
        """Run a statement (within `time_limit` seconds instead of the store's own limit, given
        one: a schema change over a large table takes longer than any call may)."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run a statement once per row."""
        ...

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        """The first row, or None."""
        ...

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        """Every row."""
        ...


class Driver(Protocol):
    """A database: transactions for writes, a connection for reads."""

    @property
    def dialect(self) -> Dialect:
        """Which SQL dialect it speaks."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection inside a transaction: committed on exit, rolled back on error."""
        ...

    def reader(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection for reads that see the latest committed data."""
        ...

    def searcher(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection for reads that may scan (audit searches): never the one the decision
        path reads with, where a driver has few connections."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


# --- SQLite ----------------------------------------------------------------------------------


class _SqliteConnection:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: object, time_limit: float | None = None) -> None:
        del time_limit  # SQLite bounds waiting for locks only (busy_timeout), never a statement
        with _translated("sqlite"):
            await self._conn.execute(sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with _translated("sqlite"):
            await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        with _translated("sqlite"):
            async with self._conn.execute(sql, args) as cursor:
                row = await cursor.fetchone()
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        with _translated("sqlite"):
            async with self._conn.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
        return [tuple(r) for r in rows]


async def _connect_sqlite(path: Path) -> aiosqlite.Connection:
    """Open a connection; if we are cancelled meanwhile, wait for it and close it.

    aiosqlite opens the file on its own thread: abandoning that await would leave a thread
    whose result lands on a closed event loop, and a connection nobody closes.
    """
    pending = asyncio.ensure_future(aiosqlite.connect(path, isolation_level=None))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await pending).close()
        raise


async def _to_the_end(step: Awaitable[None]) -> None:
    """Await `step` until it has ended, even if we are cancelled meanwhile; then re-raise the
    cancellation.

    aiosqlite runs each statement on its own thread: a cancelled await stops nothing there, it
    only hides how the statement ended. A BEGIN that gets its lock after its caller left, or a
    COMMIT whose failure nobody saw, would leave the connection inside a transaction. The wait
    is bounded: BEGIN by the busy timeout, COMMIT and ROLLBACK by the disk.
    """
    task = asyncio.ensure_future(step)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # seen: the cancellation is what the caller gets
        raise cancelled
    task.result()


class SqliteDriver:
    """One writer and two reader connections to a WAL-mode file: reads never wait for a sync,
    and a synced decision's read never waits behind an audit search scanning the log (each
    aiosqlite connection runs one statement at a time, on a thread of its own)."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        searcher: aiosqlite.Connection,
    ) -> None:
        self._writer = _SqliteConnection(writer)
        self._reader = _SqliteConnection(reader)
        self._searcher = _SqliteConnection(searcher)
        self._raw = (writer, reader, searcher)
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteDriver:
        """Open (creating if needed) the database file."""
        opened: list[aiosqlite.Connection] = []
        try:
            with _translated("sqlite"):
                path.parent.mkdir(parents=True, exist_ok=True)
                for _ in range(3):
                    opened.append(await _connect_sqlite(path))
                for conn in opened:
                    await conn.execute("PRAGMA busy_timeout = 5000")
                    await conn.execute("PRAGMA foreign_keys = ON")
                await opened[0].execute("PRAGMA journal_mode = WAL")
                await opened[0].execute("PRAGMA synchronous = NORMAL")
        except BaseException:  # cancelled or failed half-way: close what was opened
            for conn in opened:
                with contextlib.suppress(Exception):
                    await conn.close()
            raise
        return cls(opened[0], opened[1], opened[2])

    @property
    def dialect(self) -> Dialect:
        """SQLite."""
        return "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """BEGIN IMMEDIATE on the writer: one writer at a time, readers unaffected.

        The writer leaves idle whatever happens: BEGIN and COMMIT are seen to their end even
        when we are cancelled meanwhile (see `_to_the_end`), and any failure or cancellation
        rolls back whatever transaction the connection is still in. Otherwise the next BEGIN
        fails with "cannot start a transaction within a transaction", for good.
        """
        async with self._write_lock:
            self._check_open()
            try:
                await _to_the_end(self._writer.execute("BEGIN IMMEDIATE"))
                yield self._writer
                await _to_the_end(self._writer.execute("COMMIT"))
            except BaseException:
                await _to_the_end(self._roll_back())
                raise

    async def _roll_back(self) -> None:
        """ROLLBACK if the writer is in a transaction (not when BEGIN failed or COMMIT ran)."""
        if self._raw[0].in_transaction:
            await self._writer.execute("ROLLBACK")

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """The reader connection (autocommit: each statement sees the latest commit)."""
        self._check_open()
        yield self._reader

    @contextlib.asynccontextmanager
    async def searcher(self) -> AsyncIterator[Connection]:
        """The connection audit searches read with (autocommit, as the reader)."""
        self._check_open()
        yield self._searcher

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("sqlite: the store is closed")

    async def aclose(self) -> None:
        """Close every connection."""
        self._closed = True
        for conn in self._raw:
            with contextlib.suppress(Exception):
                await conn.close()


# --- PostgreSQL ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, ...`` (our SQL has no literal question marks)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


class _PostgresConnection:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: object, time_limit: float | None = None) -> None:
        with _translated("postgresql"):
            await self._conn.execute(_numbered(sql), *args, timeout=time_limit)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with _translated("postgresql"):
            await self._conn.executemany(_numbered(sql), list(rows))

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        with _translated("postgresql"):
            row = await self._conn.fetchrow(_numbered(sql), *args)
        return tuple(row.values()) if row is not None else None

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        with _translated("postgresql"):
            rows = await self._conn.fetch(_numbered(sql), *args)
        return [tuple(r.values()) for r in rows]


class PostgresDriver:
    """An asyncpg pool; every command has a timeout, so a stuck database cannot hang a call."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self._pool = pool
        # Waiting for a free pooled connection is bounded too (asyncpg waits forever by default).
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int, statement_timeout: float) -> PostgresDriver:
        """Connect a pool (at least one connection, so a wrong URL shows at once)."""
        with _translated("postgresql"):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                timeout=statement_timeout,
                command_timeout=statement_timeout,
                # Plan each statement with its values: a generic plan, fixed while a table was
                # empty, kept scanning it whole as a sync filled it (100,000 devices: 90 s, not
                # 19 s); planning these small statements costs about 0.1 ms.
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        return cls(pool, acquire_timeout=statement_timeout)

    @property
    def dialect(self) -> Dialect:
        """PostgreSQL."""
        return "postgresql"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction."""
        with _translated("postgresql"):
            async with (
                self._pool.acquire(timeout=self._acquire_timeout) as conn,
                conn.transaction(),
            ):
                yield _PostgresConnection(conn)

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """A pooled connection in autocommit mode."""
        with _translated("postgresql"):
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                yield _PostgresConnection(conn)

    def searcher(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A pooled connection, as for any read: the pool runs them side by side."""
        return self.reader()

    async def aclose(self) -> None:
        """Close the pool."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(), timeout=5)


@contextlib.contextmanager
def _translated(backend: str) -> Iterator[None]:
    """Database and network errors as `StoreError` (messages carry no password)."""
    try:
        yield
    except StoreError:
        raise
    except (
        sqlite3.IntegrityError,
        sqlite3.DataError,
        asyncpg.IntegrityConstraintViolationError,
        asyncpg.DataError,
    ) as exc:
        raise StoreRefused(f"{backend}: {type(exc).__name__}: {exc}") from None
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"{backend}: {type(exc).__name__}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise StoreError(f"{backend}: cannot reach the database ({type(exc).__name__})") from None
    except ValueError:  # a URL the driver cannot read: its message may quote the password
        raise StoreError(f"{backend}: the database URL cannot be read") from None


class LazyDriver:
    """Opens the real driver on first use, so a store can exist before its database answers.

    The service starts (and reports not-ready) while PostgreSQL is down; each use tries to
    connect again, and the first success is kept.
    """

    def __init__(self, dialect: Dialect, opener: Callable[[], Awaitable[Driver]]) -> None:
        self._dialect: Dialect = dialect
        self._opener = opener
        self._real: Driver | None = None
        self._lock = asyncio.Lock()

    @property
    def dialect(self) -> Dialect:
        """The dialect the real driver will speak."""
        return self._dialect

    async def _driver(self) -> Driver:
        if self._real is None:
            async with self._lock:
                if self._real is None:
                    self._real = await self._opener()
        return self._real

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """The real driver's transaction (connecting first if needed)."""
        driver = await self._driver()
        async with driver.transaction() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """The real driver's reader (connecting first if needed)."""
        driver = await self._driver()
        async with driver.reader() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def searcher(self) -> AsyncIterator[Connection]:
        """The real driver's searcher (connecting first if needed)."""
        driver = await self._driver()
        async with driver.searcher() as conn:
            yield conn

    async def aclose(self) -> None:
        """Close the real driver if it was opened."""
        if self._real is not None:
            await self._real.aclose()
