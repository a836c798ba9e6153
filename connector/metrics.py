"""Prometheus metrics: a `Hook` that counts events, and state read at scrape time.

Each app has its own `CollectorRegistry` (no global state: two apps in one process, as in the
tests, never share a counter). Events (decisions, lookups, upstream calls, retries, tokens,
refused requests) increment counters and histograms as they happen; readiness, devices held,
the last load or sync, the store and the connection counts are read when ``/metrics`` is
scraped (`Reading`).

Labels carry only names from the configuration (webhooks, providers, rules), reason codes,
outcomes, status classes and route templates: never an identifier, a user, a secret or a
request id, so their cardinality is bounded by the config and the code. docs/observability.md lists
every metric; names and labels are a public interface.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from connector.keys import PROVIDERS, ROUTES, SERVED, SERVICE_LISTENER
from connector.listener import Listener
from connector.observe import DecisionEvent, LookupEvent
from connector.persistence import PERSISTENCE
from connector.readiness import READINESS
from connector.settings import Settings
from connector.sidecars import SIDE_LISTENERS
from connector.status import ACTIVITY, Snapshot, connector_version, snapshot
from connector.tallies import CounterFamily, HistogramFamily, Tallies
from providers.observe import RetryScheduled, TokenEvent, UpstreamCall

del GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR  # the global ones: never used here

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The OpenTelemetry HTTP semantic conventions' duration buckets, in seconds."""
STEP_CA_TESTED = "v0.30.2"
"""The step-ca release the wire format was verified against (scripts/step-versions.env)."""
SIGNATURE_SCHEME = "hmac-sha256"
"""How step-ca signs webhook bodies (``X-Smallstep-Signature``)."""
OUTCOMES = ("found", "not_found", "error", "timeout")

P = "posture_connector_"

_PROVIDER = ("provider",)
_LISTENER = ("listener",)

EVENT_COUNTERS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "decisions": (
        "Answers to verified webhook calls (allow is what step-ca got; code: the deny's "
        "reason code, empty for an allow).",
        ("webhook", "kind", "allow", "code"),
    ),
    "shadow_denials": (
        "Denials a webhook in shadow mode would have answered (step-ca got an allow).",
        ("webhook", "kind", "code"),
    ),
    "policy_rule_failures": (
        "Policy rules that refused a device (several per denial when report = all).",
        ("webhook", "rule", "code"),
    ),
    "requests_rejected": (
        "Requests refused before any decision (signature, credentials, payload...).",
        ("status", "code"),
    ),
    "provider_lookups": ("Provider answers inside lookups, by outcome.", ("provider", "outcome")),
    "cache_hits": ("Lookups answered from the lookup cache.", _PROVIDER),
    "cache_misses": (
        "Lookups of a cacheable provider the cache could not answer (asked upstream).",
        _PROVIDER,
    ),
    "upstream_requests": (
        "HTTP exchanges with inventory APIs (each attempt), by status class (error: none).",
        ("provider", "route", "status_class"),
    ),
    "upstream_retries": ("Failed upstream attempts that were retried.", _PROVIDER),
    "upstream_rate_limit_waits": ("Retries that waited for the upstream's Retry-After.", _PROVIDER),
    "upstream_rate_limit_wait_seconds": (
        "Seconds spent waiting for upstream Retry-After.",
        _PROVIDER,
    ),
    "token_refreshes": (
        "Bearer tokens fetched (refreshed) or refused by the upstream.",
        ("provider", "outcome"),
    ),
}
"""Counters of events, by name (after the ``posture_connector_`` prefix): help and labels."""

EVENT_HISTOGRAMS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "decision_duration_seconds": (
        "Seconds from a webhook call's handling to its answer.",
        ("webhook",),
    ),
    "provider_lookup_duration_seconds": (
        "Seconds one provider took to answer a lookup (cache included).",
        _PROVIDER,
    ),
    "upstream_request_duration_seconds": (
        "Seconds per HTTP exchange with an inventory API.",
        _PROVIDER,
    ),
}
"""Durations of events (over `SECONDS_BUCKETS`), by name: help and labels."""

