"""Reading ``/metrics`` in tests: the exposition parsed into samples, and promtool's verdict."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample `name` with exactly `labels`, or None."""
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def scrape(client: TestClient[Any, Any], path: str = "/metrics") -> tuple[str, Samples]:
    """GET `path` in the Prometheus text format: the text and its samples."""
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    return text, parse(text)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; in CI (`CI=true`) a missing tool is a failure, so CI always runs the check."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def promtool() -> Path:
    """Prometheus's own checker (Debian package ``prometheus``; scripts/test installs it)."""
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("promtool is not installed (apt-get install prometheus)")
    return Path(found)


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool with `args`; its output is returned, not checked."""
    return subprocess.run(
        [str(promtool()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
