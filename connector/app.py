"""`create_app`: routes, middlewares and the app-held state (settings, providers, caches)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import structlog
from aiohttp import web

from connector.errors import error_middleware
from connector.handlers import handle_healthz, handle_readyz, handle_webhook
from connector.keys import CACHE, CLOCK, PROVIDERS, ROUTES, SETTINGS, WebhookRuntime
from connector.logs import request_context
from connector.lookup import LookupCache, ProviderChain
from connector.settings import Settings
from providers import Provider, ProviderError, build_provider

log = structlog.get_logger("connector")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, *, clock: Callable[[], datetime] = _utcnow) -> web.Application:
    """Build the web application for `settings`; providers start with the app."""
    app = web.Application(
        middlewares=[request_context, error_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    providers: dict[str, Provider] = {
        name: build_provider(name, config) for name, config in settings.providers.items()
    }
    cache = LookupCache(
        found_ttl=settings.cache.found_ttl,
        not_found_ttl=settings.cache.not_found_ttl,
        max_entries=settings.cache.max_entries,
    )
    routes: dict[str, dict[str, WebhookRuntime]] = {}
    for hook in settings.webhooks:
        chain = ProviderChain([providers[name] for name in hook.providers], cache)
        routes.setdefault(hook.path, {})[hook.id] = WebhookRuntime(hook, chain)
    app[SETTINGS] = settings
    app[PROVIDERS] = providers
    app[CACHE] = cache
    app[ROUTES] = routes
    app[CLOCK] = clock
    app.add_routes(
        [
            web.get("/healthz", handle_healthz, allow_head=True),
            web.get("/readyz", handle_readyz, allow_head=True),
            *(web.route("*", path, handle_webhook) for path in routes),
        ]
    )
    app.cleanup_ctx.append(_providers_ctx)
    return app


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start every provider (a failure leaves it not-ready, not the service down); close them."""
    for provider in app[PROVIDERS].values():
        try:
            await provider.start()
        except ProviderError as exc:
            log.error("provider.not_ready", provider=provider.name, error=exc.message)
    log.info(
        "service.started",
        webhooks=[h.name for h in app[SETTINGS].webhooks],
        providers={name: p.ready for name, p in app[PROVIDERS].items()},
    )
    yield
    for provider in app[PROVIDERS].values():
        await provider.aclose()
    log.info("service.stopped")
