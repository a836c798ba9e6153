"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests, started with initdb and pg_ctl.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster runs as the
unprivileged ``nobody`` user through ``runuser``. The data lives in a fresh temporary folder
that is removed on stop. ``POSTURE_TEST_POSTGRES_URL`` points the tests at an existing server
instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "posture"
DATABASE = "posture"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (folder / name).exists():
                return str(folder / name)
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _as_unprivileged(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "nobody", "--", *command]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster, create the database, yield its URL; stop and delete it afterwards."""
    if url := os.environ.get("POSTURE_TEST_POSTGRES_URL"):
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="posture-pg-"))
    data = folder / "data"
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody", "nogroup")
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F -c fsync=off -c full_page_writes=off"
    try:
        _run(_as_unprivileged([_tool("initdb"), "-D", str(data), "-U", USER, "-A", "trust"]))
        log = str(folder / "log")
        _run(
            _as_unprivileged(
                [_tool("pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start"]
            )
        )
        _run([_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE])
        yield f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
    except subprocess.CalledProcessError as exc:
        log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
        raise RuntimeError(
            f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}\n{log}"
        ) from None
    finally:
        if data.exists():
            subprocess.run(
                _as_unprivileged([_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)
