"""The inventory file's stamp, taken off the event loop and bounded in time.

A stat of a file on a network file system that stopped answering (an NFS hard mount, a stuck
FUSE mount) never returns. Taken on the event loop it would stop every decision, not just this
inventory's reloads; so each stat runs on a thread of its own. A daemon thread: one stuck for
good must not keep the process from exiting, as an executor's threads would. A stat that does
not answer within `STAT_TIMEOUT` fails as an `OSError` (the poll handles it as any failure to
reach the file), and no other stat of that file starts while it is still stuck: a hung mount
costs one thread, not one per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

STAT_TIMEOUT = 5.0
"""Seconds a stat of the inventory file may take before the poll gives up on it."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What tells one version of the file from another."""

    mtime_ns: int
    size: int
    inode: int


def stamp_of(path: Path) -> Stamp:
    """`path`'s stamp, taken here and now (blocking)."""
    st = os.stat(path)
    return Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


class Stamper:
    """Takes one file's stamp on a thread, one stat at a time, within `timeout` seconds."""

    def __init__(self, path: Path, *, timeout: float = STAT_TIMEOUT) -> None:
        self._path = path
        self._timeout = timeout
        self._pending: asyncio.Future[Stamp] | None = None

    async def __call__(self) -> Stamp:
        """The stamp; raises `OSError` when the file cannot be reached (ETIMEDOUT: the file
        system has not answered, this time or a stat still pending from before)."""
        if self._pending is not None and not self._pending.done():
            raise OSError(errno.ETIMEDOUT, self._silent())
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[Stamp] = loop.create_future()
        pending.add_done_callback(_retrieved)  # an answer after the timeout is nobody's
        try:
            threading.Thread(
                target=self._stat, args=(loop, pending), name="inventory-stat", daemon=True
            ).start()
        except RuntimeError as exc:  # no thread to be had (a container's process limit)
            pending.cancel()
            raise OSError(errno.EAGAIN, f"no thread to stat the file: {exc}") from None
        self._pending = pending  # only a stat under way: it answers, or the next call refuses
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.shield(pending)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, self._silent()) from None

    def _silent(self) -> str:
        return f"the file system has not answered a stat within {self._timeout:g} s"

    def _stat(self, loop: asyncio.AbstractEventLoop, pending: asyncio.Future[Stamp]) -> None:
        try:
            stamp = stamp_of(self._path)
        except Exception as exc:  # handed to the poll, which tells an OSError from a bug
            outcome: Stamp | Exception = exc
        else:
            outcome = stamp
        with contextlib.suppress(RuntimeError):  # the loop closed while the stat hung
            loop.call_soon_threadsafe(_settle, pending, outcome)


def _settle(pending: asyncio.Future[Stamp], outcome: Stamp | Exception) -> None:
    if pending.done():
        return
    if isinstance(outcome, Exception):
        pending.set_exception(outcome)
    else:
        pending.set_result(outcome)


def _retrieved(pending: asyncio.Future[Stamp]) -> None:
    if not pending.cancelled():
        pending.exception()
