"""The "try it" blocks of the Jamf Pro and Intune pages (docs/providers/) work as written: each command runs in a
shell from the repository root against the fake it starts, and each lookup's verdict is the one
its comment promises. Only the fake's port differs, so parallel runs cannot collide."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "providers"
BASH = shutil.which("bash") or "/bin/bash"


def sh_block(page: str, heading: str) -> list[str]:
    """The lines of the first ```sh block after `heading` on `page` (under docs/providers/)."""
    text = (PAGES / page).read_text(encoding="utf-8")
    after = text[text.index(f"\n{heading}\n") :]
    block = after[after.index("```sh\n") + 6 :]
    return block[: block.index("```")].splitlines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("page", "heading", "example", "started"),
    [
        ("jamf.md", "## Try it without Jamf", "jamf.toml", "fake Jamf Pro on http://127.0.0.1:"),
        ("intune.md", "## Try it with the fake Graph", "intune.toml", "fake Graph for tenant "),
    ],
    ids=["jamf", "intune"],
)
def test_readme_try_it_commands_work_as_written(
    tmp_path: Path, page: str, heading: str, example: str, started: str
) -> None:
    """Start the fake as the first line says, export as written, and every lookup exits 0 for
    an allow and 1 for a deny, printing the reason code its comment names."""
    start, *lines = sh_block(page, heading)
    command, background, _ = start.partition("&")
    assert background, f"{heading}: the first line starts the fake in the background"
    readme_port = re.search(r"--port (\d+)", command)
    assert readme_port is not None
    port = str(_free_port())
    # The example config, pointing at the port this run's fake got.
    for name in (example, "quickstart.secret", "quickstart-gate.secret"):
        text = (ROOT / "examples" / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(readme_port.group(1), port), encoding="utf-8")
    tools = Path(sys.executable).parent  # `python`, `posture-connector`: an activated venv
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    fake = subprocess.Popen(
        [BASH, "-c", "exec " + command.replace(readme_port.group(1), port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert fake.stdout is not None
        assert fake.stdout.readline().startswith(started)
        lookups = 0
        for line in lines:
            shell, _, comment = line.partition("#")
            if shell.startswith("export "):
                name, _, value = shell.removeprefix("export ").strip().partition("=")
                env[name] = value
                continue
            assert shell.startswith("posture-connector lookup "), line
            result = _shell(shell.replace(f"examples/{example}", str(tmp_path / example)), env)
            verdict = result.stdout.splitlines()[0] if result.stdout else result.stderr
            expected = comment.split()[0].rstrip(",")
            if expected in ("allow", "allowed"):
                assert (result.returncode, verdict.rsplit(": ", 1)[-1]) == (0, "allow"), verdict
            else:
                assert (result.returncode, verdict.rsplit(": ", 1)[-1]) == (1, f"deny {expected}")
            assert result.stderr == "", result.stderr
            lookups += 1
        assert lookups == 4
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        if fake.stdout is not None:
            fake.stdout.close()
