"""docs/step-ca-setup.md runs as written against a real step-ca, then a simulated device enrols.

The guide's shell blocks are marked with HTML comments just above their fence:

- ``<!-- guide-test: settings -->``: ``NAME=value`` lines for the admin to edit. The test swaps in
  the values of a throwaway CA and connector, and refuses a name it does not know.
- ``<!-- guide-test -->``: run as written, in order, in one bash session (``set -euo pipefail``).
- ``<!-- guide-test: background -->``: the long-running service. It is started in the background,
  with its output to ``$CONNECTOR_LOG``.
- ``<!-- guide-test: after-enrolment -->``: run after the simulated device has enrolled.

Every ``sh`` block must carry one of these markers, so no command in the guide goes untested.
The one step the test adds is for the simulated device: its fake attestation root goes on the
provisioner, because a real device is checked against the Apple root that step-ca has built in.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from posture_lab import TEMPLATES_DIR, StepCA, StepTools, free_port, summarize
from posture_lab.devicesim import AcmeClient, AcmeError, AttestationCA, SimulatedDevice, enrol

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "step-ca-setup.md"
MARKER = re.compile(r"^\s*<!-- guide-test(?::\s*(?P<kind>[\w-]+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)\s*$")
KINDS = frozenset({"run", "settings", "background", "after-enrolment"})
ASSIGNMENT = re.compile(r"^(?P<export>export\s+)?(?P<name>[A-Z_]+)=")
MANAGED = "C02GUIDEMNGD"
UNMANAGED = "C02GUIDELOAN"
INVENTORY = (
    "serial,name,platform,os_version,managed,owner_type,username,email,full_name,department,groups\n"
    f"{MANAGED},MBP-CAROL,macOS,15.3,true,company,carol,carol@example.com,Carol Example,"
    "Security Engineering,Engineering;VPN Users\n"
    f"{UNMANAGED},MBA-LOANER,macOS,14.7,false,company,,,,,Loaners\n"
)


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block of the guide.

    Attributes:
        kind: the marker's kind (``run`` when the marker has none), or "" when unmarked.
        lang: the fence's language.
        text: the block's lines, without the fence's indentation.
        line: where the fence opens (1-based), for messages.
    """

    kind: str
    lang: str
    text: str
    line: int


def blocks(markdown: str) -> list[Block]:
    """Every fenced block with the marker right above it (blank lines allowed between)."""
    found: list[Block] = []
    lines = markdown.splitlines()
    pending = ""
    index = 0
    while index < len(lines):
        marker, fence = MARKER.match(lines[index]), FENCE.match(lines[index])
        if marker:
            pending = marker.group("kind") or "run"
        elif fence and fence.group("lang"):
            indent, start, body = len(fence.group("indent")), index, []
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index][indent:])
                index += 1
            found.append(Block(pending, fence.group("lang"), "\n".join(body), start + 1))
            pending = ""
        elif lines[index].strip():
            pending = ""
        index += 1
    return found


def shell_blocks() -> list[Block]:
    """The guide's sh blocks."""
    return [b for b in blocks(GUIDE.read_text(encoding="utf-8")) if b.lang == "sh"]


def with_settings(block: Block, values: dict[str, str]) -> str:
    """The settings block with each assignment's value replaced; unknown names fail the test."""
    out, seen = [], set()
    for line in block.text.splitlines():
        match = ASSIGNMENT.match(line)
        if not match:
            assert not line.strip() or line.lstrip().startswith("#"), line
            continue
        name = match.group("name")
        assert name in values, f"the guide sets {name}; teach tests/e2e/test_setup_guide.py it"
        seen.add(name)
        out.append(f"{match.group('export') or ''}{name}={values[name]}")
    assert seen == set(values), f"the test sets names the guide no longer has: {set(values) - seen}"
    return "\n".join(out)


def test_every_shell_block_of_the_guide_is_tested() -> None:
    """Each sh block carries a guide-test marker of a known kind, and the settings come first."""
    found = shell_blocks()
    assert found
    unmarked = [b.line for b in found if b.kind not in KINDS]
    assert unmarked == [], f"sh blocks without a guide-test marker at lines {unmarked}"
    assert found[0].kind == "settings"
    assert [b.kind for b in found].count("background") == 1


