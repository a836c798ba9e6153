"""structlog setup: JSON lines for machines, a console renderer on a TTY, request context.

Event names are a public interface (see docs/observability.md): `area.what_happened`, details
as flat keyword fields. Nothing here logs secrets; callers never pass them.

Every verified call writes a line, so the JSON path is kept cheap: orjson renders the event,
and `JsonLines` gathers the lines of one event-loop iteration and hands them to a writer thread
(one write for all the lines a burst of calls produced), so a stalled reader of stderr never
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TextIO, cast

import orjson
import structlog
from aiohttp import web

from connector import jsonbytes

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


MAX_PENDING = 8 * 1024 * 1024
"""Bytes of log lines that may wait for a stream that does not take them; beyond, lines are
dropped and counted (`log.lines_dropped`)."""


HAND_OVER = 0.05
"""Seconds lines gather on the event loop before the writer thread gets them: waking it for every
loop iteration cost more CPU per call than the write itself, and took the GIL from the loop."""


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    *,
    max_pending: int = MAX_PENDING,
) -> None:
    """Route every event, ours and the stdlib loggers' (aiohttp, asyncio, warnings), to `stream`
    (stderr by default) in one format: with JSON, every line written is one JSON object, and at
    most `max_pending` bytes of lines wait for a stream that does not take them (`JsonLines`)."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    logger_factory: Callable[..., Any]
    if console:
        renderer = structlog.dev.ConsoleRenderer()
        logger_factory = structlog.PrintLoggerFactory(out)
        library_out: TextIO | _Records = out
        event_processors: list[structlog.typing.Processor] = [
            structlog.contextvars.merge_contextvars,
            *event_steps(),
            renderer,
        ]
    else:
        renderer = structlog.processors.JSONRenderer(_json_text, option=JSON_OPTIONS)
        lines = JsonLines(out, max_pending=max_pending)
        atexit.register(lines.close)
        logger_factory = lambda *_args: lines  # noqa: E731 - one writer for every logger
        library_out = _Records(lines)  # the stdlib's records take the same way out as ours
        event_processors = [structlog.contextvars.merge_contextvars, JsonLineRenderer()]
    structlog.configure(
        processors=event_processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(library_out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _library_event],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries speak up for problems only; aiohttp's access log would duplicate
    # `webhook.decision`.
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)


JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
"""Dates (and other unknown values) are written as before: `__structlog__()` or their repr."""


def _json_text(value: object, **options: Any) -> str:
    return jsonbytes.dumps(value, **options).decode()


def event_steps() -> tuple[structlog.typing.Processor, ...]:
    """structlog's processors between the context merge and the renderer, for our events."""
    return (
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    )


def _json_fallback(value: object) -> object:
    """What structlog's JSON renderer writes for a value JSON has no type for."""
    try:
        return value.__structlog__()  # type: ignore[attr-defined]
    except AttributeError:
        return repr(value)


