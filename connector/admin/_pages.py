"""The overview page: readiness, inventories, the store, refusals, recent decisions (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connector.admin._html import Html, el, join
from connector.admin._layout import Chrome, badge, page, table, when
from connector.status import ProviderStatus, Snapshot, StoreStatus
from connector.store import AuditEntry


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """The recent-decisions filter, as the form sent it."""

    webhook: str = ""
    identifier: str = ""
    denied_only: bool = False


def _providerstable(providers: Sequence[ProviderStatus], now: float) -> Html:
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
                f" in {activity.lookup_seconds * 1000:.1f} ms ",
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
                el("td", when(activity.upstream_ok_at, now) if activity.upstream_ok_at else "—"),
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
    return table("Providers, in configured order", head, rows)


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


@dataclass(frozen=True, slots=True)
class Refusals:
    """The last hour's denials by reason.

    Attributes:
        rows: (webhook, reason code, denials, distinct devices), most denials first.
        capped: Only the newest of them were read (there were more).
        error: Why the audit log could not be read (then no rows).
    """

    rows: Sequence[tuple[str, str, int, int]]
    capped: bool
    error: str | None


def overview(
    chrome: Chrome,
    *,
    snapshot: Snapshot,
    webhooks: Sequence[str],
    refusals: Refusals,
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
            badge(snapshot.ready, "ready", snapshot.status.replace("-", " ")),
            " (what /readyz answers: every provider can answer lookups, no drain is under way "
            "and the event loop keeps time).",
        ),
        _store(snapshot.store),
        aria_labelledby="readiness",
    )
    providers = el(
        "section",
        el("h2", "Inventories", id="inventories"),
        _providerstable(snapshot.providers, now),
        aria_labelledby="inventories",
    )
    return page(
        chrome,
        "Overview",
        summary,
        providers,
        _refusals(refusals),
        _decisions(decisions, webhooks, chosen, now, audit_error),
    )


def _refusals(refusals: Refusals) -> Html:
    rows = [
        el(
            "tr",
            el("th", webhook, scope="row"),
            el("td", code),
            el("td", str(denials), class_="num"),
            el("td", str(devices), class_="num"),
        )
        for webhook, code, denials, devices in refusals.rows
    ]
    head = el(
        "tr",
        el("th", "Webhook", scope="col"),
        el("th", "Reason code", scope="col"),
        el("th", "Denials", scope="col"),
        el("th", "Devices", scope="col"),
    )
    caption = "Denials (shadow would-denials included) of every replica, last 60 minutes"
    if refusals.capped:
        caption += f" (the newest {sum(r[2] for r in refusals.rows)} only: there were more)"
    body = (
        el("p", f"The audit log cannot be read: {refusals.error}", class_="error")
        if refusals.error is not None
        else table(caption, head, rows, empty="No device was refused in the last hour.")
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
        else table("Newest first, from the audit log", head, rows, empty="No decision matches.")
    )
    return el(
        "section",
        el("h2", "Recent decisions", id="decisions"),
        _filter_form(webhooks, chosen),
        body,
        aria_labelledby="decisions",
    )
