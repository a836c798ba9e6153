"""The command line follows its ecosystem's habits: --version, help with examples and exit codes,
`--config` everywhere, text for people and JSON on request, quiet on a closed pipe."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from connector.cli import EXIT_BROKEN_PIPE, EXIT_CONFIG, EXIT_DENY, EXIT_OK, build_parser, main
from connector.cli._lookup import explain_text
from connector.decision import Decision
from connector.policy import RuleOutcome
from connector.settings import WebhookSettings, load_settings
from connector.store import open_store
from providers.base import DeviceRecord

pytestmark = pytest.mark.usefixtures("restore_logging")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
QUICKSTART = EXAMPLES / "quickstart.toml"
COMMANDS = ["init", "serve", "check-config", "lookup", "healthcheck", "audit", "send"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the program name and the installed distribution's version, exit 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"posture-connector {version('posture-connector')}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_examples_and_exit_codes(name: str) -> None:
    """Each command's help ends with examples that use it and the exit codes it returns."""
    parser = _subparsers(build_parser())[name]
    text = parser.format_help()
    assert "examples:\n" in text
    assert f"posture-connector {name} " in text.split("examples:")[1]
    codes = text.split("exit codes:\n")[1]
    assert "  0 " in codes
    assert "  2 " in codes


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_is_explained(name: str) -> None:
    """No option or argument of any command is left without a help text."""
    parser = _subparsers(build_parser())[name]
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    "name", ["init", "serve", "check-config", "lookup", "healthcheck", "audit"]
)
def test_config_is_the_same_flag_everywhere(name: str) -> None:
    """Every command that reads a config takes it as `--config FILE` with the same help text."""
    parser = _subparsers(build_parser())[name]
    [action] = [a for a in parser._actions if "--config" in a.option_strings]
    assert action.metavar == "FILE"
    assert action.help is not None
    assert action.help.startswith("the connector's config file")