def test_the_parser_sees_markers_and_only_sh_blocks() -> None:
    """Control: a marked block, an unmarked block and a marker separated by text are told apart."""
    sample = (
        "<!-- guide-test: settings -->\n```sh\nA=1\n```\n\n"
        "text\n\n```sh\necho untested\n```\n"
        "<!-- guide-test -->\nsome words\n```sh\necho stray\n```\n"
        "  <!-- guide-test -->\n  ```sh\n  echo indented\n  ```\n"
        "```json\n{}\n```\n"
    )
    assert [(b.kind, b.lang, b.text) for b in blocks(sample)] == [
        ("settings", "sh", "A=1"),
        ("", "sh", "echo untested"),
        ("", "sh", "echo stray"),
        ("run", "sh", "echo indented"),
        ("", "json", "{}"),
    ]


@dataclass(frozen=True, slots=True)
class Setup:
    """The throwaway CA and where the guide put the connector.

    Attributes:
        ca: the running step-ca (stands in for the admin's existing CA).
        settings: the values given to the guide's settings block (shell words).
        env: the environment the guide's blocks run in.
        connector_dir: the guide's ``$CONNECTOR_DIR``.
        pid_file: where the background block's process id is written.
    """

    ca: StepCA
    settings: dict[str, str]
    env: dict[str, str]
    connector_dir: Path
    pid_file: Path


@pytest.fixture
def setup(step_tools: StepTools, tmp_path: Path) -> Iterator[Setup]:
    """An existing step-ca with remote management, and the values for the guide's settings."""
    ca = StepCA(step_tools, tmp_path / "ca")
    ca.init(name="guide-test")
    ca.start()
    connector_dir = tmp_path / "posture-connector"
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(INVENTORY, encoding="utf-8")
    password = shlex.quote(str(ca.password_file))
    quote = shlex.quote
    settings = {
        "STEPPATH": quote(str(ca.steppath)),
        "STEP_CA_URL": quote(ca.url),
        "STEP_ROOT": quote(str(ca.root)),
        "ADMIN": f"(--admin-subject step --admin-provisioner admin --admin-password-file {password})",
        "PROVISIONER_PASSWORD_FILE": password,
        "CA_DNS_NAME": "localhost",
        "CA_LOG": quote(str(ca.log_path)),
        "CONNECTOR_HOST": "127.0.0.1",
        "CONNECTOR_PORT": str(free_port()),
        "LISTEN_HOST": "127.0.0.1",
        "CONNECTOR_DIR": quote(str(connector_dir)),
        "CONNECTOR_LOG": quote(str(tmp_path / "connector.log")),
        "INVENTORY": quote(str(inventory)),
        "TEMPLATE": quote(str(TEMPLATES_DIR / "device-identity.tpl")),
    }
    path = os.pathsep.join(
        [str(step_tools.step.parent), str(Path(sys.executable).parent), os.environ["PATH"]]
    )
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path)}
    pid_file = tmp_path / "connector.pid"
    try:
        yield Setup(ca, settings, env, connector_dir, pid_file)
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text(encoding="utf-8"))
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                _wait_gone(pid)
        ca.stop()


def _wait_gone(pid: int) -> None:
    """Wait for the background connector (not our child: bash started it) to exit."""
    for _ in range(150):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        subprocess.run(["sleep", "0.1"], check=True)  # noqa: S607 - coreutils sleep
    os.kill(pid, signal.SIGKILL)


def script(setup: Setup, phase: frozenset[str]) -> str:
    """The guide's blocks of `phase`, after its settings, as one bash script."""
    found = shell_blocks()
    lines = ["set -euo pipefail", with_settings(found[0], setup.settings)]
    for number, block in enumerate(found[1:], start=2):
        if block.kind not in phase:
            continue
        lines.append(f"echo '### guide block {number} (line {block.line})' >&2")
        if block.kind == "background":
            command = block.text.strip()
            assert "\n" not in command, "a background block holds one command"
            lines.append(f'{command} >"$CONNECTOR_LOG" 2>&1 &')
            lines.append(f"echo $! > {shlex.quote(str(setup.pid_file))}")
            lines.append(
                "for _ in $(seq 300); do "
                'posture-connector healthcheck --config "$CONNECTOR_DIR/config.toml" --ready '
                ">/dev/null 2>&1 && break; sleep 0.1; done"
            )
        else:
            lines.append(block.text)
    return "\n".join(lines) + "\n"


