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
    """Route every structlog event to `stream` (stderr by default) in the chosen format."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # aiohttp's own access log would duplicate `webhook.decision`; keep its errors only.
    logging.basicConfig(level=logging.WARNING, stream=out, format="%(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


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
