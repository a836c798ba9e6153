"""Fixtures: an inventory file, the real app served on 127.0.0.1 through pytest-aiohttp, and a
store on each backend (SQLite in a temporary folder, a throwaway PostgreSQL cluster)."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
import uvloop
from aiohttp.test_utils import TestClient

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.store import Store, StoreSettings, open_store
from tests.helpers import FIXED_NOW, INVENTORY_CSV, config, make_settings
from tests.postgres import postgres_cluster

AppClient = Callable[..., Awaitable[TestClient[Any, Any]]]

ON_BOTH_LOOPS = frozenset({"test_listener.py", "test_tls.py", "test_watchdog.py"})
"""Test modules run on asyncio's loop and on uvloop, the one `serve` runs on by default: the
listener's socket handling (the connection cap, TLS handshakes) and the watchdog depend on how a
loop owns sockets and schedules callbacks. Every other in-process test runs on asyncio; the
tests that start `serve` itself run on its default."""


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops an async test runs on (pytest-asyncio's hook)."""
    del config
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if item.path.name in ON_BOTH_LOOPS:
        loops["uvloop"] = uvloop.new_event_loop
    return loops


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """A CSV inventory with managed, unmanaged, lost and UDID-only devices."""
    path = tmp_path / "inventory.csv"
    path.write_text(INVENTORY_CSV, encoding="utf-8")
    return path


@pytest.fixture
def app_client(aiohttp_client: Any, inventory: Path) -> AppClient:
    """Start the app for a config mapping (default: the test inventory) with a fixed clock."""

    async def start(mapping: dict[str, Any] | None = None, **kwargs: Any) -> TestClient[Any, Any]:
        settings = make_settings(mapping or config(inventory, **kwargs))
        app = create_app(settings, clock=lambda: FIXED_NOW)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        # Providers start in the background; tests begin after their first attempt.
        await asyncio.wait_for(app[PROVIDERS_STARTED].wait(), timeout=30)
        return client

    return start


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the whole run."""
    with postgres_cluster() as url:
        yield url


async def _fresh_postgres(url: str) -> str:
    """A new empty database on the shared cluster (tests never see each other's rows)."""
    name = f"t{uuid.uuid4().hex}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """Store settings for a fresh database of each backend."""
    if request.param == "sqlite":
        return StoreSettings(path=tmp_path / "store.sqlite3")
    url = await _fresh_postgres(request.getfixturevalue("postgres_url"))
    return StoreSettings(backend="postgresql", url=url)


@pytest.fixture
async def store(store_settings: StoreSettings) -> AsyncIterator[Store]:
    """An open, migrated store."""
    opened = await open_store(store_settings)
    yield opened
    await opened.aclose()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """CLI commands configure structlog and stdlib logging for the process; undo that after."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def default_sighup() -> Iterator[None]:
    """Every test starts and ends with SIGHUP's default action: an app's reloader leaves it
    ignored after its shutdown (as `serve` wants), and processes a test starts would inherit
    that."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
