"""The "try a device" page: the form and every rule's verdict for one identifier (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from connector.admin._html import Html, el, join
from connector.admin._layout import Chrome, badge, page, table
from connector.decision import Decision
from connector.models import WebhookReply


def try_page(
    chrome: Chrome,
    *,
    webhooks: Sequence[str],
    webhook: str,
    identifier: str,
    decision: Decision | None,
    problem: str | None,
    reply: WebhookReply | None = None,
    shadow: bool = False,
) -> str:
    """The "try a device" form and, once asked, every rule's verdict for the device and the
    `reply` step-ca would receive (a `shadow` webhook's allows whatever the verdict)."""
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
        result = _explanation(decision, reply or decision.reply(), shadow=shadow)
    return page(chrome, "Try a device", intro, form, result)


def _explanation(decision: Decision, reply: WebhookReply, *, shadow: bool) -> Html:
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
        el(
            "dd",
            badge(decision.allow, "allow", "deny"),
            " (shadow mode: step-ca gets an allow)" if shadow and not decision.allow else None,
        ),
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
    answer = json.dumps(reply.to_json(), indent=2, default=str)
    return el(
        "section",
        el("h2", "Result", id="result"),
        facts,
        table(
            "Every policy rule, in evaluation order", head, rules, empty="The policy did not run."
        ),
        el("h3", "What step-ca would receive"),
        el("pre", el("code", answer)),
        aria_labelledby="result",
    )
