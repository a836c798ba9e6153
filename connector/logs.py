"""structlog setup: JSON lines for machines, a console renderer on a TTY, request context.

Event names are a public interface (see the README): `area.what_happened`, details as flat
keyword fields. Nothing here logs secrets; callers never pass them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Literal, TextIO

import structlog
from aiohttp import web

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
) -> None:
    """Route every event, ours and the stdlib loggers' (aiohttp, asyncio, warnings), to `stream`
    (stderr by default) in one format: with JSON, every line written is one JSON object."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
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
