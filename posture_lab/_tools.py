"""Shared plumbing: where the binaries are, free ports, child processes and their logs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from posture_lab.devicesim import tls_context

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""The X.509 templates shipped as package data (a real directory: step-ca reads the files)."""
DEFAULT_TEMPLATE = TEMPLATES_DIR / "device-identity.tpl"

# In a source checkout the package sits next to scripts/ and .tools/; installed, it does not.
SOURCE_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = SOURCE_ROOT / "scripts" / "step-versions.env"
CHECKOUT_TOOLS = SOURCE_ROOT / ".tools" / "bin"


class LabError(Exception):
    """When a lab component cannot be set up; the message says which and why."""


@dataclass(frozen=True, slots=True)
class StepTools:
    """Paths of the two smallstep binaries.

    Attributes:
        step_ca: the `step-ca` server.
        step: the `step` CLI.
    """

    step_ca: Path
    step: Path


def packaged_templates() -> list[str]:
    """Names of the templates shipped with the lab, e.g. ``device-only.tpl``."""
    return sorted(path.name for path in TEMPLATES_DIR.glob("*.tpl"))


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """`KEY=value` pairs of ``scripts/step-versions.env`` (the one place versions are pinned).

    Empty when installed from a wheel: the pins belong to the source checkout.
    """
    pairs: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                pairs[key.strip()] = value.strip()
    return pairs


def find_step_tools(directory: Path | None = None) -> StepTools:
    """Locate `step-ca` and `step`.

    An explicit `directory` or ``$STEP_TOOLS_DIR`` is the only place looked at; otherwise, in a
    source checkout, ``.tools/bin`` (where ``scripts/install-step.sh`` installs), then PATH.
    Raises `LabError` naming what is missing and how to get it.
    """
    explicit = directory or (Path(d) if (d := os.environ.get("STEP_TOOLS_DIR")) else None)
    folders = [explicit] if explicit else [CHECKOUT_TOOLS]
    for folder in folders:
        step_ca, step = folder / "step-ca", folder / "step"
        if os.access(step_ca, os.X_OK) and os.access(step, os.X_OK):
            return StepTools(step_ca=step_ca, step=step)
    if explicit is not None:
        raise LabError(f"step-ca and step not found in {explicit}")
    on_path = shutil.which("step-ca"), shutil.which("step")
    if on_path[0] and on_path[1]:
        return StepTools(step_ca=Path(on_path[0]), step=Path(on_path[1]))
    if VERSIONS_FILE.exists():  # a source checkout: the script that builds them is here
        raise LabError(
            f"step-ca and step not found in {CHECKOUT_TOOLS} and PATH; "
            "run scripts/install-step.sh (needs Go)"
        )
    raise LabError("step-ca and step not found in PATH; install them or give --step-bin DIR")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: a child we started never outlives the lab."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def wait_until_ready(
    url: str, *, ca_file: Path, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Poll `url` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    context = tls_context(ca_file)
    last = "no answer"
    with httpx.Client(verify=context, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LabError(f"process exited with {process.returncode}; log:\n{_tail(log)}")
            try:
                response = client.get(url)
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            time.sleep(0.1)
    raise LabError(f"{url} not ready after {timeout:g}s ({last}); log:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def file_size(path: Path) -> int:
    """Size of a log file (0 if absent): an offset to read only what follows."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_from(path: Path, offset: int) -> str:
    """A log file's text after byte `offset` ("" if absent)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class LoggedProcess:
    """A child process of ours writing to a log file, started when its health URL answers 200.

    step-ca, the ca.json-only step-ca and the connector differ only in what they run and where
    they answer; starting, stopping and reading their logs is this one class.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def launch(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        health_url: str,
        ca_file: Path,
        timeout: float,
        cwd: Path | None = None,
    ) -> None:
        """Run `argv` with its output appended to the log, then wait for `health_url`."""
        with self.log_path.open("ab") as handle:
            self._process = subprocess.Popen(  # noqa: S603 - our own pinned binaries and module
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        wait_until_ready(
            health_url,
            ca_file=ca_file,
            process=self._process,
            log=self.log_path,
            timeout=timeout,
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        stop_process(self._process)
        self._process = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_offset(self) -> int:
        """Current size of the log, to read only what follows."""
        return file_size(self.log_path)

    def log_since(self, offset: int) -> str:
        """The log text written after `offset`."""
        return read_from(self.log_path, offset)

    def __enter__(self) -> LoggedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
