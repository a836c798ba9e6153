"""`create_app`: routes, middlewares and the app-held state (settings, hooks, providers, cache)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from connector.errors import error_middleware, expect_handler
from connector.handlers import handle_healthz, handle_readyz, handle_webhook
from connector.keys import (
    CLOCK,
    HOOKS,
    PROVIDERS,
    ROUTES,
    SERVED,
    SETTINGS,
    Served,
    WebhookRuntime,
)
from connector.logs import request_context
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from connector.observability import Observability
from connector.observe import FanOut, StructlogHook
from connector.persistence import PERSISTENCE, AuditHook, Persistence, persistence_ctx
from connector.readiness import READINESS, Readiness
from connector.scep.endpoint import handle_challenge_request
from connector.scep.runtime import SCEP, CurrentScep, ScepRuntime, scep_ctx
from connector.settings import Settings
from connector.watchdog import LoopWatchdog
from providers import Provider, ProviderError, build_provider

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger("connector")

# Set once every provider has had its first start attempt (ready or not): tests wait on it.
PROVIDERS_STARTED = web.AppKey("providers_started", asyncio.Event)
# Seconds one provider (or the cache) may take to close at shutdown: a stuck close must not keep
# a stopped replica alive until its orchestrator kills it.
CLOSE_TIMEOUT = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = _utcnow,
    span_exporter: SpanExporter | None = None,
) -> web.Application:
    """Build the web application for `settings`; providers start with the app.

    `span_exporter` turns tracing on with that exporter (tests use the in-memory one).
    """
    app = web.Application(
        middlewares=[request_context, error_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    persistence = Persistence(settings)
    observability = Observability(settings, span_exporter=span_exporter)
    hooks = FanOut([StructlogHook(), AuditHook(persistence), *observability.hooks])
    providers: dict[str, Provider] = {
        name: persistence.wrap(name, build_provider(name, config, hooks=hooks))
        for name, config in settings.providers.items()
    }
    cache = AnswerCache(
        MemoryCache(settings.cache.max_entries),
        found_ttl=settings.cache.found_ttl,
        not_found_ttl=settings.cache.not_found_ttl,
    )
    scep = ScepRuntime(settings, persistence.store, hooks)
    routes: dict[str, dict[str, WebhookRuntime]] = {}
    for hook in settings.webhooks:
        chain = ProviderChain(
            [providers[name] for name in hook.providers],
            cache,
            budget=scep.chain_budget(hook, settings.server.decision_budget),
            on_failure=hook.on_provider_failure,
            hooks=hooks,
        )
        for webhook_id in hook.ids:  # two during a secret rotation
            routes.setdefault(hook.path, {})[webhook_id] = WebhookRuntime(hook, chain, scep)
    app[SETTINGS] = settings
    app[SERVED] = Served(dict(settings.providers))
    app[PROVIDERS] = providers
    app[HOOKS] = hooks
    app[PERSISTENCE] = persistence
    app[ROUTES] = routes
    app[CLOCK] = clock
    app[SCEP] = CurrentScep(scep)
    app.add_routes(
        [
            web.get("/healthz", handle_healthz, allow_head=True, expect_handler=expect_handler),
            web.get("/readyz", handle_readyz, allow_head=True, expect_handler=expect_handler),
            *(
                web.route("*", path, handle_webhook, expect_handler=expect_handler)
                for path in routes
            ),
            *(
                web.route("*", path, handle_challenge_request, expect_handler=expect_handler)
                for path in scep.issuers
            ),
        ]
    )
    app[READINESS] = Readiness()
    app[PROVIDERS_STARTED] = asyncio.Event()
    # The store first: providers in sync mode read it, and it outlives them to flush the audit.
    app.cleanup_ctx.append(persistence_ctx)
    if settings.server.loop_stall_timeout > 0:
        app.cleanup_ctx.append(_watchdog_ctx)
    app.cleanup_ctx.append(_providers_ctx)
    app.cleanup_ctx.append(scep_ctx)
    app.on_cleanup.append(lambda _app: _close("cache", cache.aclose()))
    observability.install(app)
    return app


async def _watchdog_ctx(app: web.Application) -> AsyncIterator[None]:
    """The event-loop watchdog runs for as long as the app (first started, last stopped)."""
    watchdog = LoopWatchdog(app[READINESS], timeout=app[SETTINGS].server.loop_stall_timeout)
    async with watchdog.running():
        yield


async def _close(what: str, closing: Coroutine[Any, Any, None]) -> None:
    """Await one close at shutdown, for at most `CLOSE_TIMEOUT` seconds."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await closing
    except TimeoutError:
        log.warning("service.close_timeout", what=what, timeout=CLOSE_TIMEOUT)


class ProviderKeeper:
    """Starts every provider at once, then restarts the not-ready ones forever.

    Each attempt is bounded by `server.provider_start_timeout`, and nothing a provider raises
    ends the loop: `/readyz` must be able to turn green by itself, since an orchestrator sends
    no traffic (and so no lookups) to a not-ready pod.
    """

    def __init__(self, providers: Collection[Provider], *, timeout: float, interval: float) -> None:
        self._providers = providers
        self._timeout = timeout
        self._interval = interval
        self._last_unexpected: dict[str, str] = {}

    async def start(self, provider: Provider) -> None:
        """One bounded start attempt; a failure is one `provider.not_ready` line."""
        try:
            async with asyncio.timeout(self._timeout):
                await provider.start()
        except ProviderError as exc:
            log.error("provider.not_ready", provider=provider.name, error=exc.message)
        except TimeoutError:
            log.error(
                "provider.not_ready",
                provider=provider.name,
                error=f"start did not finish within {self._timeout:g}s",
            )
        except Exception as exc:  # a provider bug must not stop the retries
            # A bug: its traceback once, then one line per attempt while it repeats.
            signature = f"{type(exc).__qualname__}: {exc}"
            first = self._last_unexpected.get(provider.name) != signature
            self._last_unexpected[provider.name] = signature
            log.error(
                "provider.not_ready",
                provider=provider.name,
                error=f"unexpected {type(exc).__qualname__}",
                exc_info=first,
            )

    async def run(self, started: asyncio.Event, webhooks: list[str]) -> None:
        """Start all providers concurrently, report, then retry the not-ready ones."""
        await asyncio.gather(*(self.start(p) for p in self._providers))
        started.set()
        log.info(
            "service.started",
            webhooks=webhooks,
            providers={p.name: p.ready for p in self._providers},
        )
        while True:
            await asyncio.sleep(self._interval)
            await asyncio.gather(*(self.start(p) for p in self._providers if not p.ready))


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start providers in the background (the port opens at once; `/readyz` says when they are
    ready); on shutdown stop the retries and close them."""
    providers = app[PROVIDERS].values()  # a live view: a config reload swaps providers in
    server = app[SETTINGS].server
    keeper = ProviderKeeper(
        providers, timeout=server.provider_start_timeout, interval=server.provider_retry_interval
    )
    task = asyncio.create_task(
        keeper.run(app[PROVIDERS_STARTED], [h.name for h in app[SETTINGS].webhooks]),
        name="providers",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for provider in list(providers):
        await _close(f"provider {provider.name}", provider.aclose())
    log.info("service.stopped")