_G, _C = GaugeMetricFamily, CounterMetricFamily
STATE_FAMILIES: tuple[
    tuple[type[GaugeMetricFamily | CounterMetricFamily], str, str, tuple[str, ...]], ...
] = (
    (_G, "ready", "1 when /readyz answers 200 (providers ready, not draining, loop on time).", ()),
    (_G, "provider_ready", "1 when the provider answers lookups.", _PROVIDER),
    (_G, "provider_info", "Each provider with its kind and mode (always 1).",
     ("provider", "kind", "mode")),
    (_G, "provider_devices", "Devices held: a file's inventory, or the current synced generation.",
     _PROVIDER),
    (_G, "provider_last_load_timestamp_seconds",
     "Unix time of the last successful load (files) or when the last completed sync began (store).",
     _PROVIDER),
    (_G, "provider_sync_generation", "Id of the synced generation decisions read.", _PROVIDER),
    (_G, "upstream_last_success_timestamp_seconds",
     "Unix time of the provider's last successful answer from its upstream API.", _PROVIDER),
    (_G, "store_ready", "1 when the store is usable.", ()),
    (_C, "audit_entries_written", "Audit log entries written since start.", ()),
    (_C, "audit_entries_dropped",
     "Audit log entries lost (queue full, or a batch that could never be written) since start.",
     ()),
    (_C, "cache_coalesced_waits",
     "Lookups that waited for the same identifier's lookup already under way.", ("webhook",)),
    (_G, "connections_open", "Accepted connections not yet closed.", _LISTENER),
    (_C, "connections_refused", "Connections refused at server.max_connections.", _LISTENER),
    (_C, "connections_evicted",
     "Connections without a request closed to make room at server.max_connections.", _LISTENER),
)  # fmt: skip
"""State read at each scrape, in exposition order: family, name, help, labels."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What a scrape reports besides the event counters.

    Attributes:
        snapshot: Providers and store now.
        listeners: Listener name (``service``, ``metrics``, ``admin``) to the listener.
        coalesced: Webhook name to lookups that waited for a run already under way.
        webhooks: (name, kind, mode) of each webhook served now (a reload changes them);
            None: the configured ones.
    """

    snapshot: Snapshot
    listeners: Mapping[str, Listener] = field(default_factory=dict)
    coalesced: Mapping[str, int] = field(default_factory=dict)
    webhooks: tuple[tuple[str, str, str], ...] | None = None


