"""A FUSE file system holding one file, whose stat hangs while a flag file exists: a network
file system that stopped answering (an NFS hard mount), for real, in the kernel.

    python -m tests.fakes.hung_mount MOUNTPOINT SOURCE FLAG

Serves SOURCE's bytes as ``MOUNTPOINT/<SOURCE's name>``. While FLAG exists, every stat of that
file waits (the kernel's request stays unanswered) until FLAG is removed. The kernel caches no
attributes (``attr_timeout=0``), so each stat reaches this process. Needs libfuse 2 (Debian
``libfuse2``) and the ``fusepy`` package; runs in the foreground until unmounted.
"""

from __future__ import annotations

import errno
import stat
import sys
import time
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]

POLL = 0.05
"""Seconds between two looks at the flag while a stat hangs."""


class HungMount(Operations):  # type: ignore[misc]
    """One read-only file; its stat hangs while the flag exists."""

    def __init__(self, source: Path, flag: Path) -> None:
        self._name = "/" + source.name
        self._data = source.read_bytes()
        self._flag = flag

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """The root directory, or the file (after the flag is gone)."""
        del fh
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path != self._name:
            raise FuseOSError(errno.ENOENT)
        while self._flag.exists():
            time.sleep(POLL)
        return {
            "st_mode": stat.S_IFREG | 0o644,
            "st_nlink": 1,
            "st_size": len(self._data),
            "st_mtime": 1_700_000_000,
            "st_ino": 2,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        """The one file."""
        del path, fh
        return [".", "..", self._name[1:]]

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """The file's bytes."""
        del path, fh
        return self._data[offset : offset + size]


def main() -> None:
    """Mount and serve until unmounted."""
    mountpoint, source, flag = sys.argv[1:4]
    FUSE(
        HungMount(Path(source), Path(flag)),
        mountpoint,
        foreground=True,
        ro=True,
        attr_timeout=0,
        entry_timeout=0,
    )


if __name__ == "__main__":
    main()
