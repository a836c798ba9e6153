"""Fixtures: an inventory file, and the real app served on 127.0.0.1 through pytest-aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from connector import create_app
from connector.app import PROVIDERS_STARTED
from tests.helpers import FIXED_NOW, INVENTORY_CSV, config, make_settings

AppClient = Callable[..., Awaitable[TestClient[Any, Any]]]


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
