"""SIGHUP reloads the config: a valid one is swapped in while the service runs, a broken one is
refused and the running one keeps serving, and what only a restart applies is said so."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from connector.reload import plan_reload
from tests.helpers import (
    ENRICH_ID,
    INVENTORY_CSV,
    SECRET,
    config,
    enrich,
    make_settings,
    signed,
    webhook,
)
from tests.pki import TestCA
from tests.test_scep_challenge import scep_webhook

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = "/webhooks/people"
OTHER_SECRET = base64.b64encode(bytes(range(1, 65))).decode()

CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
{listen}
cert_reload_interval = 0
shutdown_timeout = 2

[logging]
format = "json"

[store]
path = "store.sqlite3"

[providers.inventory]
kind = "csv"
path = "{inventory}"
reload_interval = 0

[[webhooks]]
name = "people"
kind = "ENRICHING"
path = "/webhooks/people"
id = "{hook_id}"
secret = {{ file = "people.secret" }}
providers = ["inventory"]
{policy}
"""


@dataclass
class Server:
    """A `serve` subprocess, its config and its JSON log."""

    process: subprocess.Popen[bytes]
    folder: Path
    port: int
    tls: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def write(self, **values: Any) -> None:
        write_config(self.folder, **{"port": self.port, **values})

    def events(self) -> list[dict[str, Any]]:
        lines = (self.folder / "server.log").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def reload(self, *, expect: str, timeout: float = 20) -> dict[str, Any]:
        """SIGHUP, then the first `expect` event logged after it."""
        seen = len(self.events())
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events()[seen:]:
                if event["event"] in ("config.reloaded", "config.reload_failed"):
                    assert event["event"] == expect, event
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {expect} within {timeout}s: {self.events()[seen:]}")

    def post(self, identifier: str, secret: str = SECRET) -> tuple[int, dict[str, Any]]:
        body = enrich(identifier, now=datetime.now(UTC))
        headers = signed(body, secret=secret)
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.tls) if self.tls else False
        )
        response = httpx.post(self.url + PEOPLE, content=body, headers=headers, verify=verify)
        return response.status_code, response.json()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(folder: Path, **values: Any) -> None:
    """The config above with `values` filled in (plain HTTP, the CSV, no policy by default)."""
    fields = {
        "listen": "plain_http = true",
        "inventory": "inventory.csv",
        "hook_id": ENRICH_ID,
        "policy": "",
        **values,
    }
    (folder / "connector.toml").write_text(CONFIG.format(**fields), encoding="utf-8")


def _start(
    folder: Path,
    tls: Path | None = None,
    *,
    linked: bool = False,
    hangup_at: str | None = None,
    **values: Any,
) -> Server:
    """Start `serve` in `folder` and wait for ``service.started``; with `hangup_at`, send SIGHUP
    as soon as that event is logged (while the service starts)."""
    folder.mkdir(parents=True, exist_ok=True)
    if linked:  # as Kubernetes mounts a ConfigMap: each file a link through ..data
        _configmap_version(folder, "..v1")
        for name in ("connector.toml", "inventory.csv", "people.secret"):
            (folder / name).symlink_to(Path("..data") / name)
    (folder / "inventory.csv").write_text(INVENTORY_CSV, encoding="utf-8")
    (folder / "people.secret").write_text(SECRET, encoding="utf-8")
    port = _free_port()
    write_config(folder, port=port, **values)
    with (folder / "server.log").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--config", "connector.toml"],
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    server = Server(process, folder, port, tls)
    deadline = time.monotonic() + 20
    if hangup_at == "first-moment":  # as soon as SIGHUP no longer ends the process
        while not _catches_sighup(process.pid):
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert server.events() == []  # before the service has even logged a line
        process.send_signal(signal.SIGHUP)
        hangup_at = None
    while not any(e["event"] == "service.started" for e in server.events()):
        if hangup_at is not None and any(e["event"] == hangup_at for e in server.events()):
            process.send_signal(signal.SIGHUP)
            hangup_at = None
        assert server.process.poll() is None, server.events()
        assert time.monotonic() < deadline, server.events()
        time.sleep(0.05)
    return server


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a handler for SIGHUP (Linux: its caught-signals mask)."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)))


