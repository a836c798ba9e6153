"""`posture-connector lab` brings up its own step-ca and connector and reports each enrolment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.cli import main
from posture_lab import StepTools

pytestmark = pytest.mark.e2e

# "REFUSED  C02LABLOANER by serial: device-unmanaged: ..." / "ISSUED   <id> by UDID in 17 ms ..."
OUTCOME = re.compile(r"^(ISSUED|REFUSED)\s+(\S+).*? by (serial|UDID)(?:: ([a-z-]+):)?")


def test_lab_applies_the_admins_policy(
    step_tools: StepTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`posture-connector lab --policy` refuses the forbidden group; other samples as usual."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmanaged = true\ngroups = { none_of = ["VPN Users"] }\n')
    exit_code = main(
        [
            "lab",
            *("--dir", str(tmp_path / "lab")),
            *("--step-bin", str(step_tools.step_ca.parent)),
            *("--policy", str(policy)),
        ]
    )

    assert exit_code == 0

    outcomes = [
        match.groups()
        for line in capsys.readouterr().out.splitlines()
        if (match := OUTCOME.match(line))
    ]
    unknown = outcomes[-1][1]
    assert outcomes == [
        ("REFUSED", "C02LABMANAGED", "serial", "group-forbidden"),
        ("ISSUED", "00008110-000A1C2E3F40801E", "UDID", None),
        ("REFUSED", "C02LABLOANER", "serial", "device-unmanaged"),
        ("REFUSED", unknown, "serial", "device-not-found"),
    ]
    assert (tmp_path / "lab" / "00008110-000A1C2E3F40801E.crt").exists()
