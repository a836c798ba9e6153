"""The admin page's HTML, from plain data to markup (no I/O here).

Landmarks (banner, navigation, main), a skip link, captions and column headers on every table,
a label on every field; a verdict is a word as well as a colour. Everything is escaped by `el`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.admin._html import Html, document, el, join
from connector.decision import Decision
from connector.status import ProviderStatus, Snapshot, StoreStatus
from connector.store import AuditEntry

TITLE = "posture-connector admin"


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page's header shows.

    Attributes:
        version: The connector's version.
        replica: This replica's id (host, process).
        now: Unix time the page was made.
    """

    version: str
    replica: str
    now: float


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """The recent-decisions filter, as the form sent it."""

    webhook: str = ""
    identifier: str = ""
    denied_only: bool = False


def when(at: float | None, now: float) -> Html | str:
    """``2026-11-22 12:00:03 UTC`` with the age beside it, in a `<time>` element."""
    if at is None:
        return "never"
    moment = datetime.fromtimestamp(at, UTC)
    return el(
        "time",
        f"{moment:%Y-%m-%d %H:%M:%S} UTC ({age(now - at)})",
        datetime=moment.isoformat(),
    )


def age(seconds: float) -> str:
    """``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def badge(ok: bool | None, yes: str, no: str, unknown: str = "unknown") -> Html:
    """A status word with its colour (the word carries the meaning, not the colour)."""
    if ok is None:
        return el("span", unknown, class_="badge warn")
    return el("span", yes if ok else no, class_="badge ok" if ok else "badge bad")


def page(chrome: Chrome, title: str, *content: object) -> str:
    """A whole page around `content`."""
    header = el(
        "header",
        el("a", "Skip to content", href="#main", class_="skip"),
        el(
            "div",
            el("p", "posture-connector", class_="brand"),
            el("p", f"version {chrome.version} · replica {chrome.replica}", class_="muted"),
            class_="title",
        ),
        el(
            "nav",
            el(
                "ul",
                el("li", el("a", "Overview", href="/")),
                el("li", el("a", "Try a device", href="/try")),
                el(
                    "li",
                    el(
                        "form",
                        el("button", "Sign out", type="submit", class_="link"),
                        method="post",
                        action="/logout",
                    ),
                ),
            ),
            aria_label="Admin pages",
        ),
    )
    main = el("main", el("h1", title), *content, id="main", tabindex="-1")
    return document(f"{title} · {TITLE}", header, main)


def login_page(*, failed: bool) -> str:
    """The sign-in form (the token is posted, never put into a URL)."""
    error = (
        el("p", "That token is not right.", class_="error", role="alert", id="login-error")
        if failed
        else None
    )
    form = el(
        "form",
        el("label", "Admin token", for_="token"),
        el(
            "input",
            type="password",
            id="token",
            name="token",
            autocomplete="current-password",
            required=True,
            aria_describedby="login-error" if failed else None,
        ),
        el("button", "Sign in", type="submit"),
        method="post",
        action="/login",
        class_="login",
    )
    main = el(
        "main",
        el("h1", "Sign in"),
        el("p", "The token is [admin] token in the connector's configuration."),
        error,
        form,
        id="main",
    )
    return document(f"Sign in · {TITLE}", main)


def _providers_table(providers: Sequence[ProviderStatus], now: float) -> Html:
    rows = []
    for p in providers:
        activity = p.activity
        failure = (
            join(activity.failure, " ", el("br"), when(activity.failure_at, now))
            if activity.failure
            else "none"
        )
        upstream_error = (
            join(activity.upstream_error, " ", el("br"), when(activity.upstream_error_at, now))
            if activity.upstream_error
            else "none"
        )
        last_lookup = (
            join(
                activity.lookup_outcome or "",
                f" in {activity.lookup_seconds * 1000:.0f} ms ",
                el("br"),
                when(activity.lookup_at, now),
            )
            if activity.lookup_at is not None and activity.lookup_seconds is not None
            else "none yet"
        )
        sync = join(
            when(p.loaded_at, now) if p.loaded_at is not None else "not applicable",
            join(el("br"), f"generation {p.generation}") if p.generation is not None else None,
            join(el("br"), el("span", f"last sync failed: {p.sync_error}", class_="error"))
            if p.sync_error
            else None,
        )
        rows.append(
            el(
                "tr",
                el("th", p.name, scope="row"),
                el("td", p.kind),
                el("td", p.mode),
                el("td", badge(p.ready, "ready", "not ready")),
                el("td", "—" if p.devices is None else f"{p.devices:,}", class_="num"),
                el("td", sync),
                el("td", when(activity.upstream_ok_at, now)),
                el("td", upstream_error),
                el("td", last_lookup),
                el("td", failure),
            )
        )
    head = el(
        "tr",
        *(
            el("th", name, scope="col")
            for name in (
                "Provider",
                "Kind",
                "Mode",
                "State",
                "Devices",
                "Loaded or synced",
                "Last upstream success",
                "Last upstream failure",
                "Last lookup",
                "Last lookup failure",
            )
        ),
    )
    return _table("Providers, in configured order", head, rows)


def _table(caption: str, head: Html, rows: Sequence[Html], empty: str = "Nothing yet.") -> Html:
    body = rows or [el("tr", el("td", empty, colspan="20"))]
    return el(
        "div",
        el("table", el("caption", caption), el("thead", head), el("tbody", *body)),
        class_="scroll",
        tabindex="0",
        role="region",
        aria_label=caption,
    )


def _store(store: StoreStatus) -> Html:
    return el(
        "dl",
        el("dt", "Store"),
        el("dd", store.backend, " ", badge(store.ready, "ready", "not ready")),
        el("dt", "Why not ready") if store.error else None,
        el("dd", store.error, class_="error") if store.error else None,
        el("dt", "Audit entries written / lost since start"),
        el("dd", f"{store.audit_written:,} / {store.audit_dropped:,}"),
        class_="facts",
    )


def overview(
    chrome: Chrome,
    *,
    snapshot: Snapshot,
    webhooks: Sequence[str],
    refusals: Sequence[tuple[str, str, int]] | None,
    decisions: Sequence[AuditEntry] | None,
    chosen: DecisionFilter,
    audit_error: str | None,
) -> str:
    """The main page: readiness, providers, store, refusals in the last hour, recent decisions."""
    now = chrome.now
    summary = el(
        "section",
        el("h2", "Readiness", id="readiness"),
        el(
            "p",
            "This replica is ",
            badge(snapshot.ready, "ready", "not ready"),
            " (what /readyz answers: every provider can answer lookups).",
        ),
        _store(snapshot.store),
        aria_labelledby="readiness",
    )
    providers = el(
        "section",
        el("h2", "Inventories", id="inventories"),
        _providers_table(snapshot.providers, now),
        aria_labelledby="inventories",
    )
    return page(
        chrome,
        "Overview",
        summary,
        providers,
        _refusals(refusals, audit_error),
        _decisions(decisions, webhooks, chosen, now, audit_error),
    )


def _refusals(refusals: Sequence[tuple[str, str, int]] | None, audit_error: str | None) -> Html:
    rows = [
        el("tr", el("th", webhook, scope="row"), el("td", code), el("td", str(n), class_="num"))
        for webhook, code, n in refusals or ()
    ]
    head = el(
        "tr",
        el("th", "Webhook", scope="col"),
        el("th", "Reason code", scope="col"),
        el("th", "Devices refused", scope="col"),
    )
    body = (
        el("p", f"The audit log cannot be read: {audit_error}", class_="error")
        if refusals is None
        else _table(
            "Denials (shadow would-denials included) of every replica, last 60 minutes",
            head,
            rows,
            empty="No device was refused in the last hour.",
        )
    )
    return el(
        "section",
        el("h2", "Refused in the last hour", id="refused"),
        body,
        aria_labelledby="refused",
    )


def _rules(entry: AuditEntry) -> Html | str:
    if not entry.failed_rules:
        return "—"
    return el(
        "ul",
        *(
            el(
                "li",
                el("code", rule.code),
                ": ",
                rule.message,
                join(" (saw ", el("code", rule.observed), ")")
                if rule.observed is not None
                else None,
            )
            for rule in entry.failed_rules
        ),
        class_="rules",
    )


def _verdict(entry: AuditEntry) -> Html:
    if entry.mode == "shadow" and entry.would_allow is False:
        return el("span", "would deny (shadow)", class_="badge warn")
    return badge(entry.allow, "allowed", "denied")


def _filter_form(webhooks: Sequence[str], chosen: DecisionFilter) -> Html:
    options = [el("option", "all webhooks", value="", selected=not chosen.webhook)]
    options += [el("option", w, value=w, selected=w == chosen.webhook) for w in webhooks]
    return el(
        "form",
        el(
            "div",
            el("label", "Webhook", for_="f-webhook"),
            el("select", *options, id="f-webhook", name="webhook"),
        ),
        el(
            "div",
            el("label", "Identifier", for_="f-identifier"),
            el(
                "input",
                id="f-identifier",
                name="identifier",
                value=chosen.identifier,
                maxlength="256",
            ),
        ),
        el(
            "div",
            el(
                "input",
                type="checkbox",
                id="f-denied",
                name="denied",
                value="1",
                checked=chosen.denied_only,
            ),
            el("label", "Denials only", for_="f-denied"),
            class_="check",
        ),
        el("button", "Filter", type="submit"),
        method="get",
        action="/",
        class_="filters",
        aria_label="Filter recent decisions",
    )


def _decisions(
    decisions: Sequence[AuditEntry] | None,
    webhooks: Sequence[str],
    chosen: DecisionFilter,
    now: float,
    audit_error: str | None,
) -> Html:
    rows = [
        el(
            "tr",
            el("td", when(e.at, now)),
            el("td", e.webhook),
            el("td", el("code", e.identifier or "—")),
            el("td", _verdict(e)),
            el("td", e.code or "—"),
            el("td", _rules(e)),
            el("td", e.provider or "—", el("br") if e.source else None, e.source or ""),
            el("td", "—" if e.latency_ms is None else f"{e.latency_ms:.1f}", class_="num"),
            el("td", el("code", e.request_id) if e.request_id else "—"),
        )
        for e in decisions or ()
    ]
    head = el(
        "tr",
        *(
            el("th", name, scope="col")
            for name in (
                "When",
                "Webhook",
                "Identifier",
                "Verdict",
                "Reason",
                "Failed rules (what they saw)",
                "Provider / source",
                "ms",
                "step-ca request",
            )
        ),
    )
    body = (
        el("p", f"The audit log cannot be read: {audit_error}", class_="error")
        if decisions is None
        else _table("Newest first, from the audit log", head, rows, empty="No decision matches.")
    )
    return el(
        "section",
        el("h2", "Recent decisions", id="decisions"),
        _filter_form(webhooks, chosen),
        body,
        aria_labelledby="decisions",
    )


def try_page(
    chrome: Chrome,
    *,
    webhooks: Sequence[str],
    webhook: str,
    identifier: str,
    decision: Decision | None,
    problem: str | None,
) -> str:
    """The "try a device" form and, once asked, every rule's verdict for the device."""
    options = [el("option", w, value=w, selected=w == webhook) for w in webhooks]
    form = el(
        "form",
        el(
            "div",
            el("label", "Webhook", for_="t-webhook"),
            el("select", *options, id="t-webhook", name="webhook"),
        ),
        el(
            "div",
            el("label", "Serial number or UDID", for_="t-identifier"),
            el(
                "input",
                id="t-identifier",
                name="identifier",
                value=identifier,
                required=True,
                maxlength="256",
                autocomplete="off",
            ),
        ),
        el("button", "Decide", type="submit"),
        method="get",
        action="/try",
        class_="filters",
        aria_label="Try a device",
    )
    intro = el(
        "p",
        "Runs the webhook's provider chain and policy for one identifier, as "
        "posture-connector lookup does: nothing is sent to step-ca and nothing is audited.",
    )
    result = el("p", problem, class_="error", role="alert") if problem else None
    if decision is not None:
        result = _explanation(decision)
    return page(chrome, "Try a device", intro, form, result)


