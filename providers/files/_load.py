"""Build an inventory image off the event loop: a thread for small files, a process for large.

A parse holds the interpreter lock for its whole length (the C parsers and pydantic do not let
go), so a large file is parsed in a separate process, which writes the image into an anonymous
memory file; the event loop only maps it. Decisions keep their latency during a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from providers.files._build import build_image
from providers.files._image import Image, InventoryIndex
from providers.files._schema import InventoryFileError, InventoryUnreadable, describe
from providers.files._settings import CsvSettings, JsonSettings

PROCESS_ABOVE = 1 << 20
"""Files of more bytes are parsed in a worker process (spawning one costs ~0.3 s of CPU)."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


async def load_index(
    path: Path,
    settings: CsvSettings | JsonSettings,
    provider: str,
    *,
    size: int,
    process_above: int = PROCESS_ABOVE,
    background: bool = False,
) -> InventoryIndex:
    """Read, validate and index `path` (of about `size` bytes); raises `InventoryFileError`.

    `background`: an older inventory is serving, so a worker process yields the CPU to
    decisions (nice 10); the first load runs at full priority since the service waits for it.
    """
    job = job_for(path, settings) | {"background": background}
    if size <= process_above:
        try:
            # The size is the poll's: a file written in place meanwhile may have grown, and
            # parsing a large one on a thread would hold the GIL for seconds of decisions.
            image = await asyncio.to_thread(run_job, job, max_bytes=process_above)
        except _Grown:
            pass
        else:
            return InventoryIndex(b"".join(image.parts), provider)
    return InventoryIndex(await _in_process(job), provider)


class _Grown(Exception):
    """The file read on a thread holds more than a thread may parse."""


def job_for(path: Path, settings: CsvSettings | JsonSettings) -> dict[str, Any]:
    """What a worker needs to build the image (JSON-serialisable)."""
    delimiter = settings.group_delimiter if isinstance(settings, CsvSettings) else ";"
    return {"path": str(path), "kind": settings.kind, "group_delimiter": delimiter}


def run_job(
    job: dict[str, Any],
    keep: list[object] | None = None,
    parts: int = 1,
    *,
    max_bytes: int | None = None,
) -> Image:
    """Build the image for a job; errors carry the message an admin sees.

    `parts` > 1 (a worker process only): parse a JSON file in that many processes. With
    `max_bytes`, a file that has grown past it is not parsed (`_Grown`).
    """
    path = Path(job["path"])
    try:
        data = path.read_bytes()
        if max_bytes is not None and len(data) > max_bytes:
            raise _Grown
        return build_image(
            data,
            kind=job["kind"],
            source=str(path),
            group_delimiter=job["group_delimiter"],
            keep=keep,
            parts=parts,
        )
    except OSError as exc:
        raise InventoryUnreadable(describe(exc, path)) from None
    except UnicodeDecodeError as exc:
        raise InventoryFileError(describe(exc, path)) from None


async def _in_process(job: dict[str, Any]) -> mmap.mmap:
    with _memory_file() as fd:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # not the working directory: import the same `providers` as this process
            "-m",
            "providers.files._worker",
            str(fd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(fd,),
            env=env,
        )
        try:
            out, err = await proc.communicate(json.dumps(job).encode())
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        try:
            answer = json.loads(out)
        except ValueError:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            message = f"{job['path']}: inventory worker failed ({proc.returncode}) {tail[0]}"
            # Killed by a signal (the OOM killer, a container's memory limit) says nothing of
            # the file: read it again later. An exit with a traceback is a bug on this content.
            died = proc.returncode is not None and proc.returncode < 0
            raise (InventoryUnreadable if died else InventoryFileError)(message.strip()) from None
        if "error" in answer:
            error = InventoryUnreadable if answer.get("unreadable") else InventoryFileError
            raise error(answer["error"])
        if os.fstat(fd).st_size != answer["size"]:  # the memory file ran out of room, say
            raise InventoryUnreadable(f"{job['path']}: inventory worker wrote a short image")
        return mmap.mmap(fd, answer["size"], access=mmap.ACCESS_READ)


@contextlib.contextmanager
def _memory_file() -> Iterator[int]:
    """An anonymous file the worker can write and we can map; closed (not unmapped) after."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("posture-inventory")
        try:
            yield fd
        finally:
            os.close(fd)
    else:  # pragma: no cover - macOS and other systems without memfd
        with tempfile.TemporaryFile() as spool:
            yield spool.fileno()
