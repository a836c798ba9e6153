"""deploy/systemd: units that `systemd-analyze verify` accepts, a low exposure score, credentials and
paths that match the example config, and a service user that systemd-sysusers creates."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from connector.settings import ServerSettings
from posture_lab import LabError, find_step_tools, free_port
from tests.deploy.support import (
    DEPLOY,
    ROOT,
    check_config,
    file_paths,
    place,
    relocate,
    run,
    skip_or_fail,
    stand_ins,
    system_tool,
    wait_ready,
)

KIT = DEPLOY / "systemd"
SERVICE = KIT / "posture-connector.service"
RENEW = KIT / "posture-connector-tls-renew.service"
TIMER = KIT / "posture-connector-tls-renew.timer"
CONFIG = KIT / "config.toml"
CREDENTIALS = "/run/credentials/posture-connector.service/"
MAX_EXPOSURE = 2.0
EXAMPLES = ROOT / "examples"
QUICKSTART_PEOPLE_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file; repeated keys keep every value in order."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(value: str) -> float:
    """A systemd time span such as ``20s`` or ``1min 30s``."""
    units = {"min": 60, "s": 1, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|h)", value)
    assert parts, value
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.fixture
def installed_units(tmp_path: Path) -> list[Path]:
    """The units with their programs pointed at this checkout's (verify needs them to exist)."""
    try:
        step = find_step_tools().step
    except LabError as exc:
        skip_or_fail(str(exc))
    connector = Path(sys.executable).parent / "posture-connector"
    units = []
    for unit in (SERVICE, RENEW, TIMER):
        text = unit.read_text(encoding="utf-8")
        text = text.replace("/opt/posture-connector/bin/posture-connector", str(connector))
        text = text.replace("/usr/bin/step ", f"{step} ")
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
        units.append(tmp_path / unit.name)
    return units


def test_the_units_pass_systemd_analyze_verify(installed_units: list[Path]) -> None:
    """`systemd-analyze verify` accepts the service, the renewal service and its timer silently."""
    result = run(system_tool("systemd-analyze"), "verify", *installed_units)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_reports_a_misspelt_directive(installed_units: list[Path]) -> None:
    """Control: a wrong key or value is reported, so the silence above means something."""
    unit = installed_units[0]
    text = unit.read_text(encoding="utf-8").replace(
        "ProtectSystem=strict", "ProtectSystem=strictly"
    )
    unit.write_text(text.replace("TimeoutStopSec=", "TimeoutStopSecs="), encoding="utf-8")
    result = run(system_tool("systemd-analyze"), "verify", unit)
    assert "Unknown key 'TimeoutStopSecs'" in result.stderr
    assert "strictly" in result.stderr


