"""A file inventory on a file system that stops answering: decisions go on.

The inventory sits on a real FUSE mount (`tests.fakes.hung_mount`) whose stat hangs on demand,
as an NFS hard mount does when its server goes away. Needs /dev/fuse, libfuse 2 and fusepy
(scripts/test installs them; as root, the mount needs no fusermount). Skipped locally without
them; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from providers.files import CsvSettings, FileProvider
from providers.identifiers import DeviceIdentifier, IdentifierKind
from tests.metrics_support import skip_or_fail

SERIAL = DeviceIdentifier("C02TEST00001", IdentifierKind.SERIAL)
HANG = 3.0
"""Seconds the file system stays silent in the test that releases it by itself."""


@pytest.fixture
def hung_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the inventory on the mount, the flag that makes its stat hang while it exists)."""
    if not Path("/dev/fuse").exists() or os.geteuid() != 0:
        skip_or_fail("FUSE needs /dev/fuse and root (to mount without fusermount)")
    try:
        import fuse  # type: ignore[import-untyped]  # noqa: F401, PLC0415 - only to probe
    except (ImportError, OSError) as exc:  # fusepy missing, or libfuse 2 missing (OSError)
        skip_or_fail(f"fusepy and libfuse 2 are needed: {exc}")
    source = tmp_path / "inventory.csv"
    source.write_text("serial,managed,username\nC02TEST00001,true,alice\n", encoding="utf-8")
    mountpoint, flag, errors = tmp_path / "mnt", tmp_path / "hang", tmp_path / "fuse.log"
    mountpoint.mkdir()
    with errors.open("wb") as stderr:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fakes.hung_mount",
                str(mountpoint),
                str(source),
                str(flag),
            ],
            stderr=stderr,
        )
    inventory = mountpoint / source.name
    try:
        deadline = time.monotonic() + 10
        while not inventory.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the FUSE mount did not come up: {errors.read_text()}")
            time.sleep(0.05)
        yield inventory, flag
    finally:
        flag.unlink(missing_ok=True)  # a stat still hanging returns
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)  # noqa: S607
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)
        if server.poll() is None:
            server.kill()


def _provider(path: Path, *, stat_timeout: float = 1.0) -> FileProvider:
    settings = CsvSettings(kind="csv", path=path, reload_interval=0, missing_grace=3600)
    return FileProvider("files", settings, settle_wait=0, stat_timeout=stat_timeout)


def _stat_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "inventory-stat")


async def _stat_threads_ended() -> None:
    """Wait (up to 5 s) until no stat thread is left: one ends just after its answer."""
    deadline = time.monotonic() + 5
    while _stat_threads() and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread, no event
        await asyncio.sleep(0.01)


async def test_lookups_answer_while_the_file_system_hangs(
    hung_mount: tuple[Path, Path],
) -> None:
    """A reload that finds the file system silent never holds the event loop: lookups made
    meanwhile answer at once, from the inventory already loaded."""
    inventory, flag = hung_mount
    provider = _provider(inventory, stat_timeout=2 * HANG)
    await provider.start()
    try:
        flag.touch()
        released_at: list[float] = []

        def release() -> None:  # the file system answers again after HANG seconds
            time.sleep(HANG)
            released_at.append(time.monotonic())
            flag.unlink()

        threading.Thread(target=release, daemon=True).start()
        reload = asyncio.create_task(provider.reload())
        await asyncio.sleep(0.2)  # the reload is waiting for its stat
        record = await provider.lookup(SERIAL)
        answered_at = time.monotonic()
        assert record is not None
        assert record.user is not None
        assert record.user.username == "alice"
        assert not reload.done()
        assert await reload is False  # nothing changed
        # On the event loop, the stat would have held the lookup until the mount answered.
        assert released_at
        assert answered_at < released_at[0]
    finally:
        await provider.aclose()


async def test_a_silent_file_system_fails_the_poll_and_costs_one_thread(
    hung_mount: tuple[Path, Path],
) -> None:
    """A stat that does not answer within the timeout fails the poll (the last inventory keeps
    serving, as for a vanished file); polls meanwhile start no second stat; once the file
    system answers again, the next poll finds the file."""
    inventory, flag = hung_mount
    provider = _provider(inventory, stat_timeout=0.5)
    await provider.start()
    try:
        await _stat_threads_ended()  # the start's own
        flag.touch()
        with capture_logs() as logs:
            started = time.monotonic()
            assert await provider.reload() is False
            assert time.monotonic() - started < 2
            assert await provider.reload() is False  # the first stat still hangs: not another
            assert _stat_threads() == 1
        missing = [e for e in logs if e["event"] == "provider.file_missing"]
        assert len(missing) == 1
        assert "has not answered a stat within 0.5 s" in missing[0]["error"]
        assert provider.ready  # within missing_grace: the last inventory serves
        assert await provider.lookup(SERIAL) is not None

        flag.unlink()
        await _stat_threads_ended()  # the stat that hung has answered
        with capture_logs() as logs:
            assert await provider.reload() is False
        assert [e["event"] for e in logs] == ["provider.file_restored"]
    finally:
        await provider.aclose()
