"""A reload (SIGHUP) applies credential files replaced in place, and says what needs a restart.

Certificates, keys, service-account files and CA bundles are read when a provider starts and
kept. A rotation that rewrites the file under the same name (cert-manager, a mounted Kubernetes
secret, ``mv new.pem jamf-ca.pem``) leaves the config table equal; the reloader compares the
files' contents too, and rebuilds the provider.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from structlog.testing import capture_logs

from connector import create_app
from connector.keys import PROVIDERS
from connector.reload import plan_reload, reload_on_sighup
from providers.identifiers import classify
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.helpers import config, make_settings, webhook
from tests.pki import TestCA
from tests.reload_support import Serve, serve  # noqa: F401 - the in-process reloader fixture

JAMF_DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
MAC = "C02FK3Q7MD6T"


async def test_a_ca_bundle_rewritten_in_place_rebuilds_its_provider(
    serve: Serve,  # noqa: F811 - the fixture imported above
    aiohttp_server: Any,
    inventory: Path,
    tmp_path: Path,
) -> None:
    """Jamf moves to a certificate from another CA and the bundle file is rewritten under the
    same name: the reload builds Jamf anew, which trusts the new CA; a reload with nothing
    changed keeps the running provider."""
    first, second = TestCA(tmp_path / "a", "first CA"), TestCA(tmp_path / "b", "second CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = first.issue("jamf", ip="127.0.0.1")
    context.load_cert_chain(leaf.cert, leaf.key)
    server = await aiohttp_server(jamf_app(FakeJamf.from_file(JAMF_DEVICES)), ssl=context)
    bundle = tmp_path / "jamf-ca.pem"
    shutil.copy(first.cert_path, bundle)
    jamf = {
        "kind": "jamf",
        "url": f"https://127.0.0.1:{server.port}",
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "ca_bundle": str(bundle),
    }
    mapping = config(
        inventory,
        providers={"jamf": jamf},
        webhooks=[webhook(providers=("jamf",))],
        store={"path": str(tmp_path / "store.sqlite3")},
    )
    served = await serve(mapping)
    running = served.app[PROVIDERS]["jamf"]
    assert await served.reload(mapping)
    assert served.app[PROVIDERS]["jamf"] is running  # nothing changed: kept

    rotated = second.issue("jamf", ip="127.0.0.1")
    context.load_cert_chain(rotated.cert, rotated.key)  # new handshakes get the second CA's
    shutil.copy(second.cert_path, bundle)  # rewritten under the same name
    with capture_logs() as logs:
        assert await served.reload(mapping)

    rebuilt = served.app[PROVIDERS]["jamf"]
    assert rebuilt is not running
    assert await rebuilt.lookup(classify(MAC)) is not None  # a new connection, the new CA
    reloaded = next(e for e in logs if e["event"] == "config.reloaded")
    assert reloaded["providers_started"] == ["jamf"]


async def test_a_client_ca_bundle_rewritten_in_place_is_listed_for_a_restart(
    serve: Serve,  # noqa: F811 - the fixture imported above
    inventory: Path,
    tmp_path: Path,
) -> None:
    """The roots step-ca's client certificate must chain to are read once, at start: a bundle
    rewritten under the same name (a compromised root dropped) is not applied by a reload, and
    the reload must say so rather than report the config applied."""
    bundle = tmp_path / "client-ca.pem"
    shutil.copy(TestCA(tmp_path / "old", "old root").cert_path, bundle)
    server = {"plain_http": False, "dev_certificate": True, "client_ca": str(bundle)}
    mapping = config(inventory, server=server)
    served = await serve(mapping)
    with capture_logs() as logs:
        assert await served.reload(mapping) is True
        shutil.copy(TestCA(tmp_path / "new", "new root").cert_path, bundle)
        assert await served.reload(mapping) is True
    first, second = (e for e in logs if e["event"] == "config.reloaded")
    assert first["restart_required"] == []
    assert second["restart_required"] == ["server.client_ca (its file changed)"]


def test_sections_built_at_start_wait_for_a_restart(inventory: Path) -> None:
    """A changed admin token, metrics or tracing table is listed in restart_required, never
    reported as applied (the admin lock and the exporters are built once)."""
    store = {"path": str(inventory.with_name("store.sqlite3"))}
    started = make_settings(config(inventory, store=store))
    token = "a new admin token, long enough"
    new = make_settings(
        config(
            inventory,
            store=store,
            admin={"enabled": True, "token": token},
            metrics={"enabled": False},
        )
    )
    served = frozenset({"/webhooks/people", "/webhooks/gate"})
    plan = plan_reload(started, started.providers, new, served)
    assert plan.restart_required == ("metrics.enabled", "admin.enabled", "admin.token")


async def test_a_sighup_late_in_the_shutdown_does_not_end_the_process(
    inventory: Path, tmp_path: Path
) -> None:
    """The reload handler goes first at shutdown; SIGHUP then must not fall back to its default
    action (end the process) while the audit log's last writes and the closes still run."""
    settings = make_settings(config(inventory, store={"path": str(tmp_path / "s.sqlite3")}))
    config_path = tmp_path / "connector.toml"
    config_path.write_text("", encoding="utf-8")  # never read: no reload happens here
    app = create_app(settings)
    reload_on_sighup(app, settings, config_path)  # as `serve` does
    seen: list[object] = []

    async def last(_app: web.Application) -> AsyncIterator[None]:
        yield
        seen.append(signal.getsignal(signal.SIGHUP))  # where the audit log is flushed

    app.cleanup_ctx.insert(0, last)
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()
    assert seen == [signal.SIG_IGN]  # the conftest puts the default back after the test


async def test_a_ca_bundle_openssl_cannot_read_is_refused_before_anything_starts(
    serve: Serve,  # noqa: F811 - the fixture imported above
    inventory: Path,
    tmp_path: Path,
) -> None:
    """A CA bundle that is there but holds no certificate passed the checks, then failed the
    provider's build: `serve` crashed, and a reload left the providers it had started running.
    The checks read it: the reload is refused with the reason, and nothing it built runs on."""
    served = await serve(config(inventory))
    bundle = tmp_path / "jamf-ca.pem"
    bundle.write_text("not a certificate\n", encoding="utf-8")
    providers = {
        "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
        "second": {"kind": "csv", "path": str(inventory), "reload_interval": 1},
        "jamf": {
            "kind": "jamf",
            "url": "https://jamf.example.com",
            "client_id": "c",
            "client_secret": "s",
            "ca_bundle": str(bundle),
        },
    }
    hooks = [webhook(providers=("inventory", "second", "jamf"))]
    tasks = {task.get_name() for task in asyncio.all_tasks()}
    with capture_logs() as logs:
        assert await served.reload(config(inventory, providers=providers, webhooks=hooks)) is False
    [refused] = [e for e in logs if e["event"] == "config.reload_failed"]
    [problem] = refused["problems"]
    assert f"providers.jamf.ca_bundle: {bundle} holds no certificate OpenSSL reads (" in problem
    assert "second" not in served.app[PROVIDERS]
    assert {task.get_name() for task in asyncio.all_tasks()} - tasks == set()
