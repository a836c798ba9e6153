"""What the service knows about itself right now, for ``/metrics`` and the admin page.

`Activity` is a `Hook` that remembers, per provider, the latest upstream success and failure
and the latest lookup (cheap: a few attribute writes per event). `snapshot` joins that with
what the providers and the store report at the moment it is called: readiness, devices held,
when the inventory was last loaded or synced. Reading the store is bounded, and a store that
does not answer leaves those fields empty rather than holding up a scrape or a page.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aiohttp import web

from connector.observe import DecisionEvent, LookupEvent
from connector.persistence import Persistence
from connector.readiness import Readiness
from connector.store import StoreError
from connector.sync import SyncedProvider
from providers import ProviderSettings
from providers.base import Provider
from providers.observe import RetryScheduled, TokenEvent, UpstreamCall
from providers.sync_options import SyncOptions


def connector_version() -> str:
    """The installed posture-connector version (for build_info, traces and the admin page)."""
    try:
        return importlib.metadata.version("posture-connector")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


STORE_READ_TIMEOUT = 2.0
"""Seconds a snapshot waits for the store before leaving its fields empty."""


@runtime_checkable
class HeldInventory(Protocol):
    """A provider that holds its whole inventory in memory (files)."""

    @property
    def device_count(self) -> int:
        """Devices held."""
        ...

    @property
    def loaded_at(self) -> float | None:
        """Unix time of the last successful load."""
        ...


@dataclass(slots=True)
class ProviderActivity:
    """The latest events of one provider (mutable, owned by `Activity`).

    Attributes:
        upstream_ok_at: Unix time of the last 2xx/3xx answer from its upstream API.
        upstream_error: The last upstream failure (``HTTP 503``, ``ConnectTimeout``).
        upstream_error_at: When it happened.
        lookup_at: Unix time of the last lookup.
        lookup_outcome: ``found``, ``not_found``, ``error`` or ``timeout``.
        lookup_seconds: How long it took.
        failure: Why the last failed lookup failed (safe to show).
        failure_at: When.
    """

    upstream_ok_at: float | None = None
    upstream_error: str | None = None
    upstream_error_at: float | None = None
    lookup_at: float | None = None
    lookup_outcome: str | None = None
    lookup_seconds: float | None = None
    failure: str | None = None
    failure_at: float | None = None


class Activity:
    """A `Hook` keeping each provider's latest events (see `ProviderActivity`)."""

    def __init__(self) -> None:
        self.providers: dict[str, ProviderActivity] = {}

    def _of(self, provider: str) -> ProviderActivity:
        # Not `setdefault`: that builds a `ProviderActivity` on every event (every lookup).
        state = self.providers.get(provider)
        if state is None:
            state = self.providers[provider] = ProviderActivity()
        return state

    def decision(self, event: DecisionEvent) -> None:
        """Not kept (the audit log has decisions)."""
        del event

    def lookup(self, event: LookupEvent) -> None:
        """Remember the lookup, and its reason when it failed."""
        now = time.time()
        state = self._of(event.provider)
        state.lookup_at, state.lookup_outcome = now, event.outcome
        state.lookup_seconds = event.latency
        if event.error is not None:
            state.failure, state.failure_at = event.error, now

    def upstream_call(self, event: UpstreamCall) -> None:
        """Remember the last success, or the last failure."""
        state = self._of(event.provider)
        if event.status is not None and event.status < 400:
            state.upstream_ok_at = time.time()
        else:
            state.upstream_error = (
                f"HTTP {event.status}" if event.status is not None else event.error or "error"
            )
            state.upstream_error_at = time.time()

    def retry(self, event: RetryScheduled) -> None:
        """Not kept (counted by metrics)."""
        del event

    def token(self, event: TokenEvent) -> None:
        """A refused token is the provider's latest upstream failure."""
        if event.outcome == "refused":
            state = self._of(event.provider)
            state.upstream_error = f"token refused: {event.detail or 'no detail'}"
            state.upstream_error_at = time.time()


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider as it stands.

    Attributes:
        name: Configured name.
        kind: Its ``kind`` (csv, json, jamf, intune, ...).
        mode: ``live``, ``sync`` or ``sync+live``.
        ready: Whether it answers lookups (as on ``/readyz``).
        devices: Devices held (files) or in the current synced generation; None for live APIs.
        loaded_at: Unix time of the last successful load (files) or completed sync.
        generation: The current synced generation's id.
        sync_error: Why the last sync attempt failed, if it did.
        sync_attempt_at: Unix time of the last sync attempt.
        activity: The latest events seen (never None: empty when nothing happened yet).
    """

    name: str
    kind: str
    mode: str
    ready: bool
    devices: int | None
    loaded_at: float | None
    generation: int | None
    sync_error: str | None
    sync_attempt_at: float | None
    activity: ProviderActivity


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The store as it stands.

    Attributes:
        backend: Where it is, password-free (``sqlite:/var/lib/...``).
        ready: Connected and migrated.
        error: Why it is not ready.
        audit_written: Audit entries written since start.
        audit_dropped: Audit entries lost (queue full) since start.
    """

    backend: str
    ready: bool
    error: str | None
    audit_written: int
    audit_dropped: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Providers (in configured order) and the store, at `taken_at` (Unix time)."""

    taken_at: float
    providers: tuple[ProviderStatus, ...]
    store: StoreStatus
    status: str = "ready"
    """What ``/readyz`` answers: ``ready``, ``not-ready`` (a provider is not), ``draining``
    or ``loop-stalled``."""

    @property
    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200."""
        return self.status == "ready"


