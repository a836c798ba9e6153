"""Starting the service with its admin page, and filling its audit log with real decisions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.persistence import PERSISTENCE
from connector.sidecars import SIDE_LISTENERS
from tests.helpers import (
    AUTH_ID,
    FIXED_NOW,
    authorize,
    config,
    enrich,
    make_settings,
    signed,
    webhook,
)

TOKEN = "admin-token-0123456789abcdef"
MANAGED = {"managed": True}
HOSTILE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Admin:
    """The running service, and where its admin page listens."""

    service: TestClient[Any, Any]
    app: web.Application
    url: str


def admin_config(inventory: Path, **admin: Any) -> dict[str, Any]:
    """A config with the admin page on a free loopback port."""
    return config(
        inventory,
        webhooks=[
            webhook(policy=MANAGED),
            webhook("gate", "AUTHORIZING", policy=MANAGED, mode="shadow"),
        ],
        admin={"enabled": True, "listen": "127.0.0.1:0", "token": TOKEN, **admin},
    )


async def start_admin(aiohttp_client: Any, mapping: dict[str, Any]) -> Admin:
    """The app for `mapping`, once its providers started and its store is ready."""
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    service: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    host, port = app[SIDE_LISTENERS]["admin"].addresses[0]
    return Admin(service, app, f"http://{host}:{port}")


async def decide_some(admin: Admin) -> None:
    """An allow, denials for three reasons, a shadow would-deny; then wait for the audit log."""
    persistence = admin.app[PERSISTENCE]
    written = persistence.audit.written
    for identifier in ("C02TEST00001", "C02TEST00002", "C02NOTHERE99", HOSTILE):
        body = enrich(identifier)
        await admin.service.post(
            "/webhooks/people",
            data=body,
            headers={**signed(body), "X-Request-Id": f"req-{identifier[:6]}"},
            skip_auto_headers=["Content-Type"],
        )
    body = authorize("C02TEST00002")
    await admin.service.post(
        "/webhooks/gate",
        data=body,
        headers=signed(body, webhook_id=AUTH_ID),
        skip_auto_headers=["Content-Type"],
    )
    await audit_written(admin, written + 5)


async def audit_written(admin: Admin, count: int) -> None:
    """Wait until the audit writer has written `count` entries since start."""
    audit = admin.app[PERSISTENCE].audit
    deadline = time.monotonic() + 10
    while audit.written < count:
        assert time.monotonic() < deadline, f"{audit.written} audit entries, not {count}"
        await asyncio.sleep(0.02)
