"""Run a shipped example config against a fake: rewrite it for the test, then `lookup` by CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def localized(name: str, tmp_path: Path, replacements: dict[str, str]) -> Path:
    """The example `name` with `replacements` applied, secret files absolute and plain http."""
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    for secret in ("quickstart.secret", "quickstart-gate.secret", "quickstart-inventory.csv"):
        text = text.replace(f'"{secret}"', f'"{(EXAMPLES / secret).resolve()}"')
    text = text.replace("dev_certificate = true", "plain_http = true")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def lookup(
    config: Path, webhook: str, identifier: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """`posture-connector lookup`: exit code and the decision it prints."""
    cli = Path(sys.executable).parent / "posture-connector"
    process = await asyncio.create_subprocess_exec(
        str(cli),
        "lookup",
        "--json",
        "--config",
        str(config),
        "--webhook",
        webhook,
        identifier,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    assert out, err.decode()
    return process.returncode, json.loads(out)
