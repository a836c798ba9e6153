"""Side listeners: the admin page, and ``/metrics`` when it has a port of its own.

Each runs a small `web.Application` on our own `Listener` (so it has the same read deadlines
and a connection cap), plain HTTP, started and stopped with the main app. A side port that
cannot be bound is logged and left out: the webhook service matters more than its admin page,
and Prometheus reports a target it cannot scrape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web

from connector.connection import install
from connector.listener import Listener

log = structlog.get_logger("connector.server")

SIDE_MAX_CONNECTIONS = 64
"""Connection cap of a side listener (a few browsers and scrapers)."""
SIDE_DRAIN = 1.0
"""Seconds a side listener waits for its requests under way at shutdown."""

SIDE_LISTENERS = web.AppKey("side_listeners", dict[str, Listener])
"""Side listeners by name (``metrics``, ``admin``), filled when they start."""


@dataclass(frozen=True, slots=True)
class SideApp:
    """A side application and where it listens.

    Attributes:
        name: ``metrics`` or ``admin`` (log field and metrics label).
        host: Address to bind.
        port: Port to bind (0: any free port).
        build: Makes the application (called once, at start).
    """

    name: str
    host: str
    port: int
    build: Callable[[], web.Application]


def side_listeners_ctx(
    sides: Sequence[SideApp], *, read_timeout: float, keepalive_timeout: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running `sides` for as long as the main app runs (the deadlines are
    the service's own, ``server.read_timeout`` and ``server.keepalive_timeout``)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        started: list[tuple[Listener, web.AppRunner]] = []
        for side in sides:
            listener = Listener(
                side.host,
                side.port,
                max_connections=SIDE_MAX_CONNECTIONS,
                read_timeout=read_timeout,
                keepalive_timeout=keepalive_timeout,
            )
            try:
                listener.bind()
            except OSError as exc:
                log.error(
                    "server.side_listen_failed",
                    listener=side.name,
                    host=side.host,
                    port=side.port,
                    error=exc.strerror or str(exc),
                )
                continue
            sub = side.build()
            install(sub)
            runner = web.AppRunner(sub, access_log=None, shutdown_timeout=SIDE_DRAIN)
            await runner.setup()
            assert runner.server is not None  # noqa: S101 - set by setup()
            listener.start(runner.server)
            started.append((listener, runner))
            app[SIDE_LISTENERS][side.name] = listener
            host, port = listener.addresses[0]
            log.info("server.side_listening", listener=side.name, host=host, port=port)
        yield
        for listener, runner in started:
            await listener.drain(SIDE_DRAIN)
            listener.close()
            await runner.cleanup()

    return ctx
