"""What the Kandji, Mosyle and Fleet tests share: one provider behind both webhooks, signed
calls, the readiness check, an example config run through the `lookup` command, and one sync
into a SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.store import StoreSettings, open_store
from connector.sync import Syncer, device_key
from providers.base import DeviceLister, DeviceRecord
from providers.identifiers import classify
from providers.sync_options import SyncOptions
from tests.fakes._upstream import FakeUpstream
from tests.helpers import AUTH_ID, FIXED_NOW, authorize, config, enrich, make_settings, signed
from tests.helpers import webhook as webhook_table

PEOPLE = "/webhooks/people"
GATE = "/webhooks/gate"
EXAMPLES = Path(__file__).parent.parent / "examples"


def provider_config(name: str, table: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """A service config: provider `name` behind an ENRICHING and an AUTHORIZING webhook."""
    return config(
        Path("unused.csv"),
        providers={name: table},
        webhooks=[
            webhook_table(providers=(name,), policy=policy),
            webhook_table("gate", "AUTHORIZING", providers=(name,), policy=policy),
        ],
    )


async def start_service(aiohttp_client: Any, mapping: dict[str, Any]) -> TestClient[Any, Any]:
    """The real app for `mapping`, once every provider had its first start attempt."""
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    return client


async def call(
    client: TestClient[Any, Any], identifier: str, *, path: str = PEOPLE
) -> dict[str, Any]:
    """Send a signed step-ca request and return the JSON answer (always HTTP 200)."""
    body = enrich(identifier) if path == PEOPLE else authorize(identifier)
    headers = signed(body) if path == PEOPLE else signed(body, webhook_id=AUTH_ID)
    response = await client.post(
        path, data=body, headers=headers, skip_auto_headers=["Content-Type"]
    )
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def readiness(
    aiohttp_client: Any, mapping: dict[str, Any]
) -> tuple[int, dict[str, Any], str]:
    """``/readyz``'s status and JSON for `mapping`, and every log event of the run as text."""
    with capture_logs() as logs:
        client = await start_service(aiohttp_client, mapping)
        response = await client.get("/readyz")
        body: dict[str, Any] = await response.json()
    return response.status, body, repr(logs)


async def assert_denied(client: TestClient[Any, Any], identifier: str, code: str) -> None:
    """The people webhook denies `identifier` with reason `code`."""
    answer = await call(client, identifier)
    assert (answer["allow"], answer["error"]["code"]) == (False, code)


async def assert_fails_closed_until_cleared(
    client: TestClient[Any, Any], fake: FakeUpstream, identifier: str
) -> None:
    """While `fake` fails, `identifier` is denied (inventory-unavailable); once its faults are
    cleared, allowed again."""
    await assert_denied(client, identifier, "inventory-unavailable")
    fake.clear_faults()
    assert (await call(client, identifier))["allow"] is True


async def assert_not_ready_without_secret(
    aiohttp_client: Any, name: str, table: dict[str, Any], policy: dict[str, Any], secret: str
) -> None:
    """With the credential in `table` refused, /readyz answers 503 for provider `name` and no
    log event carries `secret`."""
    status, body, logs = await readiness(aiohttp_client, provider_config(name, table, policy))
    assert (status, body["providers"]) == (503, {name: False})
    assert secret not in logs


def example_config(tmp_path: Path, name: str, fake_url: str, url: str) -> Path:
    """``examples/NAME.toml`` pointed at `url` instead of `fake_url`, runnable from `tmp_path`."""
    example = EXAMPLES / f"{name}.toml"
    text = example.read_text(encoding="utf-8").replace(fake_url, url)
    for secret in ("quickstart.secret", "quickstart-gate.secret"):
        path = (EXAMPLES / secret).resolve()
        text = text.replace(f'{{ file = "{secret}" }}', f'{{ file = "{path}" }}')
    text = text.replace("dev_certificate = true", "plain_http = true")
    config_path = tmp_path / f"{name}.toml"
    config_path.write_text(text, encoding="utf-8")
    return config_path


async def cli_lookup(
    config_path: Path, identifier: str, env: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """``posture-connector lookup --webhook people IDENTIFIER``: exit code and JSON output."""
    cli = Path(sys.executable).parent / "posture-connector"
    process = await asyncio.create_subprocess_exec(
        str(cli),
        "lookup",
        "--json",
        "--config",
        str(config_path),
        "--webhook",
        "people",
        identifier,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    assert out, err.decode()
    return process.returncode, json.loads(out)


async def cli_allowed_and_denied(
    config_path: Path, env: dict[str, str], allowed: str, denied: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``lookup`` for an identifier it allows (exit 0) and one it denies (non-zero), at once;
    both replies."""
    (ok_code, ok), (no_code, no) = await asyncio.gather(
        cli_lookup(config_path, allowed, env), cli_lookup(config_path, denied, env)
    )
    assert ok_code == 0, ok
    assert no_code != 0, no
    return ok["reply"], no["reply"]


async def sync_and_find(
    name: str, lister: DeviceLister, tmp_path: Path, key: str
) -> tuple[int, DeviceRecord | None]:
    """Sync `lister` into a fresh SQLite store: the devices stored, and the record for `key`."""
    codec: TypeAdapter[DeviceRecord] = TypeAdapter(DeviceRecord)
    store = await open_store(StoreSettings(path=tmp_path / "store.sqlite3"))
    try:
        options = SyncOptions(mode="sync", sync_interval=60, max_staleness=600)
        syncer = Syncer(name, lister, options, store, replica="a", encode=codec.dump_json)
        generation = await syncer.sync()
        identifier = classify(key)
        found = await store.find_device(name, device_key(identifier.kind, identifier.normalized))
    finally:
        await store.aclose()
    return generation.devices, None if found is None else codec.validate_json(found.payload)