def _configmap_version(folder: Path, version: str) -> Path:
    """A new version folder, made current by swapping the ``..data`` link atomically (the old
    one is removed, as the kubelet does)."""
    (folder / version).mkdir()
    old = (folder / "..data").resolve() if (folder / "..data").exists() else None
    (folder / "..data.new").symlink_to(version)
    os.replace(folder / "..data.new", folder / "..data")
    if old is not None:
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    return folder / version


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start `serve` processes; each must stop cleanly on SIGTERM after the test (exit 0, no
    traceback in its log)."""
    started: list[Server] = []

    def start(**values: Any) -> Server:
        server = _start(tmp_path / f"serve{len(started)}", **values)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        events = server.events()
        assert "service.stopped" in [e["event"] for e in events]
        assert not [e for e in events if "exception" in e], events


def test_sighup_swaps_in_a_new_policy_and_secret(serve: Any) -> None:
    """After SIGHUP a changed policy decides the next call and a changed secret file is the
    one accepted, with no restart: the same process answers on the same port."""
    server = serve()
    assert server.post("C02TEST00001")[1]["allow"] is True
    (server.folder / "people.secret").write_text(OTHER_SECRET, encoding="utf-8")
    server.write(policy='[webhooks.policy]\ngroups = { none_of = ["MDA Pilot"] }')
    event = server.reload(expect="config.reloaded")
    assert (event["webhooks"], event["restart_required"]) == (["people"], [])
    assert "message" not in event
    status, answer = server.post("C02TEST00001", OTHER_SECRET)
    assert (status, answer["error"]["code"]) == (200, "group-forbidden")
    assert server.post("C02TEST00001", SECRET)[0] == 401
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_a_sighup_while_the_service_starts_reloads_once_it_runs(serve: Any) -> None:
    """`systemctl reload` right after `systemctl start`: the SIGHUP arrives before the service
    is imported (about a second), where its default action would end the process. It is noted
    from the command line's first moment, and reloads once the service runs."""
    server = serve(hangup_at="first-moment")
    deadline = time.monotonic() + 10
    while not any(e["event"] == "config.reloaded" for e in server.events()):
        assert server.process.poll() is None, server.events()
        assert time.monotonic() < deadline, server.events()
        time.sleep(0.05)
    assert server.post("C02TEST00001")[1]["allow"] is True


def test_a_reload_that_turns_shadow_mode_on_warns_as_a_start_would(serve: Any) -> None:
    """A reload is a new config: its warnings (shadow mode allows everything) are logged."""
    server = serve()
    seen = len(server.events())
    server.write(policy='mode = "shadow"')
    server.reload(expect="config.reloaded")
    warnings = [e["warning"] for e in server.events()[seen:] if e["event"] == "config.warning"]
    assert len(warnings) == 1
    assert "shadow" in warnings[0]


def test_sighup_reads_what_a_symlinked_config_names_now(serve: Any) -> None:
    """A config mounted through links (a ConfigMap, a release switch) is read again by its
    path: an update swaps the links and removes the old files. The service read the old target
    again (its revoked secret still accepted), and failed once that was gone."""
    server = serve(linked=True)
    assert server.post("C02TEST00001")[1]["allow"] is True
    version = _configmap_version(server.folder, "..v2")
    (version / "inventory.csv").write_text(INVENTORY_CSV, encoding="utf-8")
    (version / "people.secret").write_text(OTHER_SECRET, encoding="utf-8")
    server.write()
    event = server.reload(expect="config.reloaded")
    assert event["config"] == str(server.folder / "connector.toml")
    assert server.post("C02TEST00001", SECRET)[0] == 401
    assert server.post("C02TEST00001", OTHER_SECRET)[1]["allow"] is True


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("[server\n", "TOML syntax"),
        (None, "webhooks[0].policy.groups.none_of: must list at least one value"),
    ],
    ids=["syntax", "policy"],
)
def test_a_broken_config_is_refused_and_the_old_one_serves(
    serve: Any, broken: str | None, problem: str
) -> None:
    """A config that does not validate is refused with its problems; calls are still decided
    by the config that was running."""
    server = serve()
    if broken is None:
        server.write(policy="[webhooks.policy]\ngroups = { none_of = [] }")
    else:
        (server.folder / "connector.toml").write_text(broken, encoding="utf-8")
    event = server.reload(expect="config.reload_failed")
    assert event["kept"] == "running"
    assert any(problem in p for p in event["problems"]), event["problems"]
    assert server.post("C02TEST00001")[1]["allow"] is True
    assert server.process.poll() is None


def test_a_new_inventory_is_started_before_it_is_swapped_in(serve: Any) -> None:
    """A provider whose table changed is built and loaded first: a file with a bad row is
    refused (its line named) and the old inventory answers; a good file then goes live."""
    server = serve()
    other = server.folder / "other.csv"
    other.write_text(INVENTORY_CSV + "C02BROKEN001,,,,,,maybe\n", encoding="utf-8")
    server.write(inventory="other.csv")
    failed = server.reload(expect="config.reload_failed")
    assert failed["problems"] == [
        f"providers.inventory: {other}:6: managed: Input should be a valid boolean, "
        "unable to interpret input"
    ]
    assert server.post("C02TEST00001")[1]["allow"] is True

    other.write_text(INVENTORY_CSV.replace("C02TEST00001", "C02TEST00009"), encoding="utf-8")
    event = server.reload(expect="config.reloaded")
    assert event["providers_started"] == ["inventory"]
    assert server.post("C02TEST00001")[1]["error"]["code"] == "device-not-found"
    assert server.post("C02TEST00009")[1]["allow"] is True


