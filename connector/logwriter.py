"""Writing log lines out: promptly, in order, and never holding up the event loop.

Every verified call writes a line. `JsonLines` gathers the lines of one event-loop iteration and
writes them at its end in one write, as long as the stream takes them at once: a pipe with room
for them, a file, a terminal. When it does not (the reader of stderr stalled: a hung log shipper,
a full pipe), a blocking write there would stop every answer, so the lines go to a thread of their
own, which waits for the stream instead. Up to `MAX_PENDING` bytes wait there; lines beyond are
dropped and counted, and once the stream takes lines again ``log.lines_dropped`` says how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

MAX_PENDING = 8 * 1024 * 1024
"""Bytes of log lines that may wait for a stream that does not take them; beyond, lines are
dropped and counted (`log.lines_dropped`)."""
AT_ONCE = select.PIPE_BUF
"""Bytes written on the event loop in one go at most: a pipe that reports room takes this much
at once (4 KiB on Linux); more goes to the writer thread."""
GATHERED = 64 * 1024
"""Bytes gathered during one loop iteration before they are handed over at once."""

Render = Callable[[object, str, MutableMapping[str, Any]], bytes]
"""A structlog processor rendering an event as one JSON line (`connector.logs.JsonLineRenderer`)."""


class JsonLines:
    """A structlog logger writing one rendered event per line (see the module docstring).

    A text stream without a binary buffer (in memory, in tests) is written at once, as it never
    blocks. With no running loop (start-up, another thread: the watchdog reports a stalled loop
    from one) lines are written, or handed to the writer thread, at once too.
    """

    def __init__(self, stream: TextIO, *, render: Render, max_pending: int = MAX_PENDING) -> None:
        self._stream = stream
        buffer = getattr(stream, "buffer", None)  # raw with PYTHONUNBUFFERED (containers)
        self._buffer: io.BufferedIOBase | io.RawIOBase | None = (
            buffer if isinstance(buffer, io.BufferedIOBase | io.RawIOBase) else None
        )
        self._poll = _writable_poll(stream) if self._buffer is not None else None
        self._gathered = 0  # bytes in `_lines`
        self._render = render
        self._max_pending = max_pending
        # Re-entrant: a garbage collection while it is held may run a destructor that logs.
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._lines: list[bytes] = []  # this loop iteration's, not yet written
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on
        self._batches: deque[bytes] = deque()  # for the writer thread, in order
        self._queued = 0  # bytes with the writer thread (waiting or being written)
        self._dropped = 0
        self._writer: threading.Thread | None = None
        self._closing = False

    def msg(self, message: str | bytes) -> None:
        """Write one line: at the end of this loop iteration, or at once off the loop."""
        line = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        with self._lock:
            if self._buffer is None:  # a text stream in memory: never blocks
                with contextlib.suppress(OSError, ValueError):
                    self._stream.write(line.decode("utf-8", "replace") + "\n")
                    self._stream.flush()
                return
            self._lines.append(line)
            self._gathered += len(line) + 1
            now = self._gathered > GATHERED  # a long loop step: its lines do not pile up
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread, or no loop: now
            now = True
        if now:
            self.flush()
            return
        if self._flush_on is not loop:
            self._flush_on = loop
            loop.call_soon(self.flush)

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg

    def flush(self) -> None:
        """Write the gathered lines if the stream takes them now, else hand them to the writer
        thread (dropping, and counting, what `max_pending` has no room for)."""
        with self._lock:
            self._flush_on = None
            if not self._lines:
                return
            lines, self._lines = self._lines, []
            size, self._gathered = self._gathered, 0
            if not self._queued and size <= AT_ONCE and self._takes_a_write():
                with contextlib.suppress(OSError, ValueError):  # gone: nowhere to say
                    _write_all(self._buffer, b"\n".join(lines) + b"\n")  # type: ignore[arg-type]
                return
            report = self._dropped_report() if self._dropped else b""
            if report and len(report) < self._max_pending - self._queued:
                lines.insert(0, report)  # lines were lost before these: said where the gap is
                self._dropped = 0
            room, kept = self._max_pending - self._queued, 0
            for line in lines:  # as many as may wait, in order; the rest are dropped
                room -= len(line) + 1
                if room < 0:
                    break
                kept += 1
            self._dropped += len(lines) - kept
            if kept:
                batch = b"\n".join(lines[:kept]) + b"\n"
                self._queued += len(batch)
                self._batches.append(batch)
            self._start_writer()
            self._wake.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Write out what waits, for at most `timeout` seconds (a stalled reader gets no more),
        and stop the writer thread. At exit."""
        self.flush()
        with self._lock:
            self._closing = True
            self._wake.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout)

    def _takes_a_write(self) -> bool:
        """Whether the stream takes `AT_ONCE` bytes without blocking (a pipe with room)."""
        if self._poll is None:
            return False
        try:
            return bool(self._poll.poll(0))
        except (OSError, ValueError):
            return False

    def _dropped_report(self) -> bytes:
        """Under the lock: the ``log.lines_dropped`` line for the lines dropped so far."""
        event = {"dropped": self._dropped, "max_pending": self._max_pending}
        return self._render(None, "warning", {**event, "event": "log.lines_dropped"})

    def _start_writer(self) -> None:
        """Under the lock: a writer thread, unless one runs (none at interpreter exit, where
        starting one waits for ever on Python 3.11: the lines wait for nothing more)."""
        if self._writer is None and not sys.is_finalizing():
            writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
            try:
                writer.start()
            except RuntimeError:  # the interpreter is shutting down: nothing may wait any more
                return
            self._writer = writer

    def _write(self) -> None:
        """The writer thread: batches to the stream in order, then the count of lines dropped
        since, once every line that waited is written; until closed and empty."""
        out = self._buffer
        assert out is not None  # noqa: S101 - started only for a stream with a binary buffer
        try:
            while True:
                with self._lock:
                    while not (self._batches or self._dropped or self._closing):
                        self._wake.wait()
                    if self._batches:
                        data = self._batches.popleft()
                    elif self._dropped:  # counted as waiting while written: no line overtakes it
                        data = self._dropped_report() + b"\n"
                        self._dropped = 0
                        self._queued += len(data)
                    else:  # closing, and all is written
                        return
                with contextlib.suppress(OSError, ValueError):  # a stream that is gone
                    _write_all(out, data)
                with self._lock:
                    self._queued -= len(data)
        finally:
            with self._lock:
                self._writer = None


def _writable_poll(stream: TextIO) -> select.poll | None:
    """A poll for the stream's descriptor becoming writable; None when it has none, or is a
    terminal (which reports room for a single byte: a larger write there may block)."""
    try:
        descriptor = stream.fileno()
        if os.isatty(descriptor):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    poll = select.poll()
    poll.register(descriptor, select.POLLOUT)
    return poll


def _write_all(out: io.BufferedIOBase | io.RawIOBase, data: bytes) -> None:
    """Write all of `data`: a raw stream (PYTHONUNBUFFERED) may take part of it per call."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking stream that is full: this thread may wait
            time.sleep(0.05)
            continue
        view = view[written:]
    out.flush()


class LibraryRecords:
    """The stream the stdlib's log handler writes to: each rendered record is one entry of
    `JsonLines` (a JSON line, which has no raw newline; in the console format, a record and its
    traceback, blank lines included, kept together)."""

    def __init__(self, lines: JsonLines) -> None:
        self._lines = lines

    def write(self, text: str) -> int:
        """One record (the handler adds the newline `JsonLines` adds too)."""
        record = text.removesuffix("\n")
        if record:
            self._lines.msg(record)
        return len(text)

    def flush(self) -> None:
        """Nothing: `JsonLines` writes."""
