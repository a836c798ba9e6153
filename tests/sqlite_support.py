"""SQLite stores over connections a test opened itself, and a gate that holds one statement.

aiosqlite runs statements on a thread of its own; the gate (a trace callback) stops that thread
when a chosen statement starts, so a test can cancel a task at a known point of a transaction.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from connector.store import Store
from connector.store._drivers import SqliteDriver


async def sqlite_connection(path: Path) -> aiosqlite.Connection:
    """A connection set up as the store's driver sets up its own."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout = 5000")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn


async def sqlite_store(path: Path) -> tuple[Store, tuple[aiosqlite.Connection, ...]]:
    """A migrated store on `path` over connections opened here: writer, reader, searcher."""
    connections = tuple([await sqlite_connection(path) for _ in range(3)])
    await connections[0].execute("PRAGMA journal_mode = WAL")
    store = Store(SqliteDriver(*connections), describe=f"sqlite:{path}")
    await store.migrate()
    return store, connections


async def gated_store(path: Path) -> tuple[Store, aiosqlite.Connection]:
    """A migrated store on `path`, and its writer connection (for `StatementGate`)."""
    store, connections = await sqlite_store(path)
    return store, connections[0]


class StatementGate:
    """Holds the first statement that `matches` (its expanded SQL) until `release`.

    Install with ``await connection.set_trace_callback(gate)``; `reached` is set once the held
    statement started on aiosqlite's thread.
    """

    def __init__(self, matches: Callable[[str], bool]) -> None:
        self.reached = asyncio.Event()
        self._matches = matches
        self._loop = asyncio.get_running_loop()
        self._released = threading.Event()
        self._held = False

    def __call__(self, sql: str) -> None:
        if self._held or not self._matches(sql):
            return
        self._held = True
        self._loop.call_soon_threadsafe(self.reached.set)
        self._released.wait(timeout=10)

    async def wait(self) -> None:
        """Until the statement is held."""
        await asyncio.wait_for(self.reached.wait(), timeout=10)

    def release(self) -> None:
        """Let the held statement (and every later one) run."""
        self._released.set()
