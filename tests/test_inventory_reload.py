"""A change a file inventory has loaded decides the very next call: no cache sits in between."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from connector.keys import PROVIDERS
from providers.files import FileProvider
from tests.conftest import AppClient
from tests.helpers import INVENTORY_CSV, config, enrich, signed, webhook

LOST_POLICY = {"groups": {"none_of": ["Lost or Stolen"]}}
ONE = "C02TEST00001,,MBP-ONE,MacBook Pro,macOS,15.3.2,true,true,company,2026-11-20T09:26:41Z"
NEW = "C02NEW000001,,MBP-NEW,MacBook Pro,macOS,15.3.2,true,true,company,2026-11-21T09:00:00Z,,,,,,"


async def _answer(client: TestClient[Any, Any], identifier: str) -> dict[str, Any]:
    body = enrich(identifier)
    response = await client.post("/webhooks/people", data=body, headers=signed(body))
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


def _write(inventory: Path, text: str) -> None:
    before = inventory.stat().st_mtime_ns
    inventory.write_text(text, encoding="utf-8")
    os.utime(inventory, ns=(before + 10**9, before + 10**9))  # a new version even on coarse clocks


def _provider(client: TestClient[Any, Any]) -> FileProvider:
    assert client.app is not None
    provider = client.app[PROVIDERS]["inventory"]
    assert isinstance(provider, FileProvider)
    return provider


async def _rewrite(client: TestClient[Any, Any], inventory: Path, text: str) -> None:
    """Write the new inventory and have the running provider load it (what its watcher does:
    the poll that sees the change finds it unchanged a moment later and loads it)."""
    _write(inventory, text)
    assert await _provider(client).reload() is True


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda line: "", "device-not-found"),
        (lambda line: line.replace("true,true,company", "false,true,company"), "device-unmanaged"),
        (lambda line: line.replace("All Managed;MDA Pilot", "Lost or Stolen"), "group-forbidden"),
    ],
    ids=["removed", "unmanaged", "lost-or-stolen"],
)
async def test_a_device_taken_out_of_the_inventory_is_denied_at_once(
    app_client: AppClient, inventory: Path, edit: Any, code: str
) -> None:
    """Removing a device, marking it unmanaged or lost in the file denies its very next call."""
    client = await app_client(config(inventory, webhooks=[webhook(policy=LOST_POLICY)]))
    assert (await _answer(client, "C02TEST00001"))["allow"] is True
    lines = INVENTORY_CSV.splitlines(keepends=True)
    edited = [edit(line) if line.startswith(ONE) else line for line in lines]
    await _rewrite(client, inventory, "".join(edited))
    answer = await _answer(client, "C02TEST00001")
    assert (answer["allow"], answer.get("error", {}).get("code")) == (False, code)


async def test_a_device_added_to_the_inventory_is_allowed_at_once(
    app_client: AppClient, inventory: Path
) -> None:
    """A device the file did not know is allowed on the first call after the file adds it."""
    client = await app_client()
    refused = await _answer(client, "C02NEW000001")
    assert (refused["allow"], refused["error"]["code"]) == (False, "device-not-found")
    await _rewrite(client, inventory, INVENTORY_CSV + NEW + "\n")
    assert (await _answer(client, "C02NEW000001"))["allow"] is True


async def test_an_inventory_replaced_before_every_check_still_decides(
    app_client: AppClient, inventory: Path
) -> None:
    """An exporter that renames a fresh copy over the file more often than the provider checks
    it (the same content each time) does not keep a revocation out: the next check loads it."""
    client = await app_client(config(inventory, webhooks=[webhook(policy=LOST_POLICY)]))
    assert (await _answer(client, "C02TEST00001"))["allow"] is True
    revoked = INVENTORY_CSV.replace(ONE, ONE.replace("true,true,company", "false,true,company"))
    staged = inventory.with_name(inventory.name + ".tmp")
    for _ in range(2):  # a new inode before each check
        staged.write_text(revoked, encoding="utf-8")
        staged.replace(inventory)
        assert await _provider(client).reload() is True
    answer = await _answer(client, "C02TEST00001")
    assert (answer["allow"], answer.get("error", {}).get("code")) == (False, "device-unmanaged")
