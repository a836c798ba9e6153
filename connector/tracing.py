"""OpenTelemetry traces: one span per webhook call, with children for what it waited on.

A middleware opens the call's span (``POST /webhooks/people``, kind SERVER, carrying step-ca's
``X-Request-Id`` as ``stepca.request_id``; a W3C ``traceparent`` header is honoured). The
children are built from the hook events, with the times the events report, so no provider
and no handler knows about tracing:

- ``verify``: from the call's arrival until its first lookup (or its answer, or its refusal):
  method, size, webhook id, client certificate, signature, credentials, JSON and timestamp
  checks; a refusal sets its status to error with the reason code.
- ``lookup <provider>``: one per provider answer, with outcome, cache use and failure reason.
- ``HTTP <method>`` (kind CLIENT) under the lookup it served: one per upstream attempt, with
  the route template and status; retries and token events are span events of the lookup.

The current call travels in a context variable (as OpenTelemetry's own context does), so a
lookup coalesced into another call's run reports under the call that started it. Attributes
carry names, codes and outcomes only: no identifier, user, token or secret.

The `TracerProvider` belongs to the app (never the global one) and is shut down, flushing what
is queued, when the app stops: for at most `FLUSH_TIMEOUT` seconds, after the audit log's flush
(a collector that accepts and never answers must not keep a stopping replica alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from connector.keys import ROUTES
from connector.observe import DecisionEvent, LookupEvent
from connector.settings import TracingSettings
from connector.status import connector_version
from providers.observe import RetryScheduled, TokenEvent, UpstreamCall
from providers.unicode import valid_text

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID = 64
"""Characters of step-ca's request id kept (as in the log context)."""
FLUSH_TIMEOUT = 3.0
"""Seconds the queued spans get to leave at shutdown; what is left then is dropped."""

log = structlog.get_logger("connector")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class _Call:
    """One webhook call being traced: its span and the events not yet turned into spans."""

    span: Span
    started_ns: int
    verified: bool = False
    upstream: list[tuple[UpstreamCall, int]] = field(default_factory=list)
    notes: list[tuple[str, str, dict[str, str | int | float | bool], int]] = field(
        default_factory=list
    )


_CALL: ContextVar[_Call | None] = ContextVar("posture_traced_call", default=None)
"""The call whose span is open in this context (a key, like the log context's)."""


class _Drawn(Sampler):
    """Samples `ratio` of the calls by a random draw (not by the trace id a caller chose)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = ratio

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        """The SDK's always-on or always-off decision, by a draw."""
        chosen = ALWAYS_ON if random.random() < self._ratio else ALWAYS_OFF  # noqa: S311
        return chosen.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        """For the SDK's debugging."""
        return f"Drawn{{{self._ratio}}}"