class _StateCollector:
    """Turns the latest `Reading` into gauge and counter families at collection time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.reading: Reading | None = None

    def describe(self) -> Iterable[Metric]:
        """The families without samples (so registering does not collect)."""
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        """The families for the latest reading."""
        return list(self._families(self.reading))

    def _families(self, reading: Reading | None) -> Iterator[Metric]:
        settings = self._settings
        build = GaugeMetricFamily(
            P + "build_info",
            "The connector's version, Python and the step-ca protocol it speaks (always 1).",
            labels=["version", "python", "step_ca_tested", "signature"],
        )
        build.add_metric(
            [
                connector_version(),
                platform.python_version(),
                STEP_CA_TESTED,
                SIGNATURE_SCHEME,
            ],
            1,
        )
        yield build
        hooks = GaugeMetricFamily(
            P + "webhook_info",
            "Each configured webhook with its kind and mode (always 1).",
            labels=["webhook", "kind", "mode"],
        )
        served = reading.webhooks if reading is not None else None
        if served is None:
            served = tuple((h.name, h.kind, h.mode) for h in settings.webhooks)
        for name, kind, mode in served:
            hooks.add_metric([name, kind, mode], 1)
        yield hooks
        families = {
            name: kind(P + name, doc, labels=list(labels))
            for kind, name, doc, labels in STATE_FAMILIES
        }
        if reading is not None:
            _read(families, reading)
        yield from families.values()


def _read(
    families: Mapping[str, GaugeMetricFamily | CounterMetricFamily], reading: Reading
) -> None:
    """Add the samples of one `Reading` to the `STATE_FAMILIES` by name."""
    snap = reading.snapshot
    families["ready"].add_metric([], int(snap.ready))
    for p in snap.providers:
        families["provider_ready"].add_metric([p.name], int(p.ready))
        families["provider_info"].add_metric([p.name, p.kind, p.mode], 1)
        for name, value in (
            ("provider_devices", p.devices),
            ("provider_last_load_timestamp_seconds", p.loaded_at),
            ("provider_sync_generation", p.generation),
            ("upstream_last_success_timestamp_seconds", p.activity.upstream_ok_at),
        ):
            if value is not None:
                families[name].add_metric([p.name], value)
    families["store_ready"].add_metric([], int(snap.store.ready))
    families["audit_entries_written"].add_metric([], snap.store.audit_written)
    families["audit_entries_dropped"].add_metric([], snap.store.audit_dropped)
    for webhook, count in reading.coalesced.items():
        families["cache_coalesced_waits"].add_metric([webhook], count)
    for name, listener in reading.listeners.items():
        families["connections_open"].add_metric([name], listener.open_connections)
        families["connections_refused"].add_metric([name], listener.refused_total)
        families["connections_evicted"].add_metric([name], listener.evicted_total)


class Metrics:
    """The app's metrics: a `Hook` for events plus the state read at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._state = _StateCollector(settings)
        registry.register(self._state)
        self._cacheable: frozenset[str] = frozenset()

        # Event counts are plain numbers updated on the loop (`connector.tallies`), exposed
        # after the state, counters first, as prometheus_client's own types were.
        self.counters = {
            name: CounterFamily(P + name, doc, labels)
            for name, (doc, labels) in EVENT_COUNTERS.items()
        }
        self.histograms = {
            name: HistogramFamily(P + name, doc, labels, SECONDS_BUCKETS)
            for name, (doc, labels) in EVENT_HISTOGRAMS.items()
        }
        registry.register(Tallies([*self.counters.values(), *self.histograms.values()]))
        for name in settings.providers:
            for outcome in OUTCOMES:
                self.counters["provider_lookups"].labels(name, outcome)
        for hook in settings.webhooks:
            self.histograms["decision_duration_seconds"].labels(hook.name)

    def cacheable(self, providers: Iterable[str]) -> None:
        """Name the providers whose answers the lookup cache keeps (for `cache_misses`)."""
        self._cacheable = frozenset(providers)
        for name in self._cacheable:
            self.counters["cache_hits"].labels(name)
            self.counters["cache_misses"].labels(name)

    # --- Hook -------------------------------------------------------------------------------

    def decision(self, event: DecisionEvent) -> None:
        """Count the answer, its failing rules, and a shadow webhook's would-be denial."""
        c = self.counters
        code = "" if event.allow else event.code or "denied"
        allow = "true" if event.allow else "false"
        c["decisions"].labels(event.webhook, event.kind, allow, code).inc()
        if event.shadow and event.would_allow is False:
            c["shadow_denials"].labels(event.webhook, event.kind, event.code or "denied").inc()
        for rule in event.failed_rules:
            c["policy_rule_failures"].labels(event.webhook, rule.rule, rule.code or "").inc()
        self.histograms["decision_duration_seconds"].labels(event.webhook).observe(event.latency)

    def lookup(self, event: LookupEvent) -> None:
        """Count the outcome and the cache's part in it."""
        c = self.counters
        c["provider_lookups"].labels(event.provider, event.outcome).inc()
        seconds = self.histograms["provider_lookup_duration_seconds"]
        seconds.labels(event.provider).observe(event.latency)
        if event.cached:
            c["cache_hits"].labels(event.provider).inc()
        elif event.provider in self._cacheable and event.outcome != "timeout":
            c["cache_misses"].labels(event.provider).inc()

    def upstream_call(self, event: UpstreamCall) -> None:
        """Count the exchange by status class and observe its duration."""
        status = "error" if event.status is None else f"{event.status // 100}xx"
        self.counters["upstream_requests"].labels(event.provider, event.route, status).inc()
        seconds = self.histograms["upstream_request_duration_seconds"]
        seconds.labels(event.provider).observe(event.seconds)

    def retry(self, event: RetryScheduled) -> None:
        """Count the retry, and a Retry-After wait with its seconds."""
        c = self.counters
        c["upstream_retries"].labels(event.provider).inc()
        if event.rate_limited:
            c["upstream_rate_limit_waits"].labels(event.provider).inc()
            c["upstream_rate_limit_wait_seconds"].labels(event.provider).inc(event.wait)

    def token(self, event: TokenEvent) -> None:
        """Count the refresh or refusal."""
        self.counters["token_refreshes"].labels(event.provider, event.outcome).inc()

    def request_rejected(self, status: int, code: str) -> None:
        """A refusal the error middleware answered (`connector.errors.ON_REJECTED`)."""
        self.counters["requests_rejected"].labels(str(status), code).inc()

    # --- exposition -------------------------------------------------------------------------

    def exposition(self, reading: Reading, accept: str) -> tuple[bytes, str]:
        """The registry in the format `accept` asks for (Prometheus text by default, and for
        an `accept` prometheus_client cannot read: it raises on ``version=a``, say)."""
        self._state.reading = reading
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):
            encoder, content_type = choose_encoder("")
        return encoder(self.registry), content_type


METRICS = web.AppKey("metrics", Metrics)


def metrics_handler(
    app: web.Application,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics`` for `app`, served by `app` itself or by a listener of its own."""

    async def handle(request: web.Request) -> web.Response:
        providers = app[PROVIDERS]
        snap = await snapshot(
            app[SERVED].providers, providers, app[PERSISTENCE], app[ACTIVITY], app[READINESS]
        )
        side = app[SIDE_LISTENERS]
        listeners = dict(side)
        service = app.get(SERVICE_LISTENER)
        if service is not None:
            listeners["service"] = service
        coalesced: dict[str, int] = {}
        webhooks: dict[str, tuple[str, str, str]] = {}
        for runtimes in app[ROUTES].values():
            for runtime in runtimes.values():
                hook = runtime.settings
                coalesced[hook.name] = runtime.chain.coalesced
                webhooks[hook.name] = (hook.name, hook.kind, hook.mode)
        reading = Reading(snap, listeners, coalesced, tuple(webhooks.values()))
        body, content_type = app[METRICS].exposition(reading, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handle
