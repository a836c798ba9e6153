"""The admin page's handlers: sign in and out, the overview, "try a device", the stylesheet.

Every handler reads the main app's state (`MAIN`); none changes it. Reading the audit log is
bounded in time and a store that cannot answer is shown as such, never as an empty log.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from collections import Counter

import structlog
from aiohttp import web

from connector.admin import _pages as pages
from connector.admin._auth import COOKIE, Lock, peer, same_origin
from connector.admin._layout import Chrome, login_page
from connector.admin._try import try_page
from connector.decision import decide, shadow_reply
from connector.keys import CLOCK, PROVIDERS, ROUTES, SERVED, SETTINGS, WebhookRuntime
from connector.models import AttestationData, WebhookRequest
from connector.persistence import PERSISTENCE
from connector.readiness import READINESS
from connector.status import ACTIVITY, connector_version, snapshot
from connector.store import AuditEntry, AuditQuery, StoreError

log = structlog.get_logger("connector.admin")

MAIN = web.AppKey("main", web.Application)
LOCK = web.AppKey("lock", Lock)
AUDIT_TIMEOUT = 3.0
"""Seconds the page waits for the audit log."""
REFUSALS_SCANNED = 5000
"""At most this many of the last hour's denials are grouped by reason."""
MAX_IDENTIFIER = 256

HTML = "text/html"


def _chrome(main: web.Application) -> Chrome:
    return Chrome(connector_version(), main[PERSISTENCE].replica, time.time())


def _webhooks(main: web.Application) -> dict[str, WebhookRuntime]:
    """The webhooks served now (a reload may have renamed, added or retuned them)."""
    return {r.settings.name: r for hooks in main[ROUTES].values() for r in hooks.values()}


async def login_form(_request: web.Request) -> web.Response:
    """``GET /login``."""
    return web.Response(text=login_page(failed=False), content_type=HTML)


async def login(request: web.Request) -> web.Response:
    """``POST /login``: a right token sets the session cookie; a wrong one is logged (not it)."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-site form post refused")
    try:
        given = (await request.post()).get("token")
    except (ValueError, LookupError):  # bytes not in its charset, or a charset Python lacks
        given = None  # a form that cannot be read holds no token: a failed sign-in
    lock = request.app[LOCK]
    if not isinstance(given, str) or not lock.token_matches(given):
        log.warning("admin.login_failed", peer=peer(request))
        return web.Response(text=login_page(failed=True), content_type=HTML, status=401)
    log.info("admin.login", peer=peer(request))
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE, lock.issue(), max_age=lock.max_age, httponly=True, samesite="Strict", path="/"
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: forget the session cookie."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-site form post refused")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def _audit(
    main: web.Application, query: AuditQuery
) -> tuple[list[AuditEntry] | None, str | None]:
    persistence = main[PERSISTENCE]
    if not persistence.store.ready:
        return None, persistence.error or "the store is not connected yet"
    try:
        async with asyncio.timeout(AUDIT_TIMEOUT):
            return await persistence.store.query_decisions(query), None
    except StoreError as exc:
        return None, str(exc)
    except TimeoutError:
        return None, f"no answer within {AUDIT_TIMEOUT:g} s"


async def overview(request: web.Request) -> web.Response:
    """``GET /``: readiness, inventories, store, the last hour's refusals, recent decisions."""
    main = request.app[MAIN]
    settings = main[SETTINGS]
    chosen = pages.DecisionFilter(
        webhook=request.query.get("webhook", "")[:64],
        identifier=request.query.get("identifier", "").strip()[:MAX_IDENTIFIER],
        denied_only=request.query.get("denied") == "1",
    )
    providers = main[PROVIDERS]
    state = await snapshot(
        main[SERVED].providers, providers, main[PERSISTENCE], main[ACTIVITY], main[READINESS]
    )
    hour, hour_error = await _audit(
        main,
        AuditQuery(since=time.time() - 3600, denied_only=True, limit=REFUSALS_SCANNED),
    )
    recent, error = await _audit(
        main,
        AuditQuery(
            identifier=chosen.identifier or None,
            webhook=chosen.webhook or None,
            denied_only=chosen.denied_only,
            limit=settings.admin.recent_decisions,
        ),
    )
    refusals = None
    if hour is not None:
        refusals = pages.Refusals(
            rows=_refused(hour), capped=len(hour) >= REFUSALS_SCANNED, error=None
        )
    else:
        refusals = pages.Refusals(rows=(), capped=False, error=hour_error)
    text = pages.overview(
        _chrome(main),
        snapshot=state,
        webhooks=list(_webhooks(main)),
        refusals=refusals,
        decisions=recent,
        chosen=chosen,
        audit_error=error,
    )
    return web.Response(text=text, content_type=HTML)


def _refused(denials: list[AuditEntry]) -> tuple[tuple[str, str, int, int], ...]:
    """(webhook, code, denials, devices) per reason, most denials first: a device retried
    counts once among the devices (identifiers compared without case)."""
    counts: Counter[tuple[str, str]] = Counter()
    devices: dict[tuple[str, str], set[str]] = {}
    for entry in denials:
        reason = (entry.webhook, entry.code or "denied")
        counts[reason] += 1
        devices.setdefault(reason, set()).add((entry.identifier or "").upper())
    return tuple((w, c, n, len(devices[(w, c)])) for (w, c), n in counts.most_common())


async def try_device(request: web.Request) -> web.Response:
    """``GET /try``: the form; with an identifier, the webhook's decision explained."""
    main = request.app[MAIN]
    webhooks = _webhooks(main)
    names = list(webhooks)
    name = request.query.get("webhook", names[0] if names else "")
    identifier = request.query.get("identifier", "").strip()
    decision, problem, reply, shadow = None, None, None, False
    if identifier:
        runtime = webhooks.get(name)
        if runtime is None:
            problem = "There is no webhook with that name."
        elif len(identifier) > MAX_IDENTIFIER:
            problem = f"An identifier is at most {MAX_IDENTIFIER} characters."
        else:
            now = main[CLOCK]()
            payload = WebhookRequest(
                timestamp=now, attestationData=AttestationData(permanentIdentifier=identifier)
            )
            hook = runtime.settings
            decision = await decide(hook, payload, runtime.chain, now=now)
            shadow = hook.mode == "shadow"
            reply = shadow_reply(hook, decision) if shadow else decision.reply()
    text = try_page(
        _chrome(main),
        webhooks=names,
        webhook=name,
        identifier=identifier[:MAX_IDENTIFIER],
        decision=decision,
        problem=problem,
        reply=reply,
        shadow=shadow,
    )
    return web.Response(text=text, content_type=HTML)


async def stylesheet(_request: web.Request) -> web.Response:
    """``GET /admin.css``."""
    css = importlib.resources.files("connector.admin").joinpath("admin.css").read_text("utf-8")
    return web.Response(
        text=css, content_type="text/css", headers={"Cache-Control": "max-age=3600"}
    )
