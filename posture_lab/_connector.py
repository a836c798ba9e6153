"""The connector as a child process, and the TOML writer for its config."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from posture_lab._tools import LabError, LoggedProcess


def toml_value(value: Any) -> str:
    """A TOML literal for the simple values a connector config holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_document(document: Mapping[str, Any]) -> str:
    """Render the connector config: top-level tables, `[[webhooks]]` with their sub-tables."""
    lines: list[str] = []

    def table(header: str, body: Mapping[str, Any]) -> None:
        lines.append(header)
        nested = {k: v for k, v in body.items() if isinstance(v, Mapping) and k in _SUBTABLES}
        for key, value in body.items():
            if key not in nested:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
        for key, value in nested.items():
            prefix = header.strip("[]")
            table(f"[{prefix}.{key}]", value)

    for name, section in document.items():
        if name == "webhooks":
            for hook in section:
                table("[[webhooks]]", hook)
        elif name == "providers":
            for provider_name, provider in section.items():
                table(f"[providers.{provider_name}]", provider)
        else:
            table(f"[{name}]", section)
    return "\n".join(lines)


_SUBTABLES = frozenset({"policy", "enrichment"})


def _connector_home() -> Path:
    """The directory holding the `connector` package this lab runs with (checkout or install).

    The child gets it on PYTHONPATH, so it serves the same code even from a bare checkout.
    """
    spec = importlib.util.find_spec("connector")
    if spec is None or spec.origin is None:  # pragma: no cover - posture_lab ships with connector
        raise LabError("the connector package is not importable")
    return Path(spec.origin).resolve().parents[1]


class ConnectorProcess(LoggedProcess):
    """``python -m connector serve --config F`` as a child process; JSON log lines in a file."""

    def __init__(self, config: Path, *, port: int, ca_file: Path, log_path: Path) -> None:
        super().__init__(log_path)
        self.config = config
        self.port = port
        self.ca_file = ca_file

    @property
    def url(self) -> str:
        """Base URL of the connector."""
        return f"https://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the service and wait until /readyz answers 200."""
        pythonpath = os.pathsep.join(
            p for p in (str(_connector_home()), os.environ.get("PYTHONPATH", "")) if p
        )
        self.launch(
            [sys.executable, "-m", "connector", "serve", "--config", str(self.config)],
            env={**os.environ, "PYTHONPATH": pythonpath},
            health_url=f"{self.url}/readyz",
            ca_file=self.ca_file,
            timeout=timeout,
            cwd=self.config.parent,
        )

    def reload(self, *, timeout: float = 30.0) -> dict[str, Any]:
        """SIGHUP, then the `config.reloaded` or `config.reload_failed` event it led to."""
        if self._process is None:
            raise LabError("the connector is not running")
        since = self.log_offset()
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(since):
                if event.get("event") in ("config.reloaded", "config.reload_failed"):
                    return event
            time.sleep(0.05)
        raise LabError(f"the connector did not reload within {timeout:g}s")

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """The structured log events written after byte offset `since`."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(since)
                data = handle.read()
        except FileNotFoundError:
            return []
        events = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    events.append(item)
        return events
