"""Worker process: build one inventory image into an inherited file descriptor.

    python -m providers.files._worker FD   < job (JSON)   > {"size": N} or {"error": "..."}

Started by `_load` for large files. A first load parses a JSON file in parts, one per core (up
to `MAX_PARTS`), in forks of this process: the service waits for it. A reload uses one process
at low priority, leaving the other cores to decisions served from the previous inventory.

Garbage collection is off and the exit skips freeing the parsed file: the process lives for one
parse and would otherwise rescan millions of fresh objects many times over, then free them one
by one.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from providers.files._load import run_job
from providers.files._schema import InventoryFileError, InventoryUnreadable, describe

MAX_PARTS = 4
"""Processes parsing one JSON file at most (each part costs a copy of its text)."""
_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def main() -> None:
    """Read the job from stdin, write the image to the descriptor, answer on stdout."""
    gc.disable()
    fd = int(sys.argv[1])
    job = json.loads(sys.stdin.read())
    parts = min(_cores(), MAX_PARTS)
    if job.get("background"):
        os.nice(10)  # a reload: decisions from the previous inventory come first
        parts = 1
    parsed: list[object] = []  # left to the OS: os._exit below skips freeing it
    try:
        image = run_job(job, keep=parsed, parts=parts)
        with os.fdopen(fd, "wb", closefd=False) as out:
            for part in image.parts:
                out.write(part)
    except InventoryFileError as exc:
        answer: dict[str, object] = {"error": str(exc)}
        if isinstance(exc, InventoryUnreadable):
            answer["unreadable"] = True
    except (MemoryError, OSError) as exc:  # this machine's trouble (writing the image, say),
        parsed.clear()  # not the file's: it is read again later
        answer = {"error": describe(exc, Path(job["path"])), "unreadable": True}
    else:
        answer = {"size": image.size, "devices": image.devices}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    os._exit(0)


def _cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    try:  # a container's CPU limit ("max" when none): more parts than cores only cost CPU
        quota, period = Path(_CPU_MAX).read_text(encoding="ascii").split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


if __name__ == "__main__":
    main()
