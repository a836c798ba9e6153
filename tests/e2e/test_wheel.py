"""The built wheel, installed into fresh virtualenvs outside the repository.

A plain install is the service and `send` (no cbor2); ``[lab]`` adds what the lab needs, and the
lab then runs from the installed package alone: its templates are package data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from posture_lab import Lab, StepTools
from tests.e2e.conftest import MANAGED_SERIAL

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Venv:
    """A virtualenv holding the wheel, and a working directory outside the repository.

    Attributes:
        path: the virtualenv.
        cwd: where commands run (beside the virtualenv, far from the checkout).
    """

    path: Path
    cwd: Path

    def run(
        self, program: str, *args: str, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the virtualenv's programs with an environment that points nowhere else."""
        hidden = {"PYTHONPATH", "VIRTUAL_ENV", "STEP_TOOLS_DIR", "POSTURE_WEBHOOK_SECRET"}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        env["PATH"] = os.pathsep.join([str(self.path / "bin"), "/usr/bin", "/bin"])
        return subprocess.run(
            [str(self.path / "bin" / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.cwd,
            env=env,
        )


def _checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _venv(base: Path, requirement: str) -> Venv:
    """`python -m venv`, then `pip install requirement` (pip's cache makes it quick)."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "venv"
    _checked(
        subprocess.run(
            [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, check=False
        ),
        "python -m venv",
    )
    venv = Venv(path=path, cwd=base)
    _checked(venv.run("python", "-m", "pip", "install", "-q", requirement), "pip install")
    return venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built the way a user builds it (isolated hatchling)."""
    out = tmp_path_factory.mktemp("dist")
    command: Sequence[str] = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w"]
    _checked(
        subprocess.run(
            [*command, str(out), str(ROOT)], capture_output=True, text=True, check=False
        ),
        "pip wheel",
    )
    (built,) = out.glob("posture_connector-*.whl")
    return built


@pytest.fixture(scope="module")
def plain(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel without extras: what a production host installs."""
    return _venv(tmp_path_factory.mktemp("plain"), str(wheel))


@pytest.fixture(scope="module")
def with_lab(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with the ``[lab]`` extra."""
    return _venv(tmp_path_factory.mktemp("with-lab"), f"{wheel}[lab]")


def test_plain_install_lacks_cbor2_and_lab_names_the_extra(plain: Venv) -> None:
    """Without the extra cbor2 is absent, declared only for `lab`, and `lab` says what to install."""
    probe = (
        "import importlib.metadata as m, importlib.util as u, json;"
        "print(json.dumps([u.find_spec('cbor2') is None, m.requires('posture-connector')]))"
    )
    absent, requires = json.loads(_checked(plain.run("python", "-c", probe), "probe"))
    cbor2 = [r.replace('"', "'") for r in requires if r.startswith("cbor2")]
    assert absent is True
    assert cbor2
    assert all("; extra == " in r for r in cbor2), cbor2
    assert "cbor2>=5.6; extra == 'lab'" in cbor2

    result = plain.run("posture-connector", "lab")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "lab: the lab needs: pip install 'posture-connector[lab]' (missing: cbor2)"
    ]


def test_plain_install_sends_to_a_real_connector(plain: Venv, lab: Lab) -> None:
    """`send` from a plain install (no cbor2) gets an allow from the lab's connector over mTLS."""
    tls = lab.connector_dir
    result = plain.run(
        "posture-connector", "send",
        "--url", lab.webhook_url("people"),
        "--id", lab.webhooks["people"].id,
        "--secret-file", str(lab.secret_file("people")),
        "--cacert", str(lab.ca.root),
        "--cert", str(tls / "tls.crt"),
        "--key", str(tls / "tls.key"),
        "--identifier", MANAGED_SERIAL,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert '"allow": true' in result.stdout


def test_lab_runs_from_the_installed_wheel(with_lab: Venv, step_tools: StepTools) -> None:
    """Installed with ``[lab]`` and run outside the checkout, the lab enrols with its own template."""
    probe = "import connector, posture_lab; print(connector.__file__); print(posture_lab.__file__)"
    where = _checked(with_lab.run("python", "-c", probe), "import").splitlines()
    assert all(Path(path).is_relative_to(with_lab.path) for path in where), where

    result = with_lab.run(
        "posture-connector", "lab",
        "--dir", str(with_lab.cwd / "lab"),
        "--step-bin", str(step_tools.step_ca.parent),
        "--serial", MANAGED_SERIAL,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"ISSUED   {MANAGED_SERIAL} by serial") for line in lines), lines
    # Only the packaged device-identity.tpl puts the user and the department into the certificate.
    assert "         subject CN: alice" in lines
    assert "         department (1.3.6.1.4.1.99999.1): Research & Development" in lines
    assert (with_lab.cwd / "lab" / f"{MANAGED_SERIAL}.crt").exists()
