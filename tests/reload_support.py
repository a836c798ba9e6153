"""A served app and the reloader SIGHUP would run, over a config file the test rewrites."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.persistence import PERSISTENCE
from connector.reload import ConfigReloader
from connector.scep.runtime import SCEP, ScepRuntime
from connector.settings import load_settings
from tests.helpers import FIXED_NOW


def _toml(value: Any) -> str:
    """`value` as an inline TOML value (JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def write_config(path: Path, mapping: dict[str, Any]) -> None:
    """Write a config mapping as the TOML file the service reads."""
    path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in mapping.items()))


@dataclass
class Served:
    """The app serving a config file, and the reloader SIGHUP would run."""

    client: TestClient[Any, Any]
    app: web.Application
    path: Path
    reloader: ConfigReloader

    async def reload(self, mapping: dict[str, Any]) -> bool:
        """Rewrite the config file, then reload it."""
        write_config(self.path, mapping)
        return await self.reloader.reload()

    @property
    def scep(self) -> ScepRuntime:
        """The SCEP runtime in use."""
        return self.app[SCEP].runtime


Serve = Callable[[dict[str, Any]], Coroutine[Any, Any, Served]]


@pytest.fixture
def serve(aiohttp_client: Any, tmp_path: Path) -> Serve:
    """Start the app from a config file, with the reloader wired as `reload_on_sighup` does."""

    async def started(mapping: dict[str, Any]) -> Served:
        path = tmp_path / "connector.toml"
        write_config(path, mapping)
        settings = load_settings(path)
        app = create_app(settings, clock=lambda: FIXED_NOW)
        reloader = ConfigReloader(app, settings, path)
        app.cleanup_ctx.append(reloader.ctx)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        await app[PROVIDERS_STARTED].wait()
        await app[PERSISTENCE].store.wait_ready()
        return Served(client, app, path, reloader)

    return started
