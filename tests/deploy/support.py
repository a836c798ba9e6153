"""Shared helpers of the deploy checks: where the tools are, and running a kit's connector config.

A kit's config names absolute paths of its target system (``/etc/posture-connector/tls/...``,
``/run/secrets/...``). `relocate` rewrites those prefixes into a temporary folder where real files
stand in, so ``posture-connector check-config`` judges the kit's config against this connector.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from tests.pki import TestCA

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS_BIN = ROOT / ".tools" / "bin"
VERSIONS_FILE = ROOT / "scripts" / "deploy-tools.env"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; in CI (`CI=true`) a missing checker is a failure, so CI always runs them."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"deploy checks must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pinned(key: str) -> str:
    """A value from ``scripts/deploy-tools.env``."""
    for line in VERSIONS_FILE.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise KeyError(key)


def go_tool(name: str) -> Path:
    """A checker built by ``scripts/install-deploy-tools.sh`` into ``.tools/bin``."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        skip_or_fail(f"{path} is missing: run scripts/install-deploy-tools.sh (needs Go)")
    return path


def system_tool(name: str) -> Path:
    """A checker that comes with the operating system (systemd's tools)."""
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed (Debian package systemd)")
    return Path(found)


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def stand_ins(folder: Path, *, dns_names: tuple[str, ...] = ("localhost",)) -> dict[str, Path]:
    """A TLS pair, a client CA and a webhook secret, as a kit would have them on its target."""
    ca = TestCA(folder / "pki")
    issued = ca.issue("tls", dns_names=dns_names)
    secret = folder / "webhook.secret"
    secret.write_text(base64.b64encode(os.urandom(64)).decode("ascii"), encoding="utf-8")
    return {"tls.crt": issued.cert, "tls.key": issued.key, "ca.crt": ca.cert_path, "secret": secret}


def relocate(text: str, prefixes: Mapping[str, Path]) -> str:
    """`text` with each absolute path prefix (e.g. ``/run/secrets/``) moved under a folder."""
    for prefix, folder in prefixes.items():
        text = text.replace(prefix, f"{folder}/")
    return text


def place(files: Mapping[str, Path], targets: Mapping[Path, str]) -> None:
    """Copy stand-in files (by their `stand_ins` key) to the paths a relocated config names."""
    for target, key in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[key], target)


def wait_ready(process: subprocess.Popen[bytes], url: str, cafile: Path, log: Path) -> None:
    """Poll `url` (trusting `cafile` once the server wrote it) until 200; fail if `process` ends."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(encoding="utf-8")
        if cafile.exists():
            try:
                answer = httpx.get(url, verify=ssl.create_default_context(cafile=cafile))
            except httpx.TransportError:
                pass
            else:
                if answer.status_code == 200:
                    return
        time.sleep(0.1)
    pytest.fail(f"never ready:\n{log.read_text(encoding='utf-8')}")


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """``posture-connector check-config`` (the same preflight as ``serve``)."""
    return run(sys.executable, "-m", "connector", "check-config", config, cwd=ROOT)


FILE_KEYS = frozenset(
    {"tls_cert", "tls_key", "client_ca", "file", "ca_bundle", "dev_certificate_dir"}
)


def file_paths(config: Mapping[str, object], config_dir: str) -> set[str]:
    """Every file a connector config reads, as absolute paths (relative ones from `config_dir`)."""
    found: set[str] = set()

    def walk(node: object, key: str = "", in_provider: bool = False) -> None:
        if isinstance(node, Mapping):
            for name, value in node.items():
                walk(value, str(name), in_provider or key == "providers")
        elif isinstance(node, list):
            for item in node:
                walk(item, key, in_provider)
        elif isinstance(node, str) and (key in FILE_KEYS or (in_provider and key == "path")):
            found.add(node if node.startswith("/") else f"{config_dir.rstrip('/')}/{node}")

    walk(config)
    return found
