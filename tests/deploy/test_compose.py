"""deploy/compose: a valid Compose file (compose-go, the loader of `docker compose`), hardened,
whose connector config passes this connector's check-config with every file it names mounted."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from connector.settings import ServerSettings
from tests.deploy.support import (
    DEPLOY,
    check_config,
    file_paths,
    go_tool,
    place,
    relocate,
    run,
    stand_ins,
)

KIT = DEPLOY / "compose"
CONNECTOR_CONFIG = KIT / "connector.toml"


def load(folder: Path = KIT) -> Any:
    """The normalized Compose model, as `docker compose config` builds it."""
    result = run(go_tool("compose-spec"), "--format", "json", "compose.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def seconds(duration: str) -> float:
    """A Compose duration such as ``20s`` or ``1m30s``."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_the_compose_file_is_valid() -> None:
    """compose-go loads the kit with schema and consistency checks: three services, two volumes
    (step-ca's, the connector's state)."""
    model = load()
    assert set(model["services"]) == {"step-ca", "tls", "connector"}
    assert set(model["volumes"]) == {"step", "connector-state"}


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("condition: service_healthy", "condition: service_happy"),
        ("stop_grace_period: 20s", "stop_grace_periods: 20s"),
        ("read_only: true", "read_only: yes-please"),
    ],
    ids=["bad-condition", "unknown-key", "bad-type"],
)
def test_the_validator_rejects_a_broken_compose_file(
    tmp_path: Path, original: str, broken: str
) -> None:
    """Control: the same checker refuses a typo, so its approval of the kit means something."""
    folder = tmp_path / "compose"
    shutil.copytree(KIT, folder)
    text = (folder / "compose.yaml").read_text(encoding="utf-8")
    assert original in text
    (folder / "compose.yaml").write_text(text.replace(original, broken, 1), encoding="utf-8")
    result = run(go_tool("compose-spec"), "compose.yaml", cwd=folder)
    assert result.returncode != 0


def unresolved(model: Any) -> list[str]:
    """References to undeclared services, secrets or volumes.

    `docker compose config` checks these after loading (compose-go's ``checkConsistency``); the
    compose-spec command stops at the loaded model, so the test checks them itself.
    """
    problems = []
    for name, service in model["services"].items():
        problems += [f"{name}: depends on {d}" for d in service.get("depends_on", {})
                     if d not in model["services"]]  # fmt: skip
        problems += [f"{name}: secret {s['source']}" for s in service.get("secrets", [])
                     if s["source"] not in model.get("secrets", {})]  # fmt: skip
        problems += [f"{name}: volume {v['source']}" for v in service.get("volumes", [])
                     if v["type"] == "volume" and v["source"] not in model.get("volumes", {})]  # fmt: skip
    return problems


def test_every_reference_resolves() -> None:
    """Each depends_on, secret and named volume a service uses is declared."""
    assert unresolved(load()) == []


def test_an_undeclared_reference_is_found(tmp_path: Path) -> None:
    """Control: a dependency, a secret and a volume nobody declared are each reported."""
    folder = tmp_path / "compose"
    shutil.copytree(KIT, folder)
    text = (folder / "compose.yaml").read_text(encoding="utf-8")
    text = text.replace("      tls:\n        condition", "      tlsx:\n        condition", 1)
    text = text.replace("      - gate-secret\n", "      - gate-secret\n      - extra-secret\n", 1)
    text = text.replace("      - step:/home/step\n", "      - stepx:/home/step\n", 1)
    (folder / "compose.yaml").write_text(text, encoding="utf-8")
    assert sorted(unresolved(load(folder))) == [
        "connector: depends on tlsx",
        "connector: secret extra-secret",
        "step-ca: volume stepx",
    ]


def test_only_step_ca_is_published_and_the_connector_waits_for_its_certificate() -> None:
    """Devices reach step-ca on :9000; the connector has no published port and starts after `tls`."""
    services = load()["services"]
    assert [p["target"] for p in services["step-ca"]["ports"]] == [9000]
    assert "ports" not in services["connector"]
    assert "ports" not in services["tls"]
    assert services["tls"]["depends_on"]["step-ca"]["condition"] == "service_healthy"
    assert services["connector"]["depends_on"]["tls"]["condition"] == "service_healthy"


