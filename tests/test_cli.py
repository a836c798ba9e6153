"""The command line: check-config, lookup, and send against a real `serve` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connector.cli import EXIT_CONFIG, EXIT_DENY, EXIT_FAILED, EXIT_OK, main

pytestmark = pytest.mark.usefixtures("restore_logging")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
QUICKSTART = EXAMPLES / "quickstart.toml"
PEOPLE_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
GATE_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def test_check_config_accepts_the_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped quickstart validates, and the summary lists providers and webhooks."""
    assert main(["check-config", str(QUICKSTART)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{QUICKSTART}: OK"
    assert "listen: https://127.0.0.1:8443  mTLS: False" in out
    assert "provider inventory: csv" in out
    assert f"webhook people: ENRICHING at /webhooks/people id={PEOPLE_ID}" in out
    assert f"webhook gate: AUTHORIZING at /webhooks/gate id={GATE_ID}" in out


def test_check_config_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken file exits 2 and prints each problem with its key path, not just the first."""
    path = tmp_path / "broken.toml"
    path.write_text(
        """
[server]
plain_http = true
colour = "blue"

[logging]
level = "loud"

[providers.inventory]
kind = "csv"
path = "inventory.csv"

[[webhooks]]
name = "people"
kind = "MUTATING"
path = "/webhooks/people"
id = "a"
secret = "c2VjcmV0"
providers = ["inventory"]
""",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"{path}: invalid configuration (3 problem(s))" in err
    for problem in (
        "server.colour: Extra inputs are not permitted",
        "logging.level: Input should be",
        "webhooks[0].kind: Input should be 'AUTHORIZING', 'ENRICHING', 'SCEPCHALLENGE' or",
    ):
        assert f"  - {path}: {problem}" in err


def test_check_config_runs_preflight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid schema with a missing inventory file and unreadable certificates still fails."""
    for name in ("quickstart.secret", "quickstart-gate.secret"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    text = QUICKSTART.read_text(encoding="utf-8").replace(
        "dev_certificate = true", 'tls_cert = "nope.crt"\ntls_key = "nope.key"'
    )
    path = tmp_path / "connector.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"  - {path}: server.tls_cert/tls_key: cannot load the pair:" in err
    assert (
        f"  - {path}: providers.inventory.path: no such file: {tmp_path / 'quickstart-inventory.csv'}"
        in err
    )


@pytest.mark.parametrize(
    ("webhook", "identifier", "code", "exit_code"),
    [
        ("gate", "C02QUICK0001", None, EXIT_OK),
        ("gate", "C02QUICK0002", "device-unmanaged", EXIT_DENY),
        ("gate", "00008110-000A1C2E3F40801E", None, EXIT_OK),
        ("gate", "C02UNKNOWN99", "device-not-found", EXIT_DENY),
        ("people", "C02QUICK0001", None, EXIT_OK),
        ("people", "not a serial", "identifier-invalid", EXIT_DENY),
    ],
    ids=["managed", "unmanaged", "iphone-udid", "unknown", "enriching", "malformed"],
)
def test_lookup_explains_the_decision(
    capsys: pytest.CaptureFixture[str],
    webhook: str,
    identifier: str,
    code: str | None,
    exit_code: int,
) -> None:
    """`lookup` prints the decision as JSON with each rule's verdict; exit 0 allows, 1 denies."""
    args = ["lookup", "--json", "--config", str(QUICKSTART), "--webhook", webhook, identifier]
    assert main(args) == exit_code
    decision = json.loads(capsys.readouterr().out)
    assert decision["identifier"] == identifier
    assert decision["allow"] is (code is None)
    assert decision["reply"].get("error", {}).get("code") == code
    if code in (None, "device-unmanaged"):
        assert decision["provider"] == "inventory"
        rules = {r["rule"]: r["result"] for r in decision["rules"]}
        assert rules["managed"] == ("fail" if code else "pass")
    else:
        assert decision["rules"] == []


def test_lookup_of_a_shadow_webhook_says_step_ca_gets_an_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`allow` is the policy's verdict; `reply` is what step-ca receives, an allow in shadow
    mode (it showed the deny a shadow webhook never sends)."""
    for name in ("quickstart.secret", "quickstart-gate.secret", "quickstart-inventory.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    config = tmp_path / "connector.toml"
    text = QUICKSTART.read_text(encoding="utf-8")
    config.write_text(text.replace('kind = "AUTHORIZING"', 'kind = "AUTHORIZING"\nmode = "shadow"'))
    args = ["lookup", "--config", str(config), "--webhook", "gate", "C02QUICK0002"]
    assert main([*args, "--json"]) == EXIT_DENY
    decision = json.loads(capsys.readouterr().out)
    assert (decision["allow"], decision["reply"]) == (False, {"allow": True})
    main(args)
    assert "  step-ca gets: an allow (shadow mode)" in capsys.readouterr().out


def test_lookup_enriching_shows_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    """An ENRICHING allow shows the data step-ca would put into the certificate template."""
    args = ["lookup", "--json", "--config", str(QUICKSTART), "--webhook", "people", "C02QUICK0001"]
    assert main(args) == EXIT_OK
    data = json.loads(capsys.readouterr().out)["reply"]["data"]
    assert data["provider"] == "inventory"
    assert "anika.sharma@example.com" in json.dumps(data)


def test_lookup_explains_each_rule_with_the_value_it_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each rule's entry names its verdict, code, value seen (null when unreported) and why."""
    shutil.copy(EXAMPLES / "quickstart.secret", tmp_path / "quickstart.secret")
    shutil.copy(EXAMPLES / "quickstart-gate.secret", tmp_path / "quickstart-gate.secret")
    shutil.copy(EXAMPLES / "quickstart-inventory.csv", tmp_path / "quickstart-inventory.csv")
    text = QUICKSTART.read_text(encoding="utf-8").replace(
        "[webhooks.policy]\nmanaged = true\n\n[webhooks.enrichment]",
        '[webhooks.policy]\nreport = "all"\ncompliance = ["compliant"]\nplatform = ["iOS"]\n\n'
        "[webhooks.enrichment]",
    )
    path = tmp_path / "connector.toml"
    path.write_text(text, encoding="utf-8")
    args = ["lookup", "--json", "--config", str(path), "--webhook", "people", "C02QUICK0001"]
    assert main(args) == EXIT_DENY
    decision = json.loads(capsys.readouterr().out)
    assert decision["rules"] == [
        {
            "rule": "managed",
            "result": "pass",
            "observed": "true",
            "code": None,
            "message": "device is managed",
        },
        {
            "rule": "compliance",
            "result": "fail",
            "observed": None,
            "code": "attribute-unreported",
            "message": "inventory inventory does not report the device's compliance state",
        },
        {
            "rule": "platform",
            "result": "fail",
            "observed": "macOS",
            "code": "platform-not-allowed",
            "message": "platform macOS is not allowed (allowed: iOS)",
        },
    ]


def test_lookup_unknown_webhook_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Naming a webhook that is not configured exits 2 and lists the configured ones."""
    args = ["lookup", "--config", str(QUICKSTART), "--webhook", "nope", "C02QUICK0001"]
    assert main(args) == EXIT_CONFIG
    assert "no webhook named 'nope' (have: people, gate)" in capsys.readouterr().err


# --- a real `serve` process -------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running `python -m connector serve`."""

    process: subprocess.Popen[str]
    url: str
    cacert: Path
    secret_file: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("quickstart.secret", "quickstart-gate.secret", "quickstart-inventory.csv"):
        shutil.copy(EXAMPLES / name, folder / name)
    port = _free_port()
    text = (
        QUICKSTART.read_text(encoding="utf-8")
        .replace("port = 8443", f"port = {port}")
        .replace("dev_certificate = true", 'dev_certificate = true\ndev_certificate_dir = "tls"')
        .replace('format = "auto"', 'format = "json"')
        .replace("[server]\n", "[server]\ndrain_period = 0\n")
    )
    config = folder / "connector.toml"
    config.write_text(text, encoding="utf-8")
    log = folder / "server.log"
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--config", str(config)],
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    server = Server(
        process,
        f"https://127.0.0.1:{port}",
        folder / "tls" / "ca.crt",
        folder / "quickstart.secret",
        log,
    )
    try:
        _wait_ready(server)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 20
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{server.log.read_text(encoding='utf-8')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve never ready:\n{server.log.read_text(encoding='utf-8')}")
        if server.cacert.exists():
            verify = ssl.create_default_context(cafile=server.cacert)
            try:
                ready = httpx.get(f"{server.url}/readyz", verify=verify, timeout=1)
            except httpx.TransportError:
                pass
            else:
                if ready.status_code == 200:
                    return
        time.sleep(0.05)


def _stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `serve` process with the quickstart config and a dev certificate, for the module."""
    running = _start_server(tmp_path_factory.mktemp("serve"))
    yield running
    _stop(running)


def _send(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "connector",
        "send",
        "--cacert",
        str(server.cacert),
        *args,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "POSTURE_WEBHOOK_SECRET"},
    )


@pytest.mark.parametrize(
    ("path", "identifier", "code", "exit_code"),
    [
        ("people", "C02QUICK0001", None, EXIT_OK),
        ("people", "C02QUICK0002", "device-unmanaged", EXIT_DENY),
        ("gate", "00008110-000A1C2E3F40801E", None, EXIT_OK),
        ("gate", "C02UNKNOWN99", "device-not-found", EXIT_DENY),
    ],
    ids=["allow", "unmanaged", "udid-authorizing", "unknown"],
)
def test_send_gets_the_decision_from_a_running_server(
    server: Server, path: str, identifier: str, code: str | None, exit_code: int
) -> None:
    """`send` signs like step-ca; the server's allow exits 0 and a deny exits 1 with its code."""
    kind, webhook_id = ("ENRICHING", PEOPLE_ID) if path == "people" else ("AUTHORIZING", GATE_ID)
    secret_file = server.secret_file.with_name(
        "quickstart.secret" if path == "people" else "quickstart-gate.secret"
    )
    result = _send(
        server,
        "--url", f"{server.url}/webhooks/{path}",
        "--id", webhook_id,
        "--secret-file", str(secret_file),
        "--kind", kind,
        "--identifier", identifier,
    )  # fmt: skip
    assert result.returncode == exit_code, result.stderr
    output = json.loads(result.stdout)
    assert output["status"] == 200
    assert output["answer"]["allow"] is (code is None)
    assert output["answer"].get("error", {}).get("code") == code
    if code is None and kind == "ENRICHING":
        assert output["answer"]["data"]["provider"] == "inventory"


def test_send_with_a_wrong_secret_fails(server: Server) -> None:
    """A request the server refuses (bad signature, 401) exits 3 and shows the refusal."""
    result = _send(
        server,
        "--url", f"{server.url}/webhooks/people",
        "--id", PEOPLE_ID,
        "--secret", "d3Jvbmctc2VjcmV0",
        "--identifier", "C02QUICK0001",
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED
    output = json.loads(result.stdout)
    assert (output["status"], output["answer"]["error"]["code"]) == (401, "signature-invalid")


def test_send_without_the_ca_fails_verification(server: Server) -> None:
    """Without `--cacert` the development certificate is not trusted and nothing is sent."""
    result = subprocess.run(
        [
            sys.executable, "-m", "connector", "send",
            "--url", f"{server.url}/webhooks/people",
            "--id", PEOPLE_ID,
            "--secret-file", str(server.secret_file),
            "--identifier", "C02QUICK0001",
        ],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED
    assert "send: request failed:" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def _healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "healthcheck", "--config", str(config), *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize("args", [(), ("--ready",)], ids=["healthz", "readyz"])
def test_healthcheck_probes_the_running_server(server: Server, args: tuple[str, ...]) -> None:
    """`healthcheck` (the container HEALTHCHECK) exits 0 while the service answers 200."""
    result = _healthcheck(server.log.parent / "connector.toml", *args)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.strip().endswith(": 200")


@pytest.mark.parametrize(
    ("host", "probed"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::1", "[::1]"), ("::", "[::1]")],  # noqa: S104
    ids=["ipv4", "ipv4-any", "ipv6", "ipv6-any"],
)
def test_healthcheck_fails_when_nothing_listens(tmp_path: Path, host: str, probed: str) -> None:
    """With no service on the configured port, `healthcheck` exits 3 and says which URL it
    probed (an IPv6 address in brackets: without them the URL was a traceback)."""
    for name in ("quickstart.secret", "quickstart-gate.secret", "quickstart-inventory.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    config = tmp_path / "connector.toml"
    port = _free_port()
    text = QUICKSTART.read_text(encoding="utf-8").replace("port = 8443", f"port = {port}")
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"')
    config.write_text(text, encoding="utf-8")
    result = _healthcheck(config)
    assert result.returncode == EXIT_FAILED
    assert result.stderr.startswith(f"healthcheck: https://{probed}:{port}/healthz: ")
    assert "Traceback" not in result.stderr


def test_sigterm_stops_the_server_gracefully(tmp_path: Path) -> None:
    """On SIGTERM the server closes its providers, logs `service.stopped` and exits 0."""
    server = _start_server(tmp_path)
    assert _stop(server) == 0
    events = [
        json.loads(line)
        for line in server.log.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    names = [e["event"] for e in events]
    assert names.index("service.started") < names.index("service.stopped")
    assert "tls.dev_certificate" in names
    started = next(e for e in events if e["event"] == "service.started")
    assert started["providers"] == {"inventory": True}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "send: give --secret, --secret-file or POSTURE_WEBHOOK_SECRET"),
        (["--secret-file", "/nonexistent/secret"], "send: [Errno 2] No such file or directory"),
        (["--secret", "not*base64"], "send: secret is not valid base64"),
        (["--secret", "c2VjcmV0", "--basic-auth", "nocolon"], "send: --basic-auth takes USER:"),
        (["--secret", "c2VjcmV0", "--cacert", "/nonexistent/ca.crt"], "send: [Errno 2]"),
    ],
    ids=["no-secret", "missing-secret-file", "bad-secret", "basic-without-colon", "missing-ca"],
)
def test_send_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    """A usage mistake exits 2 with one line, never 1, which scripts would read as a deny."""
    monkeypatch.delenv("POSTURE_WEBHOOK_SECRET", raising=False)
    args = ["send", "--url", "https://127.0.0.1:9/x", "--id", "a", "--identifier", "C02QUICK0001"]
    assert main([*args, *extra]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith(message)


def test_send_to_a_closed_port_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When nothing answers, `send` exits 3 and says the request failed."""
    monkeypatch.setenv("POSTURE_WEBHOOK_SECRET", "c2VjcmV0")
    url = f"https://127.0.0.1:{_free_port()}/webhooks/people"
    assert main(["send", "--url", url, "--id", "a", "--identifier", "C02QUICK0001"]) == EXIT_FAILED
    assert capsys.readouterr().err.startswith("send: request failed:")
