"""Run the app: bind first, TLS (files or a development certificate), graceful shutdown.

The port is bound before anything else starts, so a taken port is one clear error (`ListenError`)
and never a half-started service; providers start in the background once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import structlog
from aiohttp import web

from connector.app import create_app
from connector.connection import install
from connector.entry import EarlyHangups
from connector.keys import SERVICE_LISTENER
from connector.listener import Listener
from connector.readiness import READINESS
from connector.reload import reload_on_sighup
from connector.settings import ServerSettings, Settings
from connector.tls import CertificateReloader, CertPaths, ensure_dev_certificate, server_context

log = structlog.get_logger("connector")


def build_tls(settings: Settings, config_dir: Path) -> tuple[ssl.SSLContext, CertPaths] | None:
    """The listener's TLS context, or None for plain HTTP behind a proxy."""
    server = settings.server
    if server.plain_http:
        log.warning(
            "server.plain_http",
            message="serving plain HTTP: step-ca v0.30 only calls https webhooks; use this only "
            "behind a TLS-terminating proxy",
        )
        return None
    if server.tls_cert is not None and server.tls_key is not None:
        paths = CertPaths(server.tls_cert, server.tls_key)
    else:
        directory = server.dev_certificate_dir or config_dir / ".dev-tls"
        paths, ca_path = ensure_dev_certificate(directory)
        log.warning(
            "tls.dev_certificate",
            message="USING A SELF-SIGNED DEVELOPMENT CERTIFICATE - not for production",
            cert=str(paths.cert),
            ca=str(ca_path),
        )
    return server_context(paths, server.client_ca), paths


class ListenError(Exception):
    """When the listening socket cannot be bound (port in use, no permission, no such address)."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        hint = _HINTS.get(exc.errno or 0, "")
        super().__init__(f"cannot listen on {host}:{port}: {reason}{hint}")
        self.host = host
        self.port = port
        self.reason = reason


_HINTS = {
    errno.EADDRINUSE: " (another process holds the port; change server.port or stop it)",
    errno.EACCES: " (ports below 1024 need privileges; use a higher server.port)",
    errno.EADDRNOTAVAIL: " (no interface of this host has that address; check server.host)",
}

# What is left after `shutdown_timeout` (a request stuck in a slow provider) is cancelled this
# quickly by aiohttp's own shutdown.
FINAL_GRACE = 0.5


def make_listener(server: ServerSettings) -> Listener:
    """A listener (not yet bound) for the `[server]` settings."""
    return Listener(
        server.host,
        server.port,
        max_connections=server.max_connections,
        read_timeout=server.read_timeout,
        keepalive_timeout=server.keepalive_timeout,
    )


async def drain_period(
    app: web.Application, listener: Listener, period: float, hurry: asyncio.Event
) -> None:
    """Step out of rotation before closing: `/readyz` answers 503 (`draining`) and every answer
    closes its connection, while the listener still accepts and answers, for `period` seconds
    (less once `hurry` is set). A balancer whose health check runs within the period stops
    sending here before the port closes, so no call meets a closed port or a cut connection.
    """
    app[READINESS].draining = True
    if period <= 0:
        return
    listener.stop_keepalive()
    log.info("server.draining", drain_period=period, open_connections=listener.open_connections)
    try:
        async with asyncio.timeout(period):
            await hurry.wait()
    except TimeoutError:
        return
    log.info("server.drain_interrupted", open_connections=listener.open_connections)


def serve(
    settings: Settings,
    config_dir: Path,
    *,
    config_path: Path | None = None,
    early: EarlyHangups | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain (`server.drain_period`), answer requests under
    way and close providers. With `config_path`, SIGHUP reloads it (`connector.reload`), and
    the SIGHUPs `early` noted while the service started reload once it runs.

    Raises `ListenError` (before any provider starts) when the port cannot be bound.
    """
    server = settings.server
    listener = make_listener(server)
    try:
        listener.bind()
    except OSError as exc:
        raise ListenError(server.host, server.port, exc) from None
    try:
        tls = build_tls(settings, config_dir)
        app = create_app(settings)
        reloader = None
        if tls is not None:
            context, paths = tls
            listener.use_tls(context)
            reloader = CertificateReloader(context, paths, server.cert_reload_interval)
            app.cleanup_ctx.append(reloader.ctx)
        if config_path is not None:
            reload_on_sighup(app, settings, config_path, certificates=reloader, early=early)
        settle_heap()
        with asyncio.Runner(loop_factory=loop_factory(server.event_loop)) as runner:
            runner.run(_until_signal(app, listener, settings))
    finally:
        listener.close()


def loop_factory(
    choice: Literal["auto", "uvloop", "asyncio"],
) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop for `server.event_loop`: uvloop unless ``"asyncio"`` is asked for, or
    ``"auto"`` finds it not installed (settings refuse ``"uvloop"`` where it is missing)."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop  # noqa: PLC0415 - not built for every platform
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what the running loop is, for `server.listening`."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def settle_heap() -> None:
    """Leave what start-up built (modules, settings, models: some 70,000 objects) out of every
    later garbage collection, so a full collection during a request takes microseconds rather
    than milliseconds (a p99 latency spike)."""
    gc.collect()
    gc.freeze()


async def _until_signal(app: web.Application, listener: Listener, settings: Settings) -> None:
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        # The first signal starts the drain period; a second one (an impatient Ctrl-C) ends it.
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        async with running(app, listener, settings, hurry=hurry):
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


@contextlib.asynccontextmanager
async def running(
    app: web.Application,
    listener: Listener,
    settings: Settings,
    *,
    hurry: asyncio.Event | None = None,
) -> AsyncIterator[None]:
    """Serve `app` on the bound `listener`; on exit drain, close the listener once requests
    under way are answered, then clean the app up.

    The drain period (`server.drain_period`) comes first and ends early when `hurry` is set.
    """
    install(app)
    app[SERVICE_LISTENER] = listener  # its connection counts reach /metrics
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=FINAL_GRACE)
    await runner.setup()
    try:
        assert runner.server is not None  # noqa: S101 - set by setup()
        listener.start(runner.server)
        host, port = listener.addresses[0]
        server = settings.server
        log.info(
            "server.listening",
            host=host,
            port=port,
            tls=listener.tls,
            mtls=server.client_ca is not None,
            max_connections=server.max_connections,
            event_loop=event_loop_name(),
            webhooks={h.name: h.path for h in settings.webhooks},
        )
        yield
        await drain_period(app, listener, server.drain_period, hurry or asyncio.Event())
        log.info("server.stopping", open_connections=listener.open_connections)
        await listener.drain(server.shutdown_timeout)
    finally:
        await runner.cleanup()