class JsonLineRenderer:
    """structlog's level, ISO UTC timestamp, stack and exception renderers and orjson, as one
    processor: every verified call writes a line, and five processor calls (a datetime built
    and formatted for each line among them) were about 5 % of a cached decision's CPU. Lines are
    the same: keys in the same order, the same level names and timestamp format; an event
    with ``exc_info`` or ``stack_info`` goes through structlog's own processors."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._full = event_steps()
        self._stamp = (-1, "")  # (second, its text): one tuple, as the watchdog thread logs too

    def __call__(self, logger: object, method: str, event: structlog.typing.EventDict) -> bytes:
        """The event as one JSON line (bytes, without the newline)."""
        if "exc_info" in event or "stack_info" in event:
            for processor in self._full:
                event = cast(structlog.typing.EventDict, processor(logger, method, event))
        else:
            event = structlog.processors.add_log_level(logger, method, event)
            event["timestamp"] = self._now()
        return jsonbytes.dumps(event, default=_json_fallback, option=JSON_OPTIONS)

    def _now(self) -> str:
        """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00``, as structlog's
        `TimeStamper` writes it (no fraction when it is zero), formatting a second only once."""
        second, fraction = divmod(self._clock_ns(), 1_000_000_000)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        micro = fraction // 1000
        return f"{stamp[1]}.{micro:06d}Z" if micro else f"{stamp[1]}Z"


class JsonLines:
    """A structlog logger writing one rendered event per line; the event loop never waits on it.

    A stream with a binary buffer (stderr: a pipe to a log shipper, a file) is written by a
    thread of its own, which gets the lines gathered on the event loop every `HAND_OVER` seconds.
    When the stream's reader stalls and the pipe fills, a write blocks that thread, not the loop
    and every decision with it. Up to `MAX_PENDING` bytes then wait; lines beyond are dropped and
    counted, and once the stream takes lines again ``log.lines_dropped`` says how many went.
    A text stream (an in-memory one in tests) is written at once. With no running loop (start-up,
    another thread) a line is handed over at once.
    """

    def __init__(self, stream: TextIO, *, max_pending: int = MAX_PENDING) -> None:
        self._stream = stream
        buffer = getattr(stream, "buffer", None)  # raw with PYTHONUNBUFFERED (containers)
        self._buffer: io.BufferedIOBase | io.RawIOBase | None = (
            buffer if isinstance(buffer, io.BufferedIOBase | io.RawIOBase) else None
        )
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._lines: list[bytes] = []  # this loop iteration's, not yet handed over
        self._flush_pending = False
        self._batches: deque[bytes] = deque()  # handed over, for the writer thread
        self._queued = 0  # bytes in `_batches` and the one being written
        self._dropped = 0
        self._wake = threading.Condition(self._lock)
        self._writer: threading.Thread | None = None
        self._closing = False

    def msg(self, message: str | bytes) -> None:
        """Write one line; soon."""
        line = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        with self._lock:
            if self._buffer is not None:
                self._lines.append(line)
            else:  # a text stream (in memory): written at once, flushed with the iteration
                with contextlib.suppress(OSError, ValueError):
                    self._stream.write(line.decode("utf-8", "replace") + "\n")
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_pending = True
        if self._buffer is None:
            loop.call_soon(self.flush)
        else:  # one hand-over per `HAND_OVER` seconds: the writer thread rarely wants the GIL
            loop.call_later(HAND_OVER, self.flush)

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg

    def flush(self) -> None:
        """Hand the gathered lines over (a stream that is gone loses them: nowhere to say)."""
        self._flush_pending = False
        with self._lock:
            if self._buffer is None:
                with contextlib.suppress(OSError, ValueError):
                    self._stream.flush()
                return
            lines, self._lines = self._lines, []
            room, kept = self._max_pending - self._queued, 0
            for line in lines:  # as many as may wait, in order; the rest are dropped
                room -= len(line) + 1
                if room < 0:
                    break
                kept += 1
            self._dropped += len(lines) - kept
            if kept:
                data = b"\n".join(lines[:kept]) + b"\n"
                self._queued += len(data)
                self._batches.append(data)
            if kept or self._dropped:
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

    def _start_writer(self) -> None:
        """Under the lock: a writer thread, unless one runs."""
        if self._writer is None:
            writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
            try:
                writer.start()
            except RuntimeError:  # the interpreter is shutting down: nothing may wait any more
                return
            self._writer = writer

    def _write(self) -> None:
        """The writer thread: batches to the stream's buffer in order, until closed and empty."""
        assert self._buffer is not None  # noqa: S101 - started only for a buffered stream
        while True:
            with self._lock:
                while not (self._batches or self._dropped or self._closing):
                    self._wake.wait()
                if self._batches:
                    data, dropped = self._batches.popleft(), 0
                elif self._dropped:  # after every line that waited was taken
                    data, dropped, self._dropped = b"", self._dropped, 0
                else:  # closing, and all is written
                    self._writer = None
                    return
            if dropped:  # what waited is written: say what was lost (blocks until it is read)
                structlog.get_logger("connector.logs").warning(
                    "log.lines_dropped", dropped=dropped, max_pending=self._max_pending
                )
                continue
            with contextlib.suppress(OSError, ValueError):  # a stream that is gone: nowhere to say
                _write_all(self._buffer, data)
            with self._lock:
                self._queued -= len(data)


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


class _Records:
    """The stream the stdlib's log handler writes to: each rendered record is a JSON line."""

    def __init__(self, lines: JsonLines) -> None:
        self._lines = lines

    def write(self, text: str) -> int:
        """One line per rendered record (the handler adds a newline)."""
        for line in text.splitlines():
            self._lines.msg(line)
        return len(text)

    def flush(self) -> None:
        """Nothing: `JsonLines` writes."""


def _library_event(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A stdlib record becomes `library.message` with its logger name and text as fields."""
    record = event.get("_record")
    event["message"] = event.pop("event", "")
    event["event"] = "library.message"
    event["logger"] = record.name if isinstance(record, logging.LogRecord) else None
    return event


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind step-ca's `X-Request-Id` to every event logged while handling the request."""
    structlog.contextvars.clear_contextvars()
    request_id = request.headers.get("X-Request-Id")
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id[:64])
    try:
        return await handler(request)
    finally:
        structlog.contextvars.clear_contextvars()
