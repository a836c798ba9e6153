"""`posture-connector lab` is an optional extra: the service never imports it, the CLI hands over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.cli import EXIT_CONFIG, main
from posture_lab import TEMPLATES_DIR, packaged_templates
from posture_lab._cli import template_file

ROOT = Path(__file__).resolve().parent.parent

# Imports every module of the service and the providers, then lists what came along.
IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import connector, providers
for package in (connector, providers):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_service_never_imports_the_lab_or_cbor2() -> None:
    """Importing every connector and providers module loads neither posture_lab nor cbor2."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    modules = json.loads(result.stdout)

    assert "connector.cli" in modules
    assert "providers" in modules
    assert [m for m in modules if m.split(".")[0] in {"posture_lab", "cbor2"}] == []


def test_lab_options_belong_to_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    """`lab --help` is the lab's own parser, listing the packaged templates."""
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "--help"])

    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: posture-connector lab")
    assert "--step-bin" in out
    assert "device-identity.tpl,device-only.tpl" in "".join(out.split())


def test_other_commands_still_reject_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Handing unknown options to the lab does not make other commands accept them."""
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config", "examples/quickstart.toml", "--template", "x.tpl"])

    assert exit_info.value.code == EXIT_CONFIG
    assert "unrecognized arguments: --template x.tpl" in capsys.readouterr().err


def test_template_by_name_is_the_packaged_file() -> None:
    """`--template device-only.tpl` means the packaged template when no such file is at hand."""
    assert packaged_templates() == ["device-identity.tpl", "device-only.tpl"]
    assert template_file("device-only.tpl") == TEMPLATES_DIR / "device-only.tpl"
    assert template_file(str(TEMPLATES_DIR / "device-identity.tpl")).is_file()


def test_unknown_template_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A template that is neither a file nor a packaged name exits 2 and lists the packaged ones."""
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "--template", "nope.tpl"])

    assert exit_info.value.code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert (
        "no file 'nope.tpl' nor a packaged template (device-identity.tpl, device-only.tpl)" in err
    )


def test_missing_step_binaries_are_a_setup_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `--step-bin` without step-ca and step exits 2 naming the directory, before any work."""
    assert main(["lab", "--step-bin", str(tmp_path), "--dir", str(tmp_path / "lab")]) == 2

    assert capsys.readouterr().err == f"lab: step-ca and step not found in {tmp_path}\n"
    assert not (tmp_path / "lab").exists()