class Tracing:
    """The app's tracer and the `Hook` that turns events into spans."""

    def __init__(self, settings: TracingSettings, *, exporter: SpanExporter | None = None) -> None:
        resource = Resource.create(
            {"service.name": settings.service_name, "service.version": connector_version()}
        )
        ratio = TraceIdRatioBased(settings.sample_ratio)
        self.provider = TracerProvider(
            resource=resource,
            # A caller's trace is continued, but neither its sampled flag nor its trace id
            # (which the ratio sampler reads) decides: the call is not verified yet when its
            # span opens, and anyone could choose either to have every call exported.
            sampler=ParentBased(
                ratio,
                remote_parent_sampled=_Drawn(settings.sample_ratio),
                remote_parent_not_sampled=_Drawn(settings.sample_ratio),
            ),
            shutdown_on_exit=False,
        )
        self._exporter: SpanExporter | None = None
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            headers = {k: v.get_secret_value() for k, v in settings.headers.items()}
            otlp = OTLPSpanExporter(
                endpoint=settings.endpoint, headers=headers, timeout=settings.timeout
            )
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
            self._exporter = otlp
        else:  # tests: every span is handed over when it ends
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("posture-connector", connector_version())
        self._propagator = TraceContextTextMapPropagator()

    # --- the call's span --------------------------------------------------------------------

    def middleware(self, app: web.Application) -> Middleware:
        """A middleware opening a span around each webhook call (other paths pass through)."""
        routes = app[ROUTES]
        paths = frozenset(routes)

        @web.middleware
        async def trace_webhook(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            path = resource.canonical if resource is not None else None
            if path not in paths:
                return await handler(request)
            attributes: dict[str, str] = {
                "http.request.method": request.method,
                "http.route": path,
                "url.scheme": request.scheme,
            }
            request_id = request.headers.get(REQUEST_ID_HEADER)
            if request_id:
                # Bytes that are not UTF-8 arrive as lone surrogates, which OTLP cannot encode.
                attributes["stepca.request_id"] = valid_text(request_id[:MAX_REQUEST_ID])
            parent = self._propagator.extract(request.headers)  # any case: Go's "Traceparent"
            with self._tracer.start_as_current_span(
                f"{request.method} {path}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
            ) as span:
                call = _Call(span, time.time_ns())
                token = _CALL.set(call)
                try:
                    response = await handler(request)
                finally:
                    self._finish(call)
                    _CALL.reset(token)
                span.set_attribute("http.response.status_code", response.status)
                if response.status >= 500:
                    span.set_status(StatusCode.ERROR)
                return response

        return trace_webhook

    async def ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: flush and shut the tracer provider down when the app stops, for at
        most `FLUSH_TIMEOUT` seconds; then the exporter drops what is left.

        The SDK's own shutdown waits up to 30 s and takes no timeout, so it runs on a daemon
        thread of its own: a thread of the loop's executor would be waited for at exit.
        """
        yield
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def shut_down() -> None:
            try:
                self.provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(done.set)

        threading.Thread(target=shut_down, name="tracing-shutdown", daemon=True).start()
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await done.wait()
        except TimeoutError:
            log.warning("service.close_timeout", what="tracing", timeout=FLUSH_TIMEOUT)
            if self._exporter is not None:
                self._exporter.shutdown()  # the batches still queued fail at once

    def _child(self, call: _Call, name: str, start_ns: int, kind: SpanKind) -> Span:
        return self._tracer.start_span(
            name, context=trace.set_span_in_context(call.span), kind=kind, start_time=start_ns
        )

    def _verified(self, call: _Call, end_ns: int, rejection: str | None = None) -> None:
        """End the ``verify`` span at `end_ns` (once), as refused with `rejection` if given."""
        if call.verified:
            return
        call.verified = True
        span = self._child(call, "verify", call.started_ns, SpanKind.INTERNAL)
        if rejection is not None:
            span.set_attribute("posture.rejection.code", rejection)
            span.set_status(StatusCode.ERROR, rejection)
        span.end(end_time=max(end_ns, call.started_ns))

    def _finish(self, call: _Call) -> None:
        """The call is over: what no lookup claimed becomes a child of the call itself."""
        now = time.time_ns()
        self._verified(call, now)
        self._upstream_spans(call, call.span, lambda _event: True)
        for name, _provider, attributes, at in call.notes:
            call.span.add_event(name, attributes, timestamp=at)
        call.notes.clear()

    def _upstream_spans(self, call: _Call, parent: Span, claim: Callable[[str], bool]) -> None:
        kept: list[tuple[UpstreamCall, int]] = []
        for event, end_ns in call.upstream:
            if not claim(event.provider):
                kept.append((event, end_ns))
                continue
            span = self._tracer.start_span(
                f"HTTP {event.method}",
                context=trace.set_span_in_context(parent),
                kind=SpanKind.CLIENT,
                start_time=end_ns - int(event.seconds * 1e9),
            )
            span.set_attribute("http.request.method", event.method)
            span.set_attribute("url.template", event.route)
            span.set_attribute("posture.provider", event.provider)
            if event.status is not None:
                span.set_attribute("http.response.status_code", event.status)
            if event.status is None or event.status >= 400:
                error = str(event.status) if event.status is not None else event.error or "error"
                span.set_attribute("error.type", error)
                span.set_status(StatusCode.ERROR)
            span.end(end_time=end_ns)
        call.upstream = kept

    # --- Hook -------------------------------------------------------------------------------

    def decision(self, event: DecisionEvent) -> None:
        """The answer's facts become attributes of the call's span."""
        call = _CALL.get()
        if call is None:
            return
        self._verified(call, time.time_ns())
        span = call.span
        span.set_attribute("posture.webhook", event.webhook)
        span.set_attribute("posture.webhook.kind", event.kind)
        span.set_attribute("posture.decision.allow", event.allow)
        if event.code is not None:
            span.set_attribute("posture.decision.code", event.code)
        if event.identifier_kind is not None:
            span.set_attribute("posture.identifier.kind", event.identifier_kind)
        if event.provider is not None:
            span.set_attribute("posture.decision.provider", event.provider)
        if event.cached is not None:
            span.set_attribute("posture.decision.cached", event.cached)
        if event.failed_rules:
            span.set_attribute("posture.policy.failed_rules", [r.rule for r in event.failed_rules])
        if event.shadow:
            span.set_attribute("posture.decision.shadow", True)
            span.set_attribute("posture.decision.would_allow", bool(event.would_allow))

    def lookup(self, event: LookupEvent) -> None:
        """A ``lookup <provider>`` span, with the upstream attempts it made as children."""
        call = _CALL.get()
        if call is None:
            return
        end_ns = time.time_ns()
        start_ns = end_ns - int(event.latency * 1e9)
        self._verified(call, start_ns)
        span = self._child(call, f"lookup {event.provider}", start_ns, SpanKind.INTERNAL)
        span.set_attribute("posture.provider", event.provider)
        span.set_attribute("posture.lookup.outcome", event.outcome)
        span.set_attribute("posture.lookup.cached", event.cached)
        if event.error is not None:
            span.set_status(StatusCode.ERROR, event.error)
        self._upstream_spans(call, span, lambda provider: provider == event.provider)
        notes = [n for n in call.notes if n[1] == event.provider]
        call.notes = [n for n in call.notes if n[1] != event.provider]
        for name, _provider, attributes, at in notes:
            span.add_event(name, attributes, timestamp=at)
        span.end(end_time=end_ns)

    def upstream_call(self, event: UpstreamCall) -> None:
        """Kept until the lookup it serves reports (then it becomes a span under it)."""
        call = _CALL.get()
        if call is not None:
            call.upstream.append((event, time.time_ns()))

    def retry(self, event: RetryScheduled) -> None:
        """Kept as a ``retry`` event of the lookup it delays."""
        call = _CALL.get()
        if call is not None:
            attributes: dict[str, str | int | float | bool] = {
                "url.template": event.route,
                "posture.retry.attempt": event.attempt,
                "posture.retry.wait_seconds": event.wait,
                "posture.retry.reason": event.reason,
                "posture.retry.rate_limited": event.rate_limited,
            }
            call.notes.append(("retry", event.provider, attributes, time.time_ns()))

    def token(self, event: TokenEvent) -> None:
        """Kept as a ``token.refreshed`` / ``token.refused`` event of the lookup."""
        call = _CALL.get()
        if call is not None:
            call.notes.append((f"token.{event.outcome}", event.provider, {}, time.time_ns()))

    def request_rejected(self, status: int, code: str) -> None:
        """A refusal ends ``verify`` as an error and names its code on the call's span."""
        call = _CALL.get()
        if call is None:
            return
        self._verified(call, time.time_ns(), rejection=code)
        call.span.set_attribute("error.type", code)
        call.span.set_attribute("posture.rejection.status", status)
