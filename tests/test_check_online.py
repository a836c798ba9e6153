"""`check-config --online`: providers started against the fakes (credentials, permissions, one
harmless lookup), inventory files loaded row by row, TLS files read, webhook ids and secrets
judged; exit 3 when a check fails."""

from __future__ import annotations

import asyncio
import base64
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.checks import PROBE_SERIAL, CheckResult, online_checks
from tests.fakes.graph import FakeGraph, Fault
from tests.fakes.graph import create_app as graph_app
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.helpers import INVENTORY_CSV, config, make_settings, webhook
from tests.pki import TestCA

FAKES = Path(__file__).parent / "fakes"
TENANT = "8a7f3c2e-1b4d-4e6f-9a0b-2c3d4e5f6a7b"
GRAPH_CLIENT = "5d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"


def _jamf(url: str, secret: str | None = None) -> dict[str, Any]:
    return {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": secret or "fake-secret",
        "retries": 0,
    }


def _intune(url: str, secret: str | None = None) -> dict[str, Any]:
    return {
        "kind": "intune",
        "tenant_id": TENANT,
        "client_id": GRAPH_CLIENT,
        "client_secret": secret or "fake-graph-client-secret",
        "authority_host": url,
        "graph_host": url,
        "retries": 0,
    }


def _provider_result(results: list[CheckResult], name: str) -> CheckResult:
    [result] = [r for r in results if r.subject == f"provider {name}"]
    return result


async def _check(inventory: Path, providers: dict[str, dict[str, Any]]) -> list[CheckResult]:
    settings = make_settings(
        config(
            inventory,
            providers=providers,
            webhooks=[webhook(providers=tuple(providers))],
        )
    )
    return await online_checks(settings)


@pytest.fixture
def jamf() -> FakeJamf:
    return FakeJamf.from_file(FAKES / "jamf_devices.json")


@pytest.fixture
async def jamf_url(aiohttp_server: Any, jamf: FakeJamf) -> str:
    server = await aiohttp_server(jamf_app(jamf))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph.from_file(FAKES / "graph_devices.json")


@pytest.fixture
async def graph_url(aiohttp_server: Any, graph: FakeGraph) -> str:
    server = await aiohttp_server(graph_app(graph))
    return str(server.make_url("")).rstrip("/")


async def test_jamf_with_good_credentials_passes(
    inventory: Path, jamf: FakeJamf, jamf_url: str
) -> None:
    """A Jamf API client the server accepts passes, after a token and one harmless lookup."""
    result = _provider_result(await _check(inventory, {"jamf": _jamf(jamf_url)}), "jamf")
    assert (result.status, result.detail) == ("ok", "jamf: started and answered a lookup")
    searched = [r for r in jamf.requests if PROBE_SERIAL in str(r)]
    assert searched, "the probe serial was looked up"


async def test_jamf_refusing_the_client_secret_fails_with_its_answer(
    inventory: Path, jamf_url: str
) -> None:
    """A wrong client secret fails with what Jamf answered, and never shows the secret."""
    result = _provider_result(
        await _check(inventory, {"jamf": _jamf(jamf_url, "wrong-secret")}), "jamf"
    )
    assert result.status == "fail"
    assert "401" in result.detail
    assert "wrong-secret" not in result.detail


async def test_jamf_without_permission_for_mobile_devices_fails(
    inventory: Path, jamf: FakeJamf, jamf_url: str
) -> None:
    """A token that may not read mobile devices fails the probe lookup with the 403."""
    jamf.inject("html403", path="/api/v2/mobile-devices", times=None)
    result = _provider_result(await _check(inventory, {"jamf": _jamf(jamf_url)}), "jamf")
    assert result.status == "fail"
    assert "403" in result.detail


async def test_intune_with_good_credentials_passes(inventory: Path, graph_url: str) -> None:
    """An app registration Entra accepts and Graph lets read managed devices passes."""
    result = _provider_result(await _check(inventory, {"intune": _intune(graph_url)}), "intune")
    assert result.status == "ok"


async def test_intune_refusing_the_secret_fails_with_the_aadsts_text(
    inventory: Path, graph_url: str
) -> None:
    """A wrong client secret fails with Entra's own error (AADSTS7000215)."""
    result = _provider_result(
        await _check(inventory, {"intune": _intune(graph_url, "wrong-secret")}), "intune"
    )
    assert result.status == "fail"
    assert "AADSTS7000215" in result.detail
    assert "wrong-secret" not in result.detail


async def test_intune_without_the_graph_permission_fails_with_graphs_text(
    inventory: Path, graph: FakeGraph, graph_url: str
) -> None:
    """A token without DeviceManagementManagedDevices.Read.All fails the probe lookup with
    Graph's 403 Authorization_RequestDenied, which start (a token only) cannot see."""
    graph.faults.append(Fault(403, path="/deviceManagement/managedDevices"))
    result = _provider_result(await _check(inventory, {"intune": _intune(graph_url)}), "intune")
    assert result.status == "fail"
    assert "Authorization_RequestDenied" in result.detail