def _explanation(decision: Decision) -> Html:
    rules = [
        el(
            "tr",
            el("th", o.rule, scope="row"),
            el("td", badge(o.passed, "pass", "fail")),
            el("td", el("code", o.observed) if o.observed is not None else "—"),
            el("td", o.code or "—"),
            el("td", o.message),
        )
        for o in decision.outcomes
    ]
    head = el(
        "tr", *(el("th", n, scope="col") for n in ("Rule", "Result", "Observed", "Code", "Message"))
    )
    failures = decision.lookup.failures if decision.lookup else ()
    facts = el(
        "dl",
        el("dt", "Verdict"),
        el("dd", badge(decision.allow, "allow", "deny")),
        el("dt", "Reason") if decision.code else None,
        el("dd", el("code", decision.code), " ", decision.message or "") if decision.code else None,
        el("dt", "Identifier kind"),
        el("dd", decision.kind or "not recognised"),
        el("dt", "Found in"),
        el("dd", decision.record.provider if decision.record else "no provider"),
        *(
            join(el("dt", f"Provider {f.provider} failed"), el("dd", f.message, class_="error"))
            for f in failures
        ),
        class_="facts",
    )
    reply = json.dumps(decision.reply().to_json(), indent=2, default=str)
    return el(
        "section",
        el("h2", "Result", id="result"),
        facts,
        _table(
            "Every policy rule, in evaluation order", head, rules, empty="The policy did not run."
        ),
        el("h3", "What step-ca would receive"),
        el("pre", el("code", reply)),
        aria_labelledby="result",
    )