def test_a_new_port_waits_for_a_restart_and_says_so(serve: Any) -> None:
    """A changed listen port is reported as needing a restart; the service keeps its port and
    still applies the live changes (here a new webhook id) at once."""
    server = serve()
    new_id = "0d7a9c2e-4b1f-4e3a-9c8d-7f6e5d4c3b2a"
    server.write(port=_free_port(), hook_id=new_id)
    event = server.reload(expect="config.reloaded")
    assert event["restart_required"] == ["server.port"]
    assert event["message"] == "these changes take effect only after a restart"
    body = enrich("C02TEST00001", now=datetime.now(UTC))
    answer = httpx.post(server.url + PEOPLE, content=body, headers=signed(body, webhook_id=new_id))
    assert answer.json()["allow"] is True


def test_sighup_rereads_the_tls_files(serve: Any, tmp_path: Path) -> None:
    """The certificate files are read again on SIGHUP (periodic checks are off here)."""
    ca = TestCA(tmp_path / "pki")
    first = ca.issue("server", ip="127.0.0.1")
    listen = f'tls_cert = "{first.cert}"\ntls_key = "{first.key}"'
    server = serve(listen=listen, tls=ca.cert_path)
    assert _served_serial(server) == first.serial
    second = ca.issue("server", ip="127.0.0.1")  # written over the same files
    assert second.cert == first.cert
    server.reload(expect="config.reloaded")
    assert "tls.reloaded" in [e["event"] for e in server.events()]
    assert _served_serial(server) == second.serial


def _served_serial(server: Server) -> int:
    assert server.tls is not None
    context = ssl.create_default_context(cafile=server.tls)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# --- the plan, from settings alone --------------------------------------------------------


def _settings(inventory: Path, **sections: Any) -> Any:
    store = {"path": str(inventory.with_name("store.sqlite3"))}
    return make_settings(config(inventory, store=store, **sections))


def test_plan_keeps_unchanged_providers_and_rebuilds_changed_ones(inventory: Path) -> None:
    """An unchanged provider table keeps its running provider; a changed one is rebuilt; one
    that is gone is dropped."""
    other = {"kind": "csv", "path": str(inventory), "reload_interval": 5}
    base = {"inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0}}
    current = _settings(inventory, providers={**base, "old": other})
    new = _settings(inventory, providers={**base, "fresh": other})
    plan = plan_reload(
        current, current.providers, new, frozenset({"/webhooks/people", "/webhooks/gate"})
    )
    assert (plan.keep, plan.build, plan.drop) == (("inventory",), ("fresh",), ("old",))
    assert plan.restart_required == ()


def test_plan_lists_what_needs_a_restart(inventory: Path) -> None:
    """Listener, logging and store keys, and a webhook on a path not served yet, wait for a
    restart; so does a provider in a sync mode, which a new config may not add live."""
    started = _settings(inventory)
    jamf = {
        "kind": "jamf",
        "url": "https://jamf.example.com",
        "client_id": "a",
        "client_secret": "b",
        "mode": "sync",
    }
    new = _settings(
        inventory,
        server={"port": 9999, "read_timeout": 5},
        logging={"level": "debug"},
        webhooks=[webhook("people", path="/new")],
        providers={"inventory": {"kind": "csv", "path": str(inventory)}, "jamf": jamf},
    )
    plan = plan_reload(started, started.providers, new, frozenset({"/webhooks/people"}))
    assert plan.restart_required == (
        "server.port",
        "server.read_timeout",
        "logging.level",
        "webhooks[0].path (/new is not served yet)",
    )
    assert plan.problems == ("providers.jamf: a new provider in a sync mode needs a restart",)


def test_plan_lists_a_challenge_url_not_served_yet(inventory: Path) -> None:
    """A SCEP challenge URL moved to a path the router did not get at start waits for a
    restart; new credentials on the served one change live."""
    served = frozenset({"/webhooks/people", "/webhooks/scep"})
    started = _settings(inventory, webhooks=[webhook(), scep_webhook()])
    rotated = _settings(inventory, webhooks=[webhook(), scep_webhook(password=OTHER_SECRET)])
    moved = _settings(inventory, webhooks=[webhook(), scep_webhook(path="/scep/moved")])

    assert plan_reload(started, started.providers, rotated, served).restart_required == ()
    assert plan_reload(started, started.providers, moved, served).restart_required == (
        "webhooks[1].validator.path (/scep/moved is not served yet)",
    )


def test_plan_keeps_a_synced_provider_until_a_restart(inventory: Path) -> None:
    """A provider in a sync mode that changed or was removed keeps running as it is (its syncer
    belongs to the store) and is listed as needing a restart."""
    jamf = {
        "kind": "jamf",
        "url": "https://jamf.example.com",
        "client_id": "a",
        "client_secret": "b",
        "mode": "sync",
    }
    csv = {"kind": "csv", "path": str(inventory)}
    current = _settings(inventory, providers={"inventory": csv, "jamf": jamf, "gone": jamf})
    new = _settings(inventory, providers={"inventory": csv, "jamf": {**jamf, "budget": 2.0}})
    plan = plan_reload(
        current, current.providers, new, frozenset({"/webhooks/people", "/webhooks/gate"})
    )
    assert (plan.build, plan.drop, plan.problems) == ((), (), ())
    assert set(plan.keep) == {"inventory", "jamf", "gone"}
    assert plan.restart_required == ("providers.jamf", "providers.gone (removed)")
