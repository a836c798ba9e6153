"""Cut a JSON inventory into arrays of whole devices, and build one part in a forked child.

A large JSON file is parsed on every core: the worker process cuts the device array between two
devices, forks, and each process parses and checks its own part. A cut is chosen by the text
(cheap and usually right) and proven by the parse: see `split_devices`. Nothing here decides
what is valid; a part that does not parse only sends the caller back to the whole-file path.
"""

from __future__ import annotations

import marshal
import mmap
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable
from typing import Any

_WS = b" \t\r\n"  # JSON whitespace (regex \s would also take \v, \f)
_HEAD = re.compile(rb'[ \t\r\n]*(\{[ \t\r\n]*"devices"[ \t\r\n]*:[ \t\r\n]*)?\[')
_FIRST = re.compile(rb'[ \t\r\n]*(\{[ \t\r\n]*"[^"\\]*"[ \t\r\n]*:)')


def split_devices(data: bytes, parts: int) -> list[tuple[int, int]] | None:
    """Where to cut the device array into `parts` runs of devices, or None (no cut found).

    Each run `data[start:stop]` is made a JSON array by `piece` (in the process that parses it,
    so the copies are made in parallel).

    The file must be ``{"devices": [C]}`` or ``[C]`` (JSON whitespace aside) and C is cut at
    commas into C1..Cn. If every ``[Ck]`` parses as an array of at least one value, C1,..,Cn
    is a list of values, so the file is valid JSON and its devices are the parts' devices in
    order; a cut inside a string or a nested value leaves a part that does not parse. A cut is
    looked for where a device would start: ``}`` and ``,`` and then the text that opens the
    first device, up to its first key (a nested object is indented deeper or starts with
    another key in every common layout).
    """
    head = _HEAD.match(data)
    if head is None or parts < 2:
        return None
    end = _trimmed(data, len(data))
    if head.group(1) is not None:
        if data[end - 1 : end] != b"}":
            return None
        end = _trimmed(data, end - 1)
    if data[end - 1 : end] != b"]":
        return None
    body_start, body_end = head.end(), end - 1
    first = _FIRST.match(data, body_start)
    if first is None:
        return None
    between = re.compile(rb"\}[ \t\r\n]*(,)[ \t\r\n]*" + re.escape(first.group(1)))
    spans, start = [], body_start
    for k in range(1, parts):
        cut = between.search(data, max(start, body_start + (body_end - body_start) * k // parts))
        if cut is None or cut.end() > body_end:
            return None
        spans.append((start, cut.start() + 1))  # up to the closing brace
        start = cut.end(1)  # from after the comma
    return [*spans, (start, body_end)]


def piece(data: bytes, span: tuple[int, int]) -> bytes:
    """A run of devices of `split_devices` as a JSON array."""
    return b"".join((b"[", memoryview(data)[span[0] : span[1]], b"]"))


def _trimmed(data: bytes, end: int) -> int:
    """Where `data[:end]` ends without its trailing JSON whitespace (no copy, unlike rstrip)."""
    while end and data[end - 1] in _WS:
        end -= 1
    return end


def forked(work: Callable[[], tuple[Any, list[bytes]]]) -> Callable[[bool], Any]:
    """Start `work` in a forked child; the returned call waits (or kills) and gives its result.

    `work` returns (small, runs): `small` comes back through `marshal` (lists of str and int go
    fast), the byte strings `runs` as one memoryview of a mapped anonymous file, never copied
    in this process. The child writes it all before its slow exit (freeing its parse), so the
    wait ends early. Gives None if the child raised, died or was killed. Only for a
    single-threaded process (the inventory worker): a fork copies no other thread.
    """
    spool = _spool()
    done, told = os.pipe()  # a byte once the result is written
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 1
        try:
            os.close(done)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # the worker's answer pipe stays the worker's alone
                os.dup2(null, fd)
            small, runs = work()
            header = marshal.dumps(small)
            with os.fdopen(spool, "wb", closefd=False) as out:
                out.write(len(header).to_bytes(8, "little"))
                out.write(header)
                out.writelines(runs)
            os.write(told, b"1")
            code = 0
        finally:
            os._exit(code)
    os.close(told)

    def wait(kill: bool = False) -> tuple[Any, memoryview] | None:
        try:
            if kill:
                os.kill(pid, signal.SIGKILL)
            if os.read(done, 1) != b"1":  # EOF: the child died without a result
                return None
            mapped = memoryview(mmap.mmap(spool, 0, access=mmap.ACCESS_READ))
            size = int.from_bytes(mapped[:8], "little")
            return marshal.loads(mapped[8 : 8 + size]), mapped[8 + size :]  # noqa: S302
        finally:
            os.close(spool)
            os.close(done)
            # freeing a child's parse takes a while: reap it without waiting here
            threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()

    return wait


def _spool() -> int:
    """An anonymous file (a descriptor the caller closes)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("posture-inventory-part")
    return os.dup(tempfile.TemporaryFile().fileno())  # pragma: no cover - no memfd (macOS)
