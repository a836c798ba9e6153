"""What the app shares with other replicas through the store, and how it is kept running.

`Persistence` is built once per app from ``[store]`` and the provider tables:

- the store itself, connected lazily and migrated by a background loop, so the service starts
  (and reports the store on `/readyz`) while the database is still away;
- providers in ``mode = "sync"`` or ``"sync+live"`` wrapped in a `SyncedProvider`, with one
  `Syncer` each (only the lease holder among the replicas lists the upstream);
- the audit log: a `Hook` turning each decision into an `AuditEntry` for the `AuditRecorder`,
  and retention pruning.

The store being away never blocks a decision: live providers keep answering, synced ones fail
closed (or fall back to the upstream in sync+live), and audit entries wait in a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web

from connector.lookup import decode_answer, encode_answer
from connector.observe import DecisionEvent, LookupEvent
from connector.settings import Settings
from connector.store import (
    AuditEntry,
    AuditRecorder,
    FailedRule,
    SchemaTooNew,
    Store,
    StoreError,
    connect_store,
)
from connector.sync import SyncedProvider, Syncer, copy_name, utc
from providers.base import DeviceLister, Provider
from providers.observe import RetryScheduled, TokenEvent, UpstreamCall
from providers.sync_options import SyncOptions

log = structlog.get_logger("connector.store")

CONNECT_RETRY = 5.0
"""Seconds between attempts to reach (and migrate) the store while it is away."""
PRUNE_INTERVAL = 3600.0
"""Seconds between audit-retention passes."""


class Persistence:
    """The store, the audit writer and the syncers of one app; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store = connect_store(settings.store)
        self.audit = AuditRecorder(self.store)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.syncers: list[Syncer] = []
        self.listers: list[Provider] = []
        """Providers only a syncer uses (``mode = "sync"``): closed here, after the syncers."""
        self.error: str | None = None
        """Why the store is not ready, when it is not."""
        self._modes: dict[str, str] = {}

    def wrap(self, name: str, live: Provider) -> Provider:
        """The provider decisions ask: `live` itself, or its synced copy (and start its syncer)."""
        options = self.settings.providers[name]
        if not isinstance(options, SyncOptions) or options.mode == "live":
            self._modes[name] = "live"
            return live
        if not isinstance(live, DeviceLister):
            raise TypeError(f"provider {name} cannot list devices, so it cannot sync")
        self._modes[name] = options.mode
        key = copy_name(name, options)
        self.syncers.append(
            Syncer(
                name,
                live,
                options,
                self.store,
                replica=self.replica,
                encode=encode_answer,
                key=key,
                lease_ttl=self.settings.store.sync_lease_ttl,
            )
        )
        if options.mode == "sync":
            self.listers.append(live)
        return SyncedProvider(name, options, self.store, decode=decode_answer, live=live, key=key)

    def source(self, provider: str | None, cached: bool | None) -> str | None:
        """What answered a decision, for the audit log: cache, live, store or store+live."""
        if provider is None:
            return None
        if cached:
            return "cache"
        return {"sync": "store", "sync+live": "store+live"}.get(
            self._modes.get(provider, ""), "live"
        )

    def readiness(self) -> dict[str, object]:
        """The store's part of `/readyz`."""
        state: dict[str, object] = {"backend": self.store.describe, "ready": self.store.ready}
        if self.error and not self.store.ready:
            state["error"] = self.error
        if self.audit.dropped:
            state["audit_dropped"] = self.audit.dropped
        return state

    def sync_readiness(self) -> dict[str, object]:
        """Each synced provider's part of `/readyz`: the generation it answers from, the last
        complete sync and, after a failed one (the last good generation still answers), why."""
        report: dict[str, object] = {}
        for syncer in self.syncers:
            status, current = syncer.status, syncer.current
            report[syncer.name] = {
                "mode": self._modes[syncer.name],
                "generation": current.id if current else None,
                "devices": current.devices if current else None,
                "last_success": _iso(status.last_success if status else None),
                "last_attempt": _iso(status.last_attempt if status else None),
                "last_error": status.last_error if status else None,
                "resume_pending": status is not None and status.building is not None,
            }
        return report

    async def keep_connected(self) -> None:
        """Connect and migrate until it works; log each state change once."""
        while not self.store.ready:
            try:
                version = await self.store.migrate()
            except SchemaTooNew as exc:
                self._unavailable("store.schema_too_new", str(exc))
            except StoreError as exc:
                self._unavailable("store.unavailable", str(exc))
            else:
                self.error = None
                log.info("store.ready", store=self.store.describe, schema=version)
                return
            await asyncio.sleep(CONNECT_RETRY)

    def _unavailable(self, event: str, reason: str) -> None:
        if reason != self.error:
            log.error(event, store=self.store.describe, error=reason)
        self.error = reason

    async def prune(self) -> None:
        """Forget audit entries past the retention, and expired SCEP challenges, hourly."""
        days = self.settings.store.audit_retention_days
        while True:
            if self.store.ready:
                now = time.time()
                try:
                    if days:
                        removed = await self.store.prune_decisions(now - days * 86400)
                        if removed:
                            log.info("audit.pruned", entries=removed, retention_days=days)
                    await self.store.prune_challenges(now)
                except StoreError as exc:
                    log.warning("audit.prune_failed", error=str(exc))
            await asyncio.sleep(PRUNE_INTERVAL)


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else utc(timestamp).isoformat().replace("+00:00", "Z")


