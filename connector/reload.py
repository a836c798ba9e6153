"""Reload on SIGHUP: re-read and validate the config and the TLS files, swap in what can change
while the service runs, and say which changes wait for a restart.

Live (swapped in one step, between two requests): every ``[[webhooks]]`` entry on a path the
service already serves (ids, secrets and rotations, credentials, policies, enrichment, provider
lists, SCEP validators), ``[providers.*]`` in ``mode = "live"`` (a changed table is built and
started before the swap; unchanged ones keep running, with their tokens and loaded files), and
``[cache]`` (a fresh cache). The SCEP runtime (validators, challenge URLs' credentials, Intune
SCEP clients) is built anew from the new config and swapped in with the routes; the replaced
one closes once its requests and reports to Intune are done. The TLS certificate files are
re-read as the periodic check does.

After a restart only: ``[server]`` (the listening socket, TLS settings, timeouts), ``[logging]``,
``[store]``, ``[metrics]``, ``[tracing]`` and ``[admin]`` (built once at start), a webhook or a
challenge URL on a path not served yet (the router is fixed at start), and providers in a sync
mode (their syncers belong to the store). The reload still applies everything else and lists
these as ``restart_required`` in `config.reloaded`. A provider whose certificate, key,
service-account file or CA bundle was replaced in place counts as changed, as if its table had.

A config that fails validation, or a changed provider that does not start, is refused whole
(`config.reload_failed` with the problems) and the running config keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from pydantic import BaseModel

from connector.checks import config_warnings, preflight
from connector.entry import EarlyHangups
from connector.keys import HOOKS, PROVIDERS, ROUTES, SERVED, WebhookRuntime
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from connector.metrics import METRICS
from connector.persistence import PERSISTENCE
from connector.scep import ChallengeValidatorSettings
from connector.scep.runtime import SCEP, ScepRuntime
from connector.settings import ConfigError, Settings, load_settings
from connector.tls import CertificateReloader
from providers import Provider, ProviderError, ProviderSettings, build_provider
from providers.files import CsvSettings, JsonSettings
from providers.sync_options import SyncOptions

log = structlog.get_logger("connector.config")

RESTART_SECTIONS = ("server", "logging", "store", "metrics", "tracing", "admin")
"""Sections built once at start (the listener, log setup, store, metrics and tracing exporters,
the admin lock): a change is listed in `restart_required`, never reported as applied."""
RETIRE_GRACE = 1.0
"""Seconds beyond the decision budget before replaced providers close (requests under way)."""


def _synced(table: ProviderSettings | None) -> bool:
    return isinstance(table, SyncOptions) and table.mode != "live"


def credential_stamp(table: ProviderSettings) -> str:
    """A digest of the files a provider reads at start and keeps (a certificate and key, a
    service-account file, a CA bundle): replaced in place (cert-manager, a mounted secret),
    they leave the table equal, so the reload compares this too. A file inventory's `path`
    is not one: its provider watches it."""
    digest = hashlib.sha256()
    if not isinstance(table, BaseModel) or isinstance(table, CsvSettings | JsonSettings):
        return digest.hexdigest()
    for field in type(table).model_fields:
        path = getattr(table, field)
        if isinstance(path, Path):
            digest.update(f"{field}={path}\0".encode())
            try:
                digest.update(path.read_bytes())
            except OSError as exc:  # the provider's own start reports it; a change is a change
                digest.update(f"unreadable: {exc.strerror}".encode())
    return digest.hexdigest()


def start_file_stamps(settings: Settings) -> dict[str, str]:
    """Digests of the files a restart-only section reads once at start and no reloader
    watches (``server.client_ca``, the roots step-ca's client certificate must chain to): one
    rewritten in place leaves the section equal, so the reload compares these too."""
    stamps: dict[str, str] = {}
    client_ca = settings.server.client_ca
    if client_ca is not None:
        try:
            stamps["server.client_ca"] = hashlib.sha256(client_ca.read_bytes()).hexdigest()
        except OSError as exc:
            stamps["server.client_ca"] = f"unreadable: {exc.strerror}"
    return stamps


def _challenge_urls(settings: Settings) -> dict[int, str]:
    """The challenge URL path of each webhook (by index) that has one."""
    return {
        index: hook.validator.path
        for index, hook in enumerate(settings.webhooks)
        if isinstance(hook.validator, ChallengeValidatorSettings)
    }


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload does, decided from the old and new settings alone.

    Attributes:
        build: Providers to build and start anew (new, or their table changed).
        keep: Providers whose running instance goes on serving.
        drop: Running providers the new config no longer has (closed after the swap).
        restart_required: Key paths whose new value only a restart applies.
        problems: Reasons to refuse the reload.
    """

    build: tuple[str, ...]
    keep: tuple[str, ...]
    drop: tuple[str, ...]
    restart_required: tuple[str, ...]
    problems: tuple[str, ...]


def plan_reload(
    started: Settings,
    running: Mapping[str, ProviderSettings],
    new: Settings,
    served: frozenset[str],
    *,
    stale: frozenset[str] = frozenset(),
    rewritten: frozenset[str] = frozenset(),
) -> ReloadPlan:
    """Compare `new` with the settings the process `started` with (restart-only sections, and
    the challenge URLs it routes) and the tables of the providers `running` now; `served` are
    the webhook paths the router knows, `stale` the running providers whose credential files
    changed since they were built (`credential_stamp`), `rewritten` the restart-only keys whose
    file changed since start (`start_file_stamps`)."""
    restart: list[str] = []
    for section in RESTART_SECTIONS:
        before, after = getattr(started, section), getattr(new, section)
        changed = [
            f"{section}.{key}"
            for key in type(after).model_fields
            if getattr(before, key) != getattr(after, key)
        ]
        restart += changed
        restart += [
            f"{key} (its file changed)"
            for key in sorted(rewritten)
            if key.startswith(f"{section}.") and key not in changed
        ]
    restart += [
        f"webhooks[{index}].path ({hook.path} is not served yet)"
        for index, hook in enumerate(new.webhooks)
        if hook.path not in served
    ]
    routed = frozenset(_challenge_urls(started).values())
    restart += [
        f"webhooks[{index}].validator.path ({path} is not served yet)"
        for index, path in _challenge_urls(new).items()
        if path not in routed
    ]
    build: list[str] = []
    keep: list[str] = []
    problems: list[str] = []
    for name, table in new.providers.items():
        old = running.get(name)
        if old == table and name not in stale:
            keep.append(name)
        elif not (_synced(old) or _synced(table)):
            build.append(name)
        elif old is None:
            problems.append(f"providers.{name}: a new provider in a sync mode needs a restart")
        else:
            keep.append(name)  # its syncer runs with the store: the old one serves until then
            restart.append(f"providers.{name}")
    drop = []
    for name, table in running.items():
        if name in new.providers:
            continue
        if _synced(table):
            keep.append(name)
            restart.append(f"providers.{name} (removed)")
        else:
            drop.append(name)
    return ReloadPlan(tuple(build), tuple(keep), tuple(drop), tuple(restart), tuple(problems))


class ConfigReloader:
    """Re-reads the config file on `reload()` (SIGHUP) and swaps the live parts into the app.

    The app's provider and route tables are the same dict objects before and after, and the
    SCEP runtime sits in one `CurrentScep`: a reload replaces their contents in one step, so a
    request sees the old or the new config, never a mix, and the provider keeper retries
    whatever providers are current.
    """

    def __init__(
        self,
        app: web.Application,
        settings: Settings,
        config_path: Path,
        *,
        certificates: CertificateReloader | None = None,
        early: EarlyHangups | None = None,
    ) -> None:
        self._app = app
        self._started = settings
        self._tables: dict[str, ProviderSettings] = dict(settings.providers)  # what runs
        self._stamps = {name: credential_stamp(t) for name, t in settings.providers.items()}
        self._start_files = start_file_stamps(settings)
        self._path = config_path
        self._certificates = certificates
        routes = app[ROUTES]
        self._served: frozenset[str] = frozenset(routes)
        self._lock = asyncio.Lock()
        self._caches: list[AnswerCache] = []  # the cache in use since the last reload
        self._retired: list[Provider] = []  # replaced, closing after the grace
        self._old_caches: list[AnswerCache] = []
        self._old_scep: list[ScepRuntime] = []  # replaced, closing after the grace
        self._tasks: set[asyncio.Task[None]] = set()
        self._early = early  # SIGHUPs noted before this reloader ran

    async def reload(self) -> bool:
        """One reload (serialised); returns whether a new config went live."""
        async with self._lock:
            if self._certificates is not None:
                self._certificates.check()  # logs tls.reloaded or tls.reload_failed itself
            try:
                new = load_settings(self._path)
                problems = preflight(new)
            except ConfigError as exc:
                new, problems = None, exc.problems
            if new is None or problems:
                return self._refuse(problems)
            stamps = {name: credential_stamp(table) for name, table in new.providers.items()}
            stale = frozenset(n for n, stamp in stamps.items() if self._stamps.get(n) != stamp)
            files = start_file_stamps(new)
            rewritten = frozenset(k for k, v in files.items() if self._start_files.get(k) != v)
            plan = plan_reload(
                self._started, self._tables, new, self._served, stale=stale, rewritten=rewritten
            )
            if plan.problems:
                return self._refuse(list(plan.problems))
            built = await self._start(new, plan.build)
            failed = [
                f"providers.{name}: {why}" for name, why in built.items() if isinstance(why, str)
            ]
            if failed:
                await asyncio.gather(
                    *(p.aclose() for p in built.values() if not isinstance(p, str))
                )
                return self._refuse(failed)
            started = {n: p for n, p in built.items() if not isinstance(p, str)}
            try:
                self._swap(new, plan, started)
            except Exception:  # building the SCEP runtime, first in `_swap`: nothing served yet
                await asyncio.gather(*(p.aclose() for p in started.values()))
                raise
            self._stamps = {n: stamps[n] if n in built else self._stamps[n] for n in self._tables}
            for warning in config_warnings(new):  # as at start: shadow mode, a rotation open...
                log.warning("config.warning", warning=warning)
            return True

    def _refuse(self, problems: list[str]) -> bool:
        log.error("config.reload_failed", config=str(self._path), problems=problems, kept="running")
        return False

    async def _start(self, new: Settings, names: tuple[str, ...]) -> dict[str, Provider | str]:
        """Build and start `names` concurrently: each started provider, or why it did not."""
        limit = self._started.server.provider_start_timeout

        async def start(name: str) -> Provider | str:
            try:
                provider = build_provider(name, new.providers[name], hooks=self._app[HOOKS])
            except Exception as exc:  # the checks passed it: its siblings must still be closed
                log.exception("config.provider_build_failed", provider=name)
                return f"cannot be built ({type(exc).__name__})"
            try:
                async with asyncio.timeout(limit):
                    await provider.start()
            except ProviderError as exc:
                why = exc.message
            except TimeoutError:
                why = f"start did not finish within {limit:g}s"
            except BaseException:  # cancelled (shutdown) or a provider bug: close, pass it on
                await provider.aclose()
                raise
            else:
                return provider
            await provider.aclose()
            return why

        results = await asyncio.gather(*(start(name) for name in names))
        return dict(zip(names, results, strict=True))

    def _swap(self, new: Settings, plan: ReloadPlan, built: Mapping[str, Provider]) -> None:
        running = self._app[PROVIDERS]
        # Built from the new config, like the chains: validators, challenge URLs, Intune clients
        # (a rotated secret or a changed validator table must not keep its start-time objects).
        scep = ScepRuntime(new, self._app[PERSISTENCE].store, self._app[HOOKS])
        providers = {**{name: running[name] for name in plan.keep}, **built}
        cache = AnswerCache(
            MemoryCache(new.cache.max_entries),
            found_ttl=new.cache.found_ttl,
            not_found_ttl=new.cache.not_found_ttl,
        )
        routes: dict[str, dict[str, WebhookRuntime]] = {path: {} for path in self._served}
        for hook in new.webhooks:
            if hook.path not in self._served:
                continue
            chain = ProviderChain(
                [providers[name] for name in hook.providers],
                cache,
                budget=scep.chain_budget(hook, self._started.server.decision_budget),
                on_failure=hook.on_provider_failure,
                hooks=self._app[HOOKS],
            )
            for webhook_id in hook.ids:
                routes[hook.path][webhook_id] = WebhookRuntime(hook, chain, scep)
        retired = [p for p in running.values() if p not in providers.values()]
        old_caches, self._caches = self._caches, [cache]
        current = self._app[SCEP]
        old_scep = current.runtime
        # One step, no await in between: a request sees the old tables or the new ones.
        running.clear()
        running.update(providers)
        self._app[ROUTES].clear()
        self._app[ROUTES].update(routes)
        current.runtime = scep
        # A kept provider runs with the table it started with (a synced one may differ).
        self._tables = {
            **{name: self._tables[name] for name in plan.keep},
            **{name: new.providers[name] for name in built},
        }
        self._app[SERVED].providers = dict(self._tables)
        metrics = self._app.get(METRICS)
        if metrics is not None:  # a provider added or rebuilt counts its cache misses too
            metrics.cacheable(n for n, p in providers.items() if p.cacheable)
        self._retire(retired, old_caches, old_scep)
        log.info(
            "config.reloaded",
            config=str(self._path),
            webhooks=[h.name for h in new.webhooks if h.path in self._served],
            providers_started=sorted(built),
            providers_closed=sorted(plan.drop),
            restart_required=list(plan.restart_required),
            **(
                {"message": "these changes take effect only after a restart"}
                if plan.restart_required
                else {}
            ),
        )

    def _retire(
        self, providers: list[Provider], caches: list[AnswerCache], scep: ScepRuntime
    ) -> None:
        """Close what the swap replaced once requests that still hold it have finished."""
        self._retired += providers
        self._old_caches += caches
        self._old_scep.append(scep)

        async def later() -> None:
            await asyncio.sleep(self._started.server.decision_budget + RETIRE_GRACE)
            await _close(providers, caches)
            self._retired = [p for p in self._retired if p not in providers]
            self._old_caches = [c for c in self._old_caches if c not in caches]
            # Reports to Intune that its calls started may run their notify_timeout.
            await _close_scep(scep, grace=scep.notify_grace)
            self._old_scep.remove(scep)

        self._track(asyncio.create_task(later(), name="config-retire"))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_hup(self) -> None:
        self._track(asyncio.create_task(self._reload_logged(), name="config-reload"))

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:  # a bug must not end the service; the old config keeps serving
            log.exception("config.reload_failed", config=str(self._path), kept="running")

    async def ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: SIGHUP reloads while the app runs."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        if self._early is not None and self._early.count:
            self._on_hup()  # asked for while the service started
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        # Not back to the default action (end the process): the rest of the shutdown (the
        # audit log's last writes, reports to Intune) still runs after this.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _close(self._retired, [*self._old_caches, *self._caches])
        for scep in self._old_scep:  # the one in use is closed by scep_ctx
            await _close_scep(scep)


async def _close(providers: list[Provider], caches: list[AnswerCache]) -> None:
    for provider in providers:
        with contextlib.suppress(Exception):
            await provider.aclose()
    for cache in caches:
        await cache.aclose()


async def _close_scep(scep: ScepRuntime, *, grace: float = 5.0) -> None:
    with contextlib.suppress(Exception):
        await scep.aclose(grace)


def reload_on_sighup(
    app: web.Application,
    settings: Settings,
    config_path: Path,
    *,
    certificates: CertificateReloader | None = None,
    early: EarlyHangups | None = None,
) -> None:
    """Make SIGHUP reload `config_path` into `app` (call before the app starts); with
    `early`, a SIGHUP that came while the service started reloads once it runs."""
    reloader = ConfigReloader(app, settings, config_path, certificates=certificates, early=early)
    app.cleanup_ctx.append(reloader.ctx)
