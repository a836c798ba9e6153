"""Shared test helpers: config mappings, and requests signed the way step-ca signs them."""

from __future__ import annotations

import base64
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector import stepca
from connector.settings import Settings, settings_from_mapping

SECRET = base64.b64encode(bytes(range(64))).decode()
ENRICH_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
AUTH_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
FIXED_NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)

INVENTORY_CSV = """\
serial,udid,name,model,platform,os_version,managed,supervised,owner_type,last_contact,username,email,full_name,department,title,groups
C02TEST00001,,MBP-ONE,MacBook Pro,macOS,15.3.2,true,true,company,2026-11-20T09:26:41Z,asharma,anika@example.com,Anika Sharma,Platform,SRE,All Managed;MDA Pilot
C02TEST00002,,MBA-TWO,MacBook Air,macOS,14.7,false,false,company,2026-10-01T12:00:00Z,,,,,,Loaners
C02TEST00003,,MBP-LOST,MacBook Pro,macOS,15.1,true,true,company,2026-11-01T12:00:00Z,lost,,,,,Lost or Stolen
,00008110-000A1C2E3F40801E,Bob's iPhone,iPhone 15 Pro,iOS,18.3.1,true,true,company,2026-11-21T07:12:09Z,bkim,bob@example.com,Bob Kim,Finance,Controller,Corporate iPhones
"""


def webhook(
    name: str = "people",
    kind: str = "ENRICHING",
    *,
    path: str | None = None,
    webhook_id: str | None = None,
    providers: tuple[str, ...] = ("inventory",),
    **extra: Any,
) -> dict[str, Any]:
    """One ``[[webhooks]]`` entry."""
    return {
        "name": name,
        "kind": kind,
        "path": path or f"/webhooks/{name}",
        "id": webhook_id or (ENRICH_ID if kind == "ENRICHING" else AUTH_ID),
        "secret": SECRET,
        "providers": list(providers),
        **extra,
    }


def config(
    inventory: Path,
    *,
    webhooks: list[dict[str, Any]] | None = None,
    providers: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A whole config mapping around a CSV inventory file."""
    return {
        "server": {"plain_http": True, **sections.pop("server", {})},
        "providers": providers
        or {"inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0}},
        "webhooks": webhooks or [webhook(), webhook("gate", "AUTHORIZING")],
        **sections,
    }


def make_settings(mapping: dict[str, Any]) -> Settings:
    """Validate a mapping as the service would; without a ``[store]`` table, the SQLite store
    goes to a fresh temporary folder (never the working directory)."""
    if "store" not in mapping:
        folder = tempfile.mkdtemp(prefix="posture-test-store-")
        mapping = {**mapping, "store": {"path": f"{folder}/store.sqlite3"}}
    return settings_from_mapping(mapping, source="<test>")


def signed(
    body: bytes,
    *,
    webhook_id: str = ENRICH_ID,
    secret: str = SECRET,
    **kwargs: Any,
) -> dict[str, str]:
    """Headers step-ca would send with `body`."""
    return stepca.headers_for(body, webhook_id=webhook_id, secret_b64=secret, **kwargs)


def enrich(identifier: str | None, *, now: datetime = FIXED_NOW, **kwargs: Any) -> bytes:
    """An ENRICHING body timestamped `now`."""
    return stepca.enriching_body(identifier, timestamp=now, **kwargs)


def authorize(identifier: str | None, *, now: datetime = FIXED_NOW) -> bytes:
    """An AUTHORIZING body timestamped `now`."""
    return stepca.authorizing_body(identifier, timestamp=now)


WORKSPACE_ONE = {
    "kind": "workspaceone",
    "url": "https://as1.awmdm.com",
    "token_url": "na",
    "client_id": "c",
    "client_secret": "s",
}
"""A Workspace ONE provider's settings that load (config checks; nothing is called)."""