def run_guide(setup: Setup, phase: frozenset[str]) -> subprocess.CompletedProcess[str]:
    """Run one phase of the guide in bash; fails the test with the output if a command fails."""
    result = subprocess.run(
        ["bash", "-c", script(setup, phase)],  # noqa: S607 - the shell the guide is written for
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_the_setup_guide_yields_enriched_device_certificates(setup: Setup, tmp_path: Path) -> None:
    """Following the guide, a managed device gets an enriched certificate; the rest is refused."""
    before = run_guide(setup, frozenset({"run", "background"}))
    assert '"disableRenewal": true' in before.stdout
    assert "localhost" in before.stdout  # the names in step-ca's certificate (section 5)
    assert "certificate not renewed" in before.stdout + before.stderr  # still 24 h left

    # Only for the simulated device: trust its fake Apple attestation root.
    attestation = AttestationCA.generate()
    roots = tmp_path / "attestation-root.pem"
    roots.write_bytes(attestation.root_pem)
    setup.ca.step(
        "ca", "provisioner", "update", "devices", f"--attestation-roots={roots}",
        "--admin-subject", "step", "--admin-provisioner", "admin",
        "--admin-password-file", str(setup.ca.password_file),
        "--ca-url", setup.ca.url, "--root", str(setup.ca.root),
    )  # fmt: skip

    directory = setup.ca.acme_directory("devices")
    unmanaged = SimulatedDevice.generate(serial=UNMANAGED)
    with AcmeClient(directory, ca_file=setup.ca.root) as client, pytest.raises(AcmeError) as denied:
        enrol(client, unmanaged, attestation, identifier=UNMANAGED)
    assert denied.value.status == 401
    assert "urn:smallstep:acme:error:device-unmanaged" in denied.value.types

    device = SimulatedDevice.generate(serial=MANAGED)
    with AcmeClient(directory, ca_file=setup.ca.root) as client:
        issued = enrol(client, device, attestation, identifier=MANAGED)
    summary = summarize(issued.leaf)
    assert summary.common_name == "carol"
    assert summary.emails == ("carol@example.com",)
    assert set(summary.organizational_units) == {"Engineering", "VPN Users"}
    assert summary.department == "Security Engineering"
    assert summary.permanent_identifiers == (MANAGED,)
    assert issued.leaf.public_key() == device.key.public_key()

    after = run_guide(setup, frozenset({"after-enrolment"}))
    ca_lines = [line for line in after.stdout.splitlines() if "request-id=" in line]
    events = [json.loads(line) for line in after.stdout.splitlines() if '"request_id"' in line]
    assert any("/finalize" in line for line in ca_lines)
    decisions = {(e["event"], e["webhook"], e["identifier"], e["allow"]) for e in events}
    assert decisions == {
        ("webhook.decision", "people", MANAGED, True),
        ("webhook.decision", "gate", MANAGED, True),
    }
    assert len({e["request_id"] for e in events}) == 1

    # --disable-renewal: the device cannot renew around the next posture check.
    cert, key = tmp_path / "device.crt", tmp_path / "device.key"
    pem = serialization.Encoding.PEM
    cert.write_bytes(b"".join(c.public_bytes(pem) for c in issued.chain))
    key.write_bytes(
        device.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    offset = setup.ca.log_offset()
    renewal = subprocess.run(
        ["step", "ca", "renew", "--force", str(cert), str(key)],  # noqa: S607 - the pinned step
        env={**setup.env, "STEP_CA_URL": setup.ca.url, "STEP_ROOT": str(setup.ca.root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert renewal.returncode != 0
    assert "renew is disabled for provisioner 'devices'" in setup.ca.log_since(offset)


def test_a_setting_the_test_does_not_know_is_refused() -> None:
    """Control: a new name in the settings block stops the test until it learns a value for it."""
    block = Block("settings", "sh", "export NEW_THING=/etc/thing  # a comment", 1)
    with pytest.raises(AssertionError, match="the guide sets NEW_THING"):
        with_settings(block, {})
