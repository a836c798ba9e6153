"""Config warnings: the config works, but an id or a shared secret is probably a mistake."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.checks import config_warnings
from connector.cli import EXIT_OK, main
from connector.settings import load_settings
from tests.helpers import AUTH_ID, ENRICH_ID, SECRET, WORKSPACE_ONE, config, make_settings, webhook

ROOT = Path(__file__).resolve().parent.parent
OTHER_SECRET = base64.b64encode(bytes(range(64, 128))).decode()


def two_webhooks(inventory: Path, **gate: Any) -> dict[str, Any]:
    """The test config with the gate webhook changed by `gate`."""
    hooks = [webhook(), webhook("gate", "AUTHORIZING", **{"secret": OTHER_SECRET, **gate})]
    return config(inventory, webhooks=hooks)


def test_distinct_secrets_and_step_ca_ids_give_no_warning(inventory: Path) -> None:
    """Each webhook with its own secret and a lowercase UUID id is silent."""
    assert config_warnings(make_settings(two_webhooks(inventory))) == []


@pytest.mark.parametrize(
    "webhook_id",
    [
        "people-gate",
        AUTH_ID.upper(),
        AUTH_ID.replace("-", ""),
        "{" + AUTH_ID + "}",
        "urn:uuid:" + AUTH_ID,
        AUTH_ID + " ",
    ],
    ids=["name", "uppercase", "no-hyphens", "braces", "urn", "trailing-space"],
)
def test_id_that_is_not_a_step_ca_uuid_is_a_warning(inventory: Path, webhook_id: str) -> None:
    """step-ca writes ids as lowercase 8-4-4-4-12 UUIDs; anything else is flagged by key path."""
    warnings = config_warnings(make_settings(two_webhooks(inventory, webhook_id=webhook_id)))
    assert len(warnings) == 1
    assert warnings[0].startswith("<test>: webhooks[1].id: not a UUID as step-ca writes it")


def test_shared_secret_is_a_warning_that_explains_the_replay(inventory: Path) -> None:
    """Two webhooks with one secret are flagged once, naming both, never quoting the secret."""
    hooks = [webhook(), webhook("gate", "AUTHORIZING"), webhook("audit", "AUTHORIZING",
             path="/webhooks/audit", webhook_id="0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
             secret=OTHER_SECRET)]  # fmt: skip
    warnings = config_warnings(make_settings(config(inventory, webhooks=hooks)))
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.startswith("<test>: webhooks[1].secret: the same secret as webhooks[0] (people)")
    assert "ENRICHING body replayed to the AUTHORIZING path" in warning
    assert SECRET not in warning
    assert SECRET[:12] not in warning


def test_ca_json_webhooks_sharing_the_empty_key_are_not_flagged(
    inventory: Path, tmp_path: Path
) -> None:
    """ca.json webhooks all sign with the empty key (step-ca gives no choice); mTLS guards them."""
    client_ca = tmp_path / "ca.crt"
    client_ca.write_text("unused by the warnings", encoding="utf-8")
    hooks = [
        webhook(secret="", require_client_cert=True),
        webhook("gate", "AUTHORIZING", secret="", require_client_cert=True),
    ]
    mapping = config(inventory, webhooks=hooks)
    mapping["server"] = {
        "dev_certificate": True,
        "client_ca": str(client_ca),
        "client_dns_names": ["step-ca.example.com"],
    }
    assert config_warnings(make_settings(mapping)) == []


def test_ca_json_webhooks_without_a_pinned_client_name_are_warned(
    inventory: Path, tmp_path: Path
) -> None:
    """Without client_dns_names, any certificate client_ca issued (a device's own) passes as
    step-ca's for a webhook with the empty key: each such webhook is named."""
    client_ca = tmp_path / "ca.crt"
    client_ca.write_text("unused by the warnings", encoding="utf-8")
    hooks = [webhook(secret="", require_client_cert=True), webhook("gate", "AUTHORIZING")]
    mapping = config(inventory, webhooks=hooks)
    mapping["server"] = {"dev_certificate": True, "client_ca": str(client_ca)}
    (warning,) = config_warnings(make_settings(mapping))
    assert warning.startswith("<test>: webhooks[0].secret: empty (a ca.json webhook) while ")
    assert "a device's own included" in warning


EXAMPLES = [
    "quickstart.toml",
    "jamf.toml",
    "intune.toml",
    "workspaceone.toml",
    "google.toml",
    "abm.toml",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_examples_have_no_warnings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example configs give each webhook its own secret and a step-ca id."""
    monkeypatch.setenv("JAMF_CLIENT_SECRET", "unused")
    monkeypatch.setenv("INTUNE_CLIENT_SECRET", "unused")
    monkeypatch.setenv("WS1_CLIENT_SECRET", "unused")
    warnings = config_warnings(load_settings(ROOT / "examples" / name))
    # jamf.toml accepts UDIDs on purpose (iPhones by UDID); its Mac warning is tested below.
    assert [w for w in warnings if ".identifier_kinds:" not in w] == []
    if name != "jamf.toml":
        assert warnings == []


def test_jamf_example_is_warned_that_macs_are_not_found_by_udid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both Jamf example webhooks accept UDIDs Jamf cannot match for a Mac: one warning each."""
    monkeypatch.setenv("JAMF_CLIENT_SECRET", "unused")
    warnings = config_warnings(load_settings(ROOT / "examples" / "jamf.toml"))
    assert [w.split(": ")[1] for w in warnings] == [
        "webhooks[0].identifier_kinds",
        "webhooks[1].identifier_kinds",
    ]


def _providers(inventory: Path) -> dict[str, Any]:
    return {
        "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
        "jamf": {
            "kind": "jamf",
            "url": "https://example.jamfcloud.com",
            "client_id": "c",
            "client_secret": "s",
        },
        "ws1": WORKSPACE_ONE,
    }


@pytest.mark.parametrize(
    ("providers", "kinds", "warned"),
    [
        (("jamf",), ["serial", "udid"], True),
        (("ws1", "jamf"), ["udid"], True),
        (("jamf", "inventory"), ["serial", "udid"], False),
        (("inventory",), ["serial", "udid"], False),
        (("jamf",), ["serial"], False),
    ],
    ids=["mdm-only", "two-mdms", "file-beside", "file-only", "serial-only"],
)
def test_udid_webhook_without_a_provider_for_mac_provisioning_udids_is_warned(
    inventory: Path, providers: tuple[str, ...], kinds: list[str], warned: bool
) -> None:
    """Accepting UDIDs warns unless some provider of the webhook can match a Mac's provisioning UDID."""
    hooks = [
        webhook(providers=providers, identifier_kinds=kinds),
        webhook("gate", "AUTHORIZING", providers=("inventory",), secret=OTHER_SECRET),
    ]
    mapping = config(inventory, webhooks=hooks, providers=_providers(inventory))
    warnings = config_warnings(make_settings(mapping))
    if not warned:
        assert warnings == []
        return
    (warning,) = warnings
    assert warning.startswith(
        f"<test>: webhooks[0].identifier_kinds: accepts udid, but none of its providers "
        f"({', '.join(providers)}) can match a Mac's provisioning UDID"
    )
    assert 'identifier_kinds = ["serial"]' in warning


def _write(tmp_path: Path, inventory: Path, port: int = 8443) -> Path:
    """A TOML config whose two webhooks share a secret and whose gate id is not a UUID."""
    path = tmp_path / "connector.toml"
    path.write_text(
        f"""
[server]
plain_http = true
port = {port}
drain_period = 0

[logging]
format = "json"

[providers.inventory]
kind = "csv"
path = "{inventory}"

[[webhooks]]
name = "people"
kind = "ENRICHING"
path = "/webhooks/people"
id = "{ENRICH_ID}"
secret = "{SECRET}"
providers = ["inventory"]

[[webhooks]]
name = "gate"
kind = "AUTHORIZING"
path = "/webhooks/gate"
id = "gate"
secret = "{SECRET}"
providers = ["inventory"]
""",
        encoding="utf-8",
    )
    return path


def test_check_config_prints_warnings_and_exits_0(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings go to stderr as `warning: ...` lines; the config is still OK (exit 0)."""
    path = _write(tmp_path, inventory)
    assert main(["check-config", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{path}: OK"
    lines = err.splitlines()
    assert [line.split(": ")[2] for line in lines] == ["webhooks[1].id", "webhooks[1].secret"]
    assert all(line.startswith(f"warning: {path}: ") for line in lines)
    assert SECRET not in err


def test_check_config_help_says_warnings_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config --help` tells scripts that warnings do not change the exit code."""
    with pytest.raises(SystemExit):
        main(["check-config", "--help"])
    assert "still exit 0" in " ".join(capsys.readouterr().out.split())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_logs_each_warning_once_at_start(tmp_path: Path, inventory: Path) -> None:
    """A `serve` process logs every warning as one `config.warning` event before it starts."""
    port = _free_port()
    path = _write(tmp_path, inventory, port)
    log = tmp_path / "serve.log"
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--config", str(path)],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _ready(port):
            assert process.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.05)
        for _ in range(3):  # traffic must not repeat the warnings
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    names = [event["event"] for event in events]
    warnings = [event for event in events if event["event"] == "config.warning"]
    assert [w["warning"].split(": ")[1] for w in warnings] == [
        "webhooks[1].id",
        "webhooks[1].secret",
    ]
    assert all(w["level"] == "warning" for w in warnings)
    assert names.index("config.warning") < names.index("service.started")
    assert SECRET not in log.read_text(encoding="utf-8")


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_budgets_that_cannot_fit_the_decision_budget_warn(inventory: Path) -> None:
    """Two providers of 5 s each behind one 8 s decision budget are a warning naming both."""
    jamf = {"kind": "jamf", "url": "https://example.jamfcloud.com", "client_id": "c",
            "client_secret": "s", "budget": 5}  # fmt: skip
    mapping = config(
        inventory,
        providers={"first": jamf, "second": jamf},
        webhooks=[webhook(providers=("first", "second"))],
    )
    [warning] = [w for w in config_warnings(make_settings(mapping)) if "decision_budget" in w]
    assert "first 5s + second 5s = 10s exceed server.decision_budget (8s)" in warning


def test_shadow_mode_is_a_warning(inventory: Path) -> None:
    """A webhook in shadow mode allows everyone: check-config says so."""
    mapping = config(inventory, webhooks=[webhook(mode="shadow")])
    assert any("mode: shadow" in w for w in config_warnings(make_settings(mapping)))


@pytest.mark.parametrize(
    ("smart_groups", "none_of", "warned"),
    [(False, ["Quarantine"], True), (True, ["Quarantine"], False), (False, None, False)],
    ids=["unread", "read", "no-none-of"],
)
def test_forbidding_groups_a_provider_does_not_read_is_warned(
    inventory: Path, smart_groups: bool, none_of: list[str] | None, warned: bool
) -> None:
    """A group never read looks like no group: ``none_of`` through a provider told not to read
    that source of groups never refuses anyone for it."""
    providers = _providers(inventory)
    providers["ws1"]["smart_groups"] = smart_groups
    groups = {"none_of": none_of} if none_of else {}
    hooks = [
        webhook(providers=("ws1",), identifier_kinds=["serial"], policy={"groups": groups}),
        webhook("gate", "AUTHORIZING", providers=("inventory",), secret=OTHER_SECRET),
    ]
    mapping = config(inventory, webhooks=hooks, providers=providers)
    warnings = config_warnings(make_settings(mapping))
    if not warned:
        assert warnings == []
        return
    (warning,) = warnings
    assert warning.startswith(
        "<test>: webhooks[0].policy.groups.none_of: provider 'ws1' does not read smart groups "
        "(smart_groups = false)"
    )