async def test_a_csv_with_a_bad_row_fails_with_its_line(tmp_path: Path) -> None:
    """The whole file is loaded with the real loader; a bad row is reported with its line."""
    path = tmp_path / "inventory.csv"
    path.write_text(INVENTORY_CSV + "C02BROKEN001,,,,,,maybe\n", encoding="utf-8")
    results = await _check(path, {"inventory": {"kind": "csv", "path": str(path)}})
    result = _provider_result(results, "inventory")
    assert result.status == "fail"
    assert result.detail.startswith(f"{path}:6: managed: ")


async def test_a_good_csv_reports_its_device_count(inventory: Path) -> None:
    """A file that loads passes and says how many devices it holds."""
    result = _provider_result(
        await _check(inventory, {"inventory": {"kind": "csv", "path": str(inventory)}}), "inventory"
    )
    assert (result.status, result.detail) == (
        "ok",
        "csv: loaded 4 devices, started and answered a lookup",
    )


@pytest.mark.parametrize(
    ("shift", "status", "words"),
    [
        (timedelta(0), "ok", "h left"),
        (timedelta(hours=20), "warn", "is its renewal running?"),
        (timedelta(days=2), "fail", "expired"),
        (timedelta(hours=-1), "fail", "not valid before"),
    ],
    ids=["valid", "expiring", "expired", "not-yet-valid"],
)
async def test_the_tls_certificate_is_judged_by_its_dates(
    tmp_path: Path, inventory: Path, shift: timedelta, status: str, words: str
) -> None:
    """The listener's certificate passes while valid, warns in its last 8 hours, fails outside."""
    ca = TestCA(tmp_path / "pki")
    leaf = ca.issue("server", dns_names=("connector.example.com",))
    settings = make_settings(
        config(
            inventory,
            server={"plain_http": False, "tls_cert": str(leaf.cert), "tls_key": str(leaf.key)},
        )
    )
    results = await online_checks(settings, now=datetime.now(UTC) + shift)
    [tls] = [r for r in results if r.subject == "tls server.tls_cert"]
    assert tls.status == status
    assert tls.detail.startswith("connector.example.com")
    assert words in tls.detail


async def test_webhook_ids_and_secrets_are_compared_with_step_cas(inventory: Path) -> None:
    """An id that is not a UUID and a secret that is not 64 bytes warn; step-ca's shapes pass."""
    short = base64.b64encode(b"sixteen byte key").decode()
    settings = make_settings(
        config(
            inventory,
            webhooks=[
                webhook(),
                webhook("gate", "AUTHORIZING", webhook_id="gate-1"),
                webhook("third", "AUTHORIZING", path="/x", secret=short),
            ],
        )
    )
    results = {r.subject: r for r in await online_checks(settings)}
    assert results["webhook people"].status == "ok"
    assert (results["webhook gate"].status, results["webhook gate"].detail) == (
        "warn",
        "id 'gate-1' is not a step-ca UUID",
    )
    assert results["webhook third"].status == "warn"
    assert "decodes to 16 bytes; step-ca's are 64" in results["webhook third"].detail


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _write_config(tmp_path: Path, providers: str) -> Path:
    (tmp_path / "people.secret").write_text(base64.b64encode(bytes(64)).decode())
    path = tmp_path / "connector.toml"
    path.write_text(
        f"""
[server]
plain_http = true

[store]
path = "store.sqlite3"

{providers}

[[webhooks]]
name = "people"
kind = "ENRICHING"
path = "/webhooks/people"
id = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
secret = {{ file = "people.secret" }}
providers = ["jamf"]
""",
        encoding="utf-8",
    )
    return path


async def test_cli_online_exits_0_when_every_check_passes(tmp_path: Path, jamf_url: str) -> None:
    """`check-config --online` prints one line per check and exits 0 when none fails."""
    table = f'[providers.jamf]\nkind = "jamf"\nurl = "{jamf_url}"\nclient_id = "posture-connector"\nclient_secret = "fake-secret"'
    code, out, err = await _cli(
        "check-config", "--online", "--config", str(_write_config(tmp_path, table))
    )
    assert code == 0, out + err
    assert out.split("online checks:\n")[1].splitlines() == [
        "  ok    tls: plain_http: a proxy in front terminates TLS",
        "  ok    provider jamf: jamf: started and answered a lookup",
        "  ok    webhook people: id and secret look like step-ca's",
    ]


async def test_cli_online_exits_3_when_a_check_fails(tmp_path: Path, jamf_url: str) -> None:
    """A failed online check exits 3 with a FAIL line; the offline summary still says OK."""
    table = f'[providers.jamf]\nkind = "jamf"\nurl = "{jamf_url}"\nclient_id = "posture-connector"\nclient_secret = "nope"'
    path = _write_config(tmp_path, table)
    code, out, err = await _cli("check-config", "--online", "--config", str(path))
    assert code == 3, out + err
    assert out.startswith(f"{path}: OK\n")
    assert "  FAIL  provider jamf: " in out
    assert "nope" not in out + err


async def test_cli_online_does_not_run_on_a_broken_config(tmp_path: Path) -> None:
    """A config with problems exits 2 with the problems and starts nothing."""
    path = _write_config(tmp_path, '[providers.jamf]\nkind = "jamf"')
    code, out, err = await _cli("check-config", "--online", "--config", str(path))
    assert code == 2
    assert "online checks" not in out
    assert "providers.jamf.url: Field required" in err