async def snapshot(
    tables: Mapping[str, ProviderSettings],
    providers: Mapping[str, Provider],
    persistence: Persistence,
    activity: Activity,
    readiness: Readiness | None = None,
) -> Snapshot:
    """The state of every provider (started with its config `tables`) and the store now (store
    reads bounded, never raising); with `readiness`, the service's as ``/readyz`` has it."""
    statuses = await asyncio.gather(
        *(
            _provider_status(tables[name], name, provider, persistence, activity)
            for name, provider in providers.items()
        )
    )
    providers_ready = all(p.ready for p in statuses)
    if readiness is None:
        status = "ready" if providers_ready else "not-ready"
    else:
        status = readiness.status(providers_ready=providers_ready)
    store = persistence.store
    return Snapshot(
        taken_at=time.time(),
        status=status,
        providers=tuple(statuses),
        store=StoreStatus(
            backend=store.describe,
            ready=store.ready,
            error=None if store.ready else persistence.error,
            audit_written=persistence.audit.written,
            audit_dropped=persistence.audit.dropped,
        ),
    )


async def _provider_status(
    options: ProviderSettings,
    name: str,
    provider: Provider,
    persistence: Persistence,
    activity: Activity,
) -> ProviderStatus:
    mode = options.mode if isinstance(options, SyncOptions) else "live"
    devices: int | None = None
    loaded_at: float | None = None
    generation: int | None = None
    sync_error: str | None = None
    sync_attempt: float | None = None
    if isinstance(provider, HeldInventory):
        devices, loaded_at = provider.device_count, provider.loaded_at
    elif isinstance(provider, SyncedProvider) and persistence.store.ready:
        try:
            async with asyncio.timeout(STORE_READ_TIMEOUT):
                current = await provider.answering_copy()
                state = await persistence.store.load_sync_state(provider.key)
        except (StoreError, TimeoutError):
            pass
        else:
            if current is not None:
                devices, loaded_at, generation = current.devices, current.completed_at, current.id
            sync_error, sync_attempt = state.last_error, state.last_attempt
    return ProviderStatus(
        name=name,
        kind=options.kind,
        mode=mode,
        ready=provider.ready,
        devices=devices,
        loaded_at=loaded_at,
        generation=generation,
        sync_error=sync_error,
        sync_attempt_at=sync_attempt,
        activity=activity.providers.get(name) or ProviderActivity(),
    )


ACTIVITY = web.AppKey("activity", Activity)