class AuditHook:
    """A `Hook` that records every decision in the audit log (and ignores the other events)."""

    def __init__(self, persistence: Persistence) -> None:
        self._persistence = persistence

    def decision(self, event: DecisionEvent) -> None:
        """Queue the decision (never blocks; `request_id` comes from the request's context)."""
        context: Mapping[str, object] = structlog.contextvars.get_contextvars()
        request_id = context.get("request_id")
        self._persistence.audit.record(
            AuditEntry(
                at=time.time(),
                webhook=event.webhook,
                webhook_kind=event.kind,
                identifier=event.identifier,
                identifier_kind=event.identifier_kind,
                allow=event.allow,
                code=event.code,
                provider=event.provider,
                source=self._persistence.source(event.provider, event.cached),
                request_id=request_id if isinstance(request_id, str) else None,
                latency_ms=round(event.latency * 1000, 2),
                mode="shadow" if event.shadow else "enforce",
                would_allow=event.would_allow,
                failed_rules=tuple(
                    FailedRule(r.code or "", r.message, r.observed) for r in event.failed_rules
                ),
                user=event.user,
                email=event.email,
                detail=dict(event.detail) if event.detail else None,
            )
        )

    def lookup(self, event: LookupEvent) -> None:
        """Not recorded."""
        del event

    def upstream_call(self, event: UpstreamCall) -> None:
        """Not recorded."""
        del event

    def retry(self, event: RetryScheduled) -> None:
        """Not recorded."""
        del event

    def token(self, event: TokenEvent) -> None:
        """Not recorded."""
        del event


PERSISTENCE = web.AppKey("persistence", Persistence)


async def persistence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the store's background work with the app; flush the audit log and close at the end."""
    persistence = app[PERSISTENCE]
    persistence.audit.start()
    tasks = [
        asyncio.create_task(persistence.keep_connected(), name="store"),
        asyncio.create_task(persistence.prune(), name="audit-prune"),
        *(asyncio.create_task(s.run(), name=f"sync:{s.name}") for s in persistence.syncers),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for lister in persistence.listers:
        await lister.aclose()
    await persistence.audit.aclose()
    if persistence.store.ready:
        for syncer in persistence.syncers:
            with contextlib.suppress(StoreError):
                await persistence.store.release_lease(syncer.lease, persistence.replica)
    await persistence.store.aclose()
