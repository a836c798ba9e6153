"""`posture-connector init`: a starter config that check-config accepts, one secret file per
webhook (mode 0600), the step-ca commands to run, and the ids and secrets step-ca printed put in
without ever being echoed."""

from __future__ import annotations

import asyncio
import base64
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from connector.cli import EXIT_CONFIG, EXIT_OK, main
from connector.cli._starter import PLACEHOLDER_ID
from providers.registry import KINDS
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app

pytestmark = pytest.mark.usefixtures("restore_logging")

ROOT = Path(__file__).resolve().parent.parent
PEOPLE_ID = "5b0e3f7a-8c1d-4e2f-9a3b-6c7d8e9f0a1b"
GATE_ID = "c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"
PEOPLE_SECRET = base64.b64encode(bytes(range(64))).decode()
GATE_SECRET = base64.b64encode(bytes(range(64, 128))).decode()


def _step_output(folder: Path, name: str, webhook_id: str, secret: str) -> Path:
    """What `step ca provisioner webhook add ... > NAME.webhook` leaves in the file."""
    path = folder / f"{name}.webhook"
    path.write_text(f"Webhook ID: {webhook_id}\nSecret: {secret}\n", encoding="utf-8")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_config_check_config_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The starter config validates at once, each webhook has its own 0600 secret file, and
    the printed step commands create both webhooks with the kinds, URL and cert type."""
    config = tmp_path / "etc" / "config.toml"
    url = "https://connector.example.com:9443"
    assert main(["init", "--config", str(config), "--url", url, "--no-input"]) == EXIT_OK
    out = capsys.readouterr().out
    secrets = [(config.parent / f"{n}.secret") for n in ("people", "gate")]
    assert all(_mode(s) == 0o600 for s in secrets)
    values = [s.read_text(encoding="utf-8").strip() for s in secrets]
    assert values[0] != values[1]
    assert all(len(base64.b64decode(v)) == 64 for v in values)
    assert not [v for v in values if v in out]
    assert (
        "  (umask 077; step ca provisioner webhook add devices people \\\n"
        f"    --url {url}/webhooks/people \\\n"
        "    --kind ENRICHING --cert-type X509 > people.webhook)\n"
    ) in out
    assert f"    --url {url}/webhooks/gate \\\n    --kind AUTHORIZING --cert-type X509" in out
    assert (config.parent / "inventory.csv").read_text(encoding="utf-8").startswith("serial,udid,")

    assert main(["check-config", "--config", str(config)]) == EXIT_OK
    checked = capsys.readouterr()
    assert "listen: https://0.0.0.0:9443" in checked.out
    assert "webhooks[0].id: not a UUID" in checked.err  # the placeholder is flagged


def test_step_output_others_may_read_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """step's saved output holds the secret: one that others may read (saved without umask
    077) is named on stderr, with what to do; one only its owner reads is not."""
    config = tmp_path / "config.toml"
    assert main(["init", "--config", str(config), "--no-input"]) == EXIT_OK
    people = _step_output(tmp_path, "people", PEOPLE_ID, PEOPLE_SECRET)
    gate = _step_output(tmp_path, "gate", GATE_ID, GATE_SECRET)
    people.chmod(0o644)
    gate.chmod(0o600)
    capsys.readouterr()
    args = ["init", "--config", str(config), "--step-output", f"people={people}"]
    assert main([*args, "--step-output", f"gate={gate}"]) == EXIT_OK
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f"init: warning: {people} holds the webhook secret and others may read it; delete it "
        "once init has copied the secret (saved with umask 077 next time)"
    ]


def test_init_never_writes_through_a_link_left_in_the_folder(tmp_path: Path) -> None:
    """A dangling link where the inventory goes is left alone: init writes nothing through
    it (someone who could write to the folder could point it anywhere)."""
    folder, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "inventory.csv").symlink_to(elsewhere / "authorized_keys")
    assert main(["init", "--config", str(folder / "config.toml"), "--no-input"]) == EXIT_OK
    assert not (elsewhere / "authorized_keys").exists()
    assert (folder / "inventory.csv").is_symlink()


def test_init_takes_step_output_and_then_check_config_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given step's saved output, init puts each id into the config and each secret into its
    file, prints neither secret, and check-config then passes without a warning."""
    config = tmp_path / "config.toml"
    assert main(["init", "--config", str(config), "--no-input"]) == EXIT_OK
    people = _step_output(tmp_path, "people", PEOPLE_ID, PEOPLE_SECRET)
    gate = _step_output(tmp_path, "gate", GATE_ID, GATE_SECRET)
    capsys.readouterr()
    args = ["init", "--config", str(config), "--step-output", f"people={people}"]
    assert main([*args, "--step-output", f"gate={gate}"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"people: id {PEOPLE_ID}" in out
    assert f"{config}: valid;" in out
    assert PEOPLE_SECRET not in out
    assert GATE_SECRET not in out
    assert (tmp_path / "gate.secret").read_text(encoding="utf-8") == GATE_SECRET + "\n"
    assert _mode(tmp_path / "gate.secret") == 0o600
    webhooks = tomllib.loads(config.read_text(encoding="utf-8"))["webhooks"]
    assert [(h["name"], h["id"]) for h in webhooks] == [("people", PEOPLE_ID), ("gate", GATE_ID)]

    assert main(["check-config", "--config", str(config)]) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_init_takes_ids_and_secrets_as_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--webhook-id NAME=ID --webhook-secret NAME=SECRET` on a new config writes it complete."""
    config = tmp_path / "config.toml"
    args = ["init", "--config", str(config), "--webhook-id", f"gate={GATE_ID}"]
    assert main([*args, "--webhook-secret", f"gate={GATE_SECRET}"]) == EXIT_OK
    out = capsys.readouterr().out
    assert GATE_SECRET not in out
    assert "step ca provisioner webhook add devices people" in out  # still to create
    assert "provisioner webhook add devices gate" not in out
    assert (tmp_path / "gate.secret").read_text(encoding="utf-8").strip() == GATE_SECRET


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-secret", "gate=not*base64"], "the secret given for gate is not base64"),
        (["--webhook-id", "nope=abc"], "no webhook named nope (have: people, gate)"),
        (["--webhook-id", "gate"], "--webhook-id takes NAME=VALUE"),
        (["--webhook-id", 'gate=a"b'], "the id given for gate is not an id step-ca prints"),
        (["--webhook-id", "gate=ab\x7fcd"], "the id given for gate is not an id step-ca prints"),
        ([], "exists: give --webhook-id/--webhook-secret or --step-output"),
    ],
    ids=[
        "bad-secret",
        "unknown-webhook",
        "no-equals",
        "quote-in-id",
        "control-in-id",
        "nothing-to-do",
    ],
)
def test_init_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A mistake in what init is given exits 2 with one line, and leaves the config as it was."""
    config = tmp_path / "config.toml"
    assert main(["init", "--config", str(config), "--no-input"]) == EXIT_OK
    before = config.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["init", "--config", str(config), "--no-input", *args]) == EXIT_CONFIG
    assert message in capsys.readouterr().err
    assert config.read_text(encoding="utf-8") == before


def test_init_writes_nothing_when_a_secret_cannot_be_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webhook whose secret is inline (not a file init may write) refuses the whole change:
    the id given with it is not written either (the config held a new id and an old secret)."""
    config = tmp_path / "config.toml"
    assert main(["init", "--config", str(config), "--no-input"]) == EXIT_OK
    inline = config.read_text(encoding="utf-8").replace(
        'secret = { file = "gate.secret" }', f'secret = "{GATE_SECRET}"'
    )
    config.write_text(inline, encoding="utf-8")
    capsys.readouterr()
    args = ["--webhook-id", f"gate={GATE_ID}", "--webhook-secret", f"gate={GATE_SECRET}"]
    assert main(["init", "--config", str(config), "--no-input", *args]) == EXIT_CONFIG
    assert 'webhook gate: secret is not { file = "..." }' in capsys.readouterr().err
    assert config.read_text(encoding="utf-8") == inline


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_provider_kind_gets_a_commented_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Each kind's template is valid TOML naming the kind, with its required keys to fill in,
    every optional key commented out, and an empty 0600 file for each credential."""
    config = tmp_path / "config.toml"
    assert main(["init", "--config", str(config), "--provider", kind, "--no-input"]) == EXIT_OK
    document = tomllib.loads(config.read_text(encoding="utf-8"))
    [table] = document["providers"].values()
    model = KINDS[kind].settings
    assert table["kind"] == kind
    assert {k for k, f in model.model_fields.items() if f.is_required()} <= set(table)
    text = config.read_text(encoding="utf-8")
    optional = [k for k, f in model.model_fields.items() if not f.is_required() and k not in table]
    assert all(f"# {key} = " in text for key in optional)
    for value in table.values():
        if isinstance(value, dict):  # { file = "..." }: created empty, owner-only
            path = tmp_path / value["file"]
            assert (path.read_text(encoding="utf-8"), _mode(path)) == ("", 0o600)
    assert document["webhooks"][0]["providers"] == list(document["providers"])


async def test_a_jamf_template_filled_in_passes_the_online_check(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """The afternoon: init a Jamf config, fill in url, client id and the secret file, give the
    step-ca ids and secrets, and `check-config --online` passes against (the fake) Jamf."""
    server = await aiohttp_server(
        jamf_app(FakeJamf.from_file(ROOT / "tests/fakes/jamf_devices.json"))
    )
    config = tmp_path / "config.toml"
    people = _step_output(tmp_path, "people", PEOPLE_ID, PEOPLE_SECRET)
    gate = _step_output(tmp_path, "gate", GATE_ID, GATE_SECRET)
    await _cli(
        "init", "--config", str(config), "--provider", "jamf", "--no-input",
        "--step-output", f"people={people}", "--step-output", f"gate={gate}",
    )  # fmt: skip
    text = config.read_text(encoding="utf-8")
    text = text.replace('url = "CHANGE-ME"', f'url = "{str(server.make_url("")).rstrip("/")}"')
    text = text.replace('client_id = "CHANGE-ME"', 'client_id = "posture-connector"')
    config.write_text(text, encoding="utf-8")
    (tmp_path / "jamf-client_secret.secret").write_text("fake-secret\n", encoding="utf-8")
    code, out = await _cli("check-config", "--config", str(config), "--online")
    assert code == EXIT_OK, out
    assert "  ok    provider jamf: jamf: started and answered a lookup" in out
    assert "  ok    webhook gate: id and secret look like step-ca's" in out


async def _cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


class Terminal:
    """The parent's end of a pseudo-terminal: waits for what the child writes, types into it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = bytearray()
        self._cursor = 0

    def expect(self, marker: bytes, timeout: float = 20) -> None:
        """Wait until `marker` appears after the previous match."""
        deadline = time.monotonic() + timeout
        while (found := self.seen.find(marker, self._cursor)) < 0:
            assert time.monotonic() < deadline, self.seen.decode(errors="replace")
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, self.seen.decode(errors="replace")
                self.seen += chunk
        self._cursor = found + len(marker)

    def type(self, text: str) -> None:
        """Type a line."""
        os.write(self.fd, text.encode() + b"\r")


def _reap(pid: int, grace: float = 5) -> int:
    """The child's wait status; killed when it has not ended within `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def test_init_asks_on_a_terminal_and_never_echoes_the_secret(tmp_path: Path) -> None:
    """On a terminal, init asks for each webhook's id and secret; the secret typed is not
    shown, and both land where they belong."""
    config = tmp_path / "config.toml"
    command = [sys.executable, "-m", "connector", "init", "--config", str(config)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the pseudo-terminal as its terminal
        os.chdir(ROOT)
        os.execv(sys.executable, command)  # noqa: S606 - our own CLI, arguments we built
    terminal = Terminal(fd)
    try:
        for webhook_id, secret in ((PEOPLE_ID, PEOPLE_SECRET), (GATE_ID, GATE_SECRET)):
            terminal.expect(b"Webhook ID: ")
            terminal.type(webhook_id)
            terminal.expect(b"Secret (not shown): ")
            terminal.type(secret)
        terminal.expect(b"valid;")
    finally:
        status = _reap(pid)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == EXIT_OK, terminal.seen.decode(errors="replace")
    text = terminal.seen.decode(errors="replace")
    assert PEOPLE_ID in text  # the id is echoed as typed
    assert PEOPLE_SECRET not in text
    assert GATE_SECRET not in text
    assert (tmp_path / "people.secret").read_text(encoding="utf-8").strip() == PEOPLE_SECRET
    ids = [h["id"] for h in tomllib.loads(config.read_text(encoding="utf-8"))["webhooks"]]
    assert ids == [PEOPLE_ID, GATE_ID]
    assert PLACEHOLDER_ID not in config.read_text(encoding="utf-8")


def test_init_writes_nothing_but_its_files(tmp_path: Path) -> None:
    """A subprocess run of init in an empty folder leaves only the config, the secrets and the
    inventory there (the CLI writes no store, cache or log beside them)."""
    config = tmp_path / "config.toml"
    result = subprocess.run(
        [sys.executable, "-m", "connector", "init", "--config", str(config), "--no-input"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_OK, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.toml", "gate.secret", "inventory.csv", "people.secret",
    ]  # fmt: skip