@pytest.mark.parametrize("unit", [SERVICE, RENEW], ids=lambda u: u.name)
def test_the_exposure_score_is_low(unit: Path) -> None:
    """`systemd-analyze security` rates each service at most 2.0 (0 is fully locked down, 10 open)."""
    result = run(
        system_tool("systemd-analyze"),
        "security",
        "--offline=yes",
        f"--threshold={int(MAX_EXPOSURE * 10)}",
        unit,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score
    assert float(score.group(1)) <= MAX_EXPOSURE


def test_the_service_is_sandboxed_without_capabilities() -> None:
    """No capabilities, no new privileges, strict read-only system, private /tmp, limited memory."""
    unit = directives(SERVICE)
    assert unit["CapabilityBoundingSet"] == [""]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }.items():
        assert unit[key] == [value], key
    assert "@system-service" in unit["SystemCallFilter"]
    assert unit["MemoryMax"]
    assert unit["User"] == ["posture-connector"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_the_store_lives_in_the_one_folder_the_sandbox_lets_the_service_write() -> None:
    """ProtectSystem=strict makes /etc read-only: the config's SQLite store is in the unit's
    StateDirectory (the default, beside the config, could never be created)."""
    unit = directives(SERVICE)
    assert unit["StateDirectory"] == ["posture-connector"]
    store = Path(tomllib.loads(CONFIG.read_text(encoding="utf-8"))["store"]["path"])
    assert store.parent == Path("/var/lib/posture-connector")


def test_stopping_waits_longer_than_the_connector_drains() -> None:
    """TimeoutStopSec exceeds the config's shutdown_timeout, so SIGKILL never cuts a request."""
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    timeout = server.get(
        "shutdown_timeout", ServerSettings.model_fields["shutdown_timeout"].default
    )
    assert seconds(directives(SERVICE)["TimeoutStopSec"][0]) > timeout


def test_every_credential_the_config_reads_is_loaded_and_none_is_unused() -> None:
    """The config's /run/credentials/... files are exactly the unit's LoadCredential= names."""
    loaded = {value.split(":", 1)[0] for value in directives(SERVICE)["LoadCredential"]}
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    used = {p.removeprefix(CREDENTIALS) for p in file_paths(config, "/etc/posture-connector")}
    used = {name for name in used if "/" not in name}
    assert used
    assert used == loaded


def test_the_renewal_writes_where_the_config_reads_the_tls_pair() -> None:
    """The timer starts the renewal service, which may write the folder of tls_cert and tls_key."""
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    renew = directives(RENEW)
    assert TIMER.stem == RENEW.stem
    writable = renew["ReadWritePaths"][0]
    for key in ("tls_cert", "tls_key"):
        assert str(Path(server[key]).parent) == writable
        assert server[key] in renew["ExecStart"][0]
    assert renew["User"] == directives(SERVICE)["User"]


def test_the_example_config_passes_check_config(tmp_path: Path) -> None:
    """config.toml, with its files and credentials laid out in a folder, passes check-config."""
    etc, credentials = tmp_path / "etc", tmp_path / "credentials"
    files = stand_ins(tmp_path / "stand-ins", dns_names=("connector.example.com",))
    place(
        files,
        {
            etc / "tls/tls.crt": "tls.crt",
            etc / "tls/tls.key": "tls.key",
            etc / "tls/root_ca.crt": "ca.crt",
            credentials / "people-secret": "secret",
            credentials / "gate-secret": "secret",
        },
    )
    shutil.copy(DEPLOY / "compose" / "inventory.csv", etc / "inventory.csv")
    config = etc / "config.toml"
    text = relocate(
        CONFIG.read_text(encoding="utf-8"),
        {"/etc/posture-connector/": etc, CREDENTIALS: credentials},
    )
    config.write_text(text, encoding="utf-8")
    result = check_config(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    """systemd-sysusers creates the unit's User= as a system user without a login shell."""
    (tmp_path / "etc").mkdir()
    sysusers = KIT / "posture-connector.sysusers"
    result = run(system_tool("systemd-sysusers"), f"--root={tmp_path}", sysusers)
    assert result.returncode == 0, result.stderr
    entry = next(
        line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
        if line.startswith("posture-connector:")
    )
    assert int(entry[2]) < 1000
    assert entry[6] == "/usr/sbin/nologin"
    assert directives(SERVICE)["User"] == [entry[0]]


PR_SET_MDWE = 65  # prctl(2): refuse memory that is (or becomes) both writable and executable
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _deny_write_execute() -> None:
    """In the child: the kernel's own form of MemoryDenyWriteExecute=, kept across execve."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _require_mdwe() -> None:
    if sys.platform != "linux":
        skip_or_fail("PR_SET_MDWE is Linux only")
    if ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE, unknown before Linux 6.3
        skip_or_fail("this kernel has no PR_SET_MDWE (Linux 6.3+)")


def test_the_connector_answers_without_writable_executable_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes is safe: the service serves a signed call under PR_SET_MDWE."""
    _require_mdwe()
    for name in (
        "quickstart.toml",
        "quickstart-inventory.csv",
        "quickstart.secret",
        "quickstart-gate.secret",
    ):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    port = free_port()
    config = tmp_path / "quickstart.toml"
    text = config.read_text(encoding="utf-8").replace("port = 8443", f"port = {port}")
    text = text.replace(
        "dev_certificate = true", 'dev_certificate = true\ndev_certificate_dir = "tls"'
    )
    config.write_text(text, encoding="utf-8")
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # the service under the same memory rule as in the unit
            [sys.executable, "-m", "connector", "serve", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=_deny_write_execute,  # noqa: PLW1509 - one prctl before exec, no locks
        )
    try:
        url = f"https://127.0.0.1:{port}"
        wait_ready(process, f"{url}/readyz", tmp_path / "tls" / "ca.crt", log)
        answer = run(
            sys.executable, "-m", "connector", "send",
            "--url", f"{url}/webhooks/people", "--id", QUICKSTART_PEOPLE_ID,
            "--secret-file", tmp_path / "quickstart.secret", "--cacert", tmp_path / "tls" / "ca.crt",
            "--identifier", "C02QUICK0001",
            cwd=ROOT,
        )  # fmt: skip
        assert answer.returncode == 0, answer.stdout + answer.stderr
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_write_execute_memory_is_refused_under_the_same_rule() -> None:
    """Control: under PR_SET_MDWE a writable and executable mapping fails, so the check bites."""
    _require_mdwe()
    code = (
        "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=_deny_write_execute,
    )
    assert result.returncode != 0
    assert "PermissionError" in result.stderr
