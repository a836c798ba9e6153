"""structlog setup: JSON lines for machines, a console renderer on a TTY, request context.

Event names are a public interface (see docs/observability.md): `area.what_happened`, details
as flat keyword fields. Nothing here logs secrets; callers never pass them.

Every verified call writes a line, so the JSON path is kept cheap: orjson renders the event
with structlog's level and timestamp in one processor (`JsonLineRenderer`), and
`connector.logwriter.JsonLines` writes the lines of one event-loop iteration in one write, never
blocking the loop on a stalled reader of stderr.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TextIO, cast

import orjson
import structlog
from aiohttp import web

from connector import jsonbytes
from connector.logwriter import MAX_PENDING, JsonLines, LibraryRecords
from providers.unicode import terminal_safe

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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
    if console:
        renderer = structlog.dev.ConsoleRenderer()
        event_processors: list[structlog.typing.Processor] = [
            structlog.contextvars.merge_contextvars,
            *event_steps(),
            terminal_safe_fields,
            renderer,
        ]
        render: Callable[..., bytes] = _console_lines(renderer)
    else:
        renderer = structlog.processors.JSONRenderer(_json_text, option=JSON_OPTIONS)
        event_processors = [structlog.contextvars.merge_contextvars, JsonLineRenderer()]
        render = JsonLineRenderer()
    # Both formats through `JsonLines`: a terminal or pipe that stops reading (or is gone)
    # must hold up no answer, nor fail one.
    lines = JsonLines(out, render=render, max_pending=max_pending)
    atexit.register(lines.close)
    logger_factory: Callable[..., Any] = lambda *_args: lines  # noqa: E731 - one writer
    library_out = LibraryRecords(lines)  # the stdlib's records take the same way out
    structlog.configure(
        processors=event_processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    handler = _LibraryHandler(library_out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _library_event],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *((terminal_safe_fields,) if console else ()),
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


def _console_lines(renderer: structlog.typing.Processor) -> Callable[..., bytes]:
    """The console renderer as `JsonLines` renders its own events (``log.lines_dropped``)."""

    def render(logger: object, method: str, event: structlog.typing.EventDict) -> bytes:
        for step in event_steps():
            event = cast(structlog.typing.EventDict, step(logger, method, event))
        return str(renderer(logger, method, event)).encode("utf-8", "replace")

    return render


JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
"""Dates (and other unknown values) are written as before: `__structlog__()` or their repr."""


def _json_text(value: object, **options: Any) -> str:
    return shown_escaped(jsonbytes.dumps(value, **options)).decode()


# In UTF-8: DEL, the C1 controls (U+0080-U+009F: CSI is U+009B) and the bidirectional marks
# (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069). JSON escapes only U+0000-U+001F.
_UNSHOWN = re.compile(
    rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)


def shown_escaped(line: bytes) -> bytes:
    """A rendered JSON line with the characters a terminal acts on but JSON leaves raw written
    as ``\\uXXXX`` (still the same JSON): someone reading the log with ``kubectl logs`` or
    ``journalctl`` sees them, and a caller's ``X-Request-Id`` cannot redraw their screen."""
    if line.isascii() and b"\x7f" not in line:
        return line
    return _UNSHOWN.sub(lambda found: b"\\u%04x" % ord(found.group().decode()), line)


def event_steps() -> tuple[structlog.typing.Processor, ...]:
    """structlog's processors between the context merge and the renderer, for our events."""
    return (
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    )


def terminal_safe_fields(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """For the console format: text values with their control characters escaped
    (`terminal_safe`), so a value someone sent (an identifier, ``X-Request-Id``) cannot move the
    cursor or forge lines on an operator's terminal. A traceback keeps its line breaks.
    Values inside lists and dicts are written with `repr`, which escapes them already."""
    for key, value in event.items():
        if isinstance(value, str):
            if key in ("exception", "stack"):
                event[key] = "\n".join(terminal_safe(line) for line in value.split("\n"))
            else:
                event[key] = terminal_safe(value)
    return event


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
        return shown_escaped(jsonbytes.dumps(event, default=_json_fallback, option=JSON_OPTIONS))

    def _now(self) -> str:
        """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00``, as structlog's
        `TimeStamper` writes it (no fraction when it is zero), formatting a second only once."""
        second, fraction = divmod(self._clock_ns(), 1_000_000_000)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        micro = fraction // 1000
        return f"{stamp[1]}.{micro:06d}Z" if micro else f"{stamp[1]}Z"


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stdlib's handler for `JsonLines`, without a lock of its own: `JsonLines` keeps lines
    whole and in order, and a second lock, taken in the other order by a destructor that logs
    during a garbage collection inside `JsonLines`, could deadlock two threads."""

    def createLock(self) -> None:
        """No lock (see the class docstring)."""
        self.lock = None


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
