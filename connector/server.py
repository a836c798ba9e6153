"""Run the app: TLS (files, or a development certificate), hot reload, graceful shutdown."""

from __future__ import annotations

import ssl
from pathlib import Path

import structlog
from aiohttp import web

from connector.app import create_app
from connector.settings import Settings
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


def serve(settings: Settings, config_dir: Path) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests and close providers."""
    tls = build_tls(settings, config_dir)
    app = create_app(settings)
    context = None
    if tls is not None:
        context, paths = tls
        reloader = CertificateReloader(context, paths, settings.server.cert_reload_interval)
        app.cleanup_ctx.append(reloader.ctx)
    log.info(
        "server.listening",
        host=settings.server.host,
        port=settings.server.port,
        tls=context is not None,
        mtls=settings.server.client_ca is not None,
        webhooks={h.name: h.path for h in settings.webhooks},
    )
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        ssl_context=context,
        shutdown_timeout=settings.server.shutdown_timeout,
        print=None,
        access_log=None,
        handle_signals=True,
    )
