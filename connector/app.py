"""`create_app`: routes, middlewares and the app-held state (settings, hooks, providers, cache)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import structlog
from aiohttp import web

from connector.errors import error_middleware
from connector.handlers import handle_healthz, handle_readyz, handle_webhook
from connector.keys import CLOCK, HOOKS, PROVIDERS, ROUTES, SETTINGS, WebhookRuntime
from connector.logs import request_context
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from connector.observe import FanOut, StructlogHook
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
    hooks = FanOut([StructlogHook()])
    providers: dict[str, Provider] = {
        name: build_provider(name, config, hooks=hooks)
        for name, config in settings.providers.items()
    }
    cache = AnswerCache(
        MemoryCache(settings.cache.max_entries),
        found_ttl=settings.cache.found_ttl,
        not_found_ttl=settings.cache.not_found_ttl,
    )
    routes: dict[str, dict[str, WebhookRuntime]] = {}
    for hook in settings.webhooks:
        chain = ProviderChain(
            [providers[name] for name in hook.providers],
            cache,
            budget=settings.server.decision_budget,
            on_failure=hook.on_provider_failure,
            hooks=hooks,
        )
        routes.setdefault(hook.path, {})[hook.id] = WebhookRuntime(hook, chain)
    app[SETTINGS] = settings
    app[PROVIDERS] = providers
    app[HOOKS] = hooks
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
    app.on_cleanup.append(lambda _app: cache.aclose())
    return app


async def _start(provider: Provider) -> None:
    try:
        await provider.start()
    except ProviderError as exc:
        log.error("provider.not_ready", provider=provider.name, error=exc.message)


async def _retry_not_ready(providers: list[Provider], interval: float) -> None:
    """Start providers that failed again and again: `/readyz` must be able to turn green by
    itself, since an orchestrator sends no traffic (and so no lookups) to a not-ready pod."""
    while True:
        await asyncio.sleep(interval)
        for provider in providers:
            if not provider.ready:
                await _start(provider)


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start every provider (a failure leaves it not-ready, not the service down); close them."""
    providers = list(app[PROVIDERS].values())
    for provider in providers:
        await _start(provider)
    log.info(
        "service.started",
        webhooks=[h.name for h in app[SETTINGS].webhooks],
        providers={p.name: p.ready for p in providers},
    )
    retry = asyncio.create_task(
        _retry_not_ready(providers, app[SETTINGS].server.provider_retry_interval)
    )
    yield
    retry.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await retry
    for provider in providers:
        await provider.aclose()
    log.info("service.stopped")