def test_every_service_is_read_only_without_capabilities() -> None:
    """Read-only root, all capabilities dropped, no new privileges; step-ca keeps only its bind cap."""
    services = load()["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service.get("cap_add", []) in ([], ["NET_BIND_SERVICE"]), name
    assert services["connector"].get("cap_add") is None
    assert services["connector"].get("user") is None  # the image's uid 10001


def test_connector_health_is_readiness_and_its_grace_period_covers_the_drain() -> None:
    """The healthcheck asks /readyz; Compose waits longer than the connector's shutdown timeout."""
    connector = load()["services"]["connector"]
    assert connector["healthcheck"]["test"][:3] == ["CMD", "posture-connector", "healthcheck"]
    assert "--ready" in connector["healthcheck"]["test"]
    server = tomllib.loads(CONNECTOR_CONFIG.read_text(encoding="utf-8"))["server"]
    timeout = server.get(
        "shutdown_timeout", ServerSettings.model_fields["shutdown_timeout"].default
    )
    assert seconds(connector["stop_grace_period"]) > timeout


def test_every_file_the_connector_config_names_is_mounted() -> None:
    """Each absolute path in connector.toml lies under a mount or secret of the connector service."""
    connector = load()["services"]["connector"]
    targets = [v["target"] for v in connector["volumes"]]
    targets += [s["target"] for s in connector["secrets"]]
    config = tomllib.loads(CONNECTOR_CONFIG.read_text(encoding="utf-8"))
    paths = file_paths(config, "/etc/posture-connector")
    assert "/etc/posture-connector/inventory.csv" in paths
    for path in paths:
        assert any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets), path


def test_the_store_is_on_a_writable_volume() -> None:
    """The container is read-only: connector.toml's SQLite store lies on a named volume (the
    default, beside the read-only config, could never be created)."""
    connector = load()["services"]["connector"]
    store = tomllib.loads(CONNECTOR_CONFIG.read_text(encoding="utf-8"))["store"]["path"]
    [volume] = [v for v in connector["volumes"] if store.startswith(v["target"] + "/")]
    assert volume["type"] == "volume"
    assert not volume.get("read_only")
    assert volume["source"] in load()["volumes"]


def test_mtls_pins_step_ca_and_every_webhook_requires_its_certificate() -> None:
    """The connector accepts only step-ca's client certificate (DNS name step-ca) on each webhook."""
    config = tomllib.loads(CONNECTOR_CONFIG.read_text(encoding="utf-8"))
    assert config["server"]["client_dns_names"] == ["step-ca"]
    assert config["server"]["client_ca"].endswith("/root_ca.crt")
    assert all(hook["require_client_cert"] for hook in config["webhooks"])
    script = (KIT / "connector-cert.sh").read_text(encoding="utf-8")
    assert "--san connector" in script  # step-ca calls https://connector:8443/...


def test_the_connector_config_passes_check_config(tmp_path: Path) -> None:
    """connector.toml, with its mounts laid out in a folder, passes this connector's check-config."""
    etc, secrets = tmp_path / "etc", tmp_path / "secrets"
    files = stand_ins(tmp_path / "stand-ins", dns_names=("connector",))
    place(
        files,
        {
            etc / "tls/tls.crt": "tls.crt",
            etc / "tls/tls.key": "tls.key",
            etc / "tls/root_ca.crt": "ca.crt",
            secrets / "people-secret": "secret",
            secrets / "gate-secret": "secret",
        },
    )
    shutil.copy(KIT / "inventory.csv", etc / "inventory.csv")
    config = etc / "config.toml"
    text = relocate(
        CONNECTOR_CONFIG.read_text(encoding="utf-8"),
        {"/etc/posture-connector/": etc, "/run/secrets/": secrets},
    )
    config.write_text(text, encoding="utf-8")
    result = check_config(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "webhook people: ENRICHING" in result.stdout
    assert "client-cert=required" in result.stdout


def test_the_certificate_script_is_valid_sh() -> None:
    """connector-cert.sh parses as POSIX sh (the step-ca image runs it with /bin/sh)."""
    result = run("sh", "-n", KIT / "connector-cert.sh")
    assert result.returncode == 0, result.stderr


def test_the_names_in_the_steps_match_what_the_services_dial() -> None:
    """step-ca's --dns names (README step 3) cover every host the kit dials it by or pins.

    The first --dns is the CA URL inside the step-ca container, so it must be `step-ca`.
    """
    readme = (KIT / "README.md").read_text(encoding="utf-8")
    names = re.findall(r"--dns (\S+)", readme)
    assert names[0] == "step-ca"
    services = load()["services"]
    health = " ".join(services["step-ca"]["healthcheck"]["test"])
    script = (KIT / "connector-cert.sh").read_text(encoding="utf-8")
    config = tomllib.loads(CONNECTOR_CONFIG.read_text(encoding="utf-8"))
    dialled = re.findall(r"https://([\w.-]+):9000", health + script)
    assert dialled
    assert set(dialled) | set(config["server"]["client_dns_names"]) <= set(names)
    assert set(re.findall(r"https://([\w.-]+):8443/webhooks", readme)) == {"connector"}
