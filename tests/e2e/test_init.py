"""`posture-connector init` against the real step CLI and step-ca: the commands it prints are the
ones step accepts, and what step prints completes the config so that check-config passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posture_lab import Lab

pytestmark = pytest.mark.e2e

BASH = shutil.which("bash") or "/bin/bash"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_init_then_step_then_init_gives_a_config_check_config_passes(
    lab: Lab, tmp_path: Path
) -> None:
    """Run init, the step commands it printed (plus the admin flags), init with step's output,
    and check-config --online passes with step-ca's ids and secrets in place."""
    roots = lab.directory / "attestation-root.pem"
    lab.ca.add_acme_provisioner("init-demo", attestation_roots=roots)
    config = tmp_path / "config.toml"
    first = _cli(
        "init", "--config", str(config), "--provisioner", "init-demo",
        "--url", lab.connector_url, "--no-input", cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    printed = first.stdout.split("here they go to a file, not your terminal:\n\n")[1]
    commands = printed.split("\n\nthen:\n")[0]
    admin = (
        f" --admin-subject step --admin-provisioner admin "
        f"--admin-password-file {lab.ca.password_file} --ca-url {lab.ca.url} --root {lab.ca.root}"
    )
    script = "set -e\n" + "\n".join(  # each command runs in a subshell: (umask 077; ...)
        line.replace(".webhook)", f".webhook{admin})") for line in commands.splitlines()
    )
    env = {
        **os.environ,
        "PATH": f"{lab.tools.step.parent}{os.pathsep}{os.environ['PATH']}",
        "STEPPATH": str(lab.ca.steppath),
    }
    step = subprocess.run(
        [BASH, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert step.returncode == 0, step.stderr
    assert "Secret:" not in step.stdout  # it went into the files
    for name in ("people", "gate"):  # which only their owner may read
        assert (tmp_path / f"{name}.webhook").stat().st_mode & 0o077 == 0

    then = first.stdout.split("\n\nthen:\n  posture-connector ")[1].splitlines()[0]
    second = _cli(*then.split(), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "valid; check it against the real services" in second.stdout
    for name in ("people", "gate"):
        secret = (tmp_path / f"{name}.webhook").read_text(encoding="utf-8").split("Secret: ")[1]
        assert secret.strip() not in second.stdout
        assert (tmp_path / f"{name}.secret").read_text(encoding="utf-8") == secret

    checked = _cli("check-config", "--config", str(config), "--online", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "  ok    webhook people: id and secret look like step-ca's" in checked.stdout
    assert "  ok    webhook gate: id and secret look like step-ca's" in checked.stdout
    assert "warning:" not in checked.stderr
