"""Seeing what the service does: wires metrics, traces, the activity record and the admin page.

`create_app` builds one `Observability` before the providers (their hooks come from it) and
installs it on the app afterwards: app keys, ``/metrics`` on the service port or a side
listener, the tracing middleware, the refusal hook of the error middleware, the admin page.
Everything here only watches: no decision waits for it or depends on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from connector.errors import ON_REJECTED, error_middleware, expect_handler
from connector.keys import PROVIDERS
from connector.metrics import METRICS, Metrics, metrics_handler
from connector.observe import Hook
from connector.settings import METRICS_PATH, Settings, split_listen
from connector.sidecars import SIDE_LISTENERS, SideApp, side_listeners_ctx
from connector.status import ACTIVITY, Activity

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from connector.tracing import Tracing


class Observability:
    """The metrics, tracing and activity hooks of one app, and how they attach to it."""

    def __init__(self, settings: Settings, *, span_exporter: SpanExporter | None = None) -> None:
        self.settings = settings
        self.activity = Activity()
        self.metrics = Metrics(settings) if settings.metrics.enabled else None
        self.tracing: Tracing | None = None
        if settings.tracing.enabled or span_exporter is not None:
            from connector.tracing import Tracing  # noqa: PLC0415 - the optional [tracing] extra

            self.tracing = Tracing(settings.tracing, exporter=span_exporter)

    @property
    def hooks(self) -> list[Hook]:
        """The hooks to add to the app's `FanOut`."""
        return [h for h in (self.activity, self.metrics, self.tracing) if h is not None]

    def _rejected(self, status: int, code: str) -> None:
        if self.metrics is not None:
            self.metrics.request_rejected(status, code)
        if self.tracing is not None:
            self.tracing.request_rejected(status, code)

    def install(self, app: web.Application) -> None:
        """Attach to `app` (after its providers and routes are built, before it starts)."""
        settings = self.settings
        app[ACTIVITY] = self.activity
        app[SIDE_LISTENERS] = {}
        app[ON_REJECTED] = self._rejected
        sides: list[SideApp] = []
        if self.metrics is not None:
            app[METRICS] = self.metrics
            self.metrics.cacheable(n for n, p in app[PROVIDERS].items() if p.cacheable)
            handler = metrics_handler(app)
            if settings.metrics.listen == "service":
                app.router.add_get(METRICS_PATH, handler, expect_handler=expect_handler)
            else:
                host, port = split_listen(settings.metrics.listen)
                sides.append(SideApp("metrics", host, port, lambda: _metrics_app(handler)))
        if settings.admin.enabled:
            from connector.admin import admin_app  # noqa: PLC0415 - only when enabled

            host, port = split_listen(settings.admin.listen)
            sides.append(SideApp("admin", host, port, lambda: admin_app(app)))
        if self.tracing is not None:
            # Outside the error middleware: a refusal is reported while the call's span is open.
            at = list(app.middlewares).index(error_middleware)
            app.middlewares.insert(at, self.tracing.middleware(app))
            # First in, so last out: the audit log and the providers close before the spans go.
            app.cleanup_ctx.insert(0, self.tracing.ctx)
        if sides:
            app.cleanup_ctx.append(
                side_listeners_ctx(
                    sides,
                    read_timeout=settings.server.read_timeout,
                    keepalive_timeout=settings.server.keepalive_timeout,
                )
            )


def _metrics_app(handler: Callable[[web.Request], Awaitable[web.Response]]) -> web.Application:
    side = web.Application()
    side.router.add_get(METRICS_PATH, handler, expect_handler=expect_handler)
    return side