@pytest.mark.parametrize(
    "args",
    [
        ["--config", str(QUICKSTART)],
        [str(QUICKSTART)],
        [str(QUICKSTART), "--config", str(QUICKSTART)],
    ],
    ids=["flag", "positional", "both-equal"],
)
def test_check_config_takes_the_flag_or_the_old_positional(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """`check-config --config F` and the older `check-config F` validate the same file."""
    assert main(["check-config", *args]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[0] == f"{QUICKSTART}: OK"


@pytest.mark.parametrize(
    "args", [[], ["a.toml", "--config", "b.toml"]], ids=["none", "two-different"]
)
def test_check_config_needs_exactly_one_file(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """No file, or two different ones, is a usage error (exit 2) naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config", *args])
    assert exit_info.value.code == EXIT_CONFIG
    assert "--config FILE" in capsys.readouterr().err


def _quickstart_copy(folder: Path, policy: str) -> Path:
    for name in ("quickstart.secret", "quickstart-gate.secret", "quickstart-inventory.csv"):
        shutil.copy(EXAMPLES / name, folder / name)
    text = QUICKSTART.read_text(encoding="utf-8").replace(
        "[webhooks.policy]\nmanaged = true\n\n[webhooks.enrichment]",
        f"[webhooks.policy]\n{policy}\n\n[webhooks.enrichment]",
    )
    text += f'\n[store]\npath = "{folder / "store.sqlite3"}"\n'
    path = folder / "connector.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_lookup_explains_each_rule_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json, `lookup` prints the verdict, who answered and one line per rule."""
    policy = 'report = "all"\nmanaged = true\ncompliance = ["compliant"]\nplatform = ["iOS"]'
    path = _quickstart_copy(tmp_path, policy)
    args = ["lookup", "--config", str(path), "--webhook", "people", "C02QUICK0001"]
    assert main(args) == EXIT_DENY
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == "C02QUICK0001 (serial), webhook people (ENRICHING): deny attribute-unreported"
    )
    assert lines[1].startswith("  step-ca gets: attribute-unreported: inventory inventory does not")
    assert lines[2] == "  found by: inventory"
    assert lines[3] == "  rules, in evaluation order:"
    assert [line.split()[:3] for line in lines[4:]] == [
        ["pass", "managed", "saw"],
        ["FAIL", "compliance", "saw"],
        ["FAIL", "platform", "saw"],
    ]
    assert lines[4].endswith("saw true            device is managed")
    assert (
        "saw (not reported)  attribute-unreported: inventory inventory does not report" in lines[5]
    )
    assert lines[6].endswith(
        "saw macOS           platform-not-allowed: platform macOS is not allowed (allowed: iOS)"
    )


def test_lookup_text_shows_the_certificate_data_on_allow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An ENRICHING allow ends with the data the template reads as .Webhooks.<name>."""
    args = ["lookup", "--config", str(QUICKSTART), "--webhook", "people", "C02QUICK0001"]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("C02QUICK0001 (serial), webhook people (ENRICHING): allow\n")
    assert "  data for the certificate template (.Webhooks.people):\n    {\n" in out
    assert '"email": "anika.sharma@example.com"' in out


def test_lookup_text_names_an_invalid_identifier(capsys: pytest.CaptureFixture[str]) -> None:
    """An identifier of no known shape is named as such, with the reason step-ca would get."""
    args = ["lookup", "--config", str(QUICKSTART), "--webhook", "gate", "not a serial"]
    assert main(args) == EXIT_DENY
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "not a serial (not a valid identifier), webhook gate (AUTHORIZING): deny identifier-invalid"
    )
    assert out[1].startswith("  step-ca gets: identifier-invalid: ")


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with stdout a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "connector", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", ["lookup", "audit"])
def test_a_closed_pipe_exits_141_without_a_traceback(tmp_path: Path, command: str) -> None:
    """`... | head -1` closing the pipe early ends the command quietly with 128 + SIGPIPE."""
    path = _quickstart_copy(tmp_path, "managed = true")
    if command == "lookup":
        args = ["lookup", "--json", "--config", str(path), "--webhook", "people", "C02QUICK0001"]
    else:
        args = ["audit", "--config", str(path)]
        asyncio.run(_store_made(path))  # audit reads a store the service made; it makes none
    result = _closed_pipe_run(*args)
    assert (result.returncode, result.stderr) == (EXIT_BROKEN_PIPE, b"")


async def _store_made(config: Path) -> None:
    """The store the service creates at its first start, as `config` names it."""
    store = await open_store(load_settings(config).store)
    await store.aclose()


def test_the_readme_explain_example_is_what_lookup_prints() -> None:
    """The `lookup` example in docs/policy.md is the text `explain_text` renders for that decision."""
    message = "inventory jamf does not report the device's compliance state"
    outcomes = (
        RuleOutcome("managed", True, None, "device is managed", "true"),
        RuleOutcome("compliance", False, "attribute-unreported", message, None),
        RuleOutcome(
            "min_os_version",
            False,
            "os-version-too-old",
            "macOS 15.0 is older than the required 15.0.1",
            "macOS 15.0",
        ),
        RuleOutcome(
            "groups.none_of",
            False,
            "group-forbidden",
            "device is in forbidden groups: Quarantine",
            "Engineering, Quarantine",
        ),
    )
    decision = Decision(
        allow=False,
        code="attribute-unreported",
        message=message,
        identifier="C02FK3Q7MD6T",
        kind="serial",
        record=DeviceRecord(provider="jamf"),
        outcomes=outcomes,
    )
    hook = WebhookSettings(
        name="people",
        kind="ENRICHING",
        path="/webhooks/people",
        id="3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        secret="c2VjcmV0",
        providers=("jamf",),
    )
    policy_page = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    example = policy_page[
        policy_page.index("C02FK3Q7MD6T (serial), webhook people (ENRICHING): deny") :
    ]
    assert "\n".join(explain_text(decision, hook)) == example[: example.index("\n```")]
