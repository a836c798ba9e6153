"""`lookup`: decide for one identifier without a server, and explain every rule.

Text for people (the example in docs/policy.md), ``--json`` for tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from connector.cli._common import (
    EXIT_DENY,
    EXIT_OK,
    Subparsers,
    add_config,
    command,
    load_checked,
)
from connector.decision import Decision, decide, shadow_reply
from connector.logs import configure_logging
from connector.lookup import ProviderChain
from connector.models import AttestationData, WebhookReply, WebhookRequest
from connector.settings import ConfigError, Settings, WebhookSettings
from providers import ProviderError, build_provider


def find_webhook(settings: Settings, name: str) -> WebhookSettings:
    """The webhook called `name`, or a `ConfigError` listing the configured ones."""
    hook = next((h for h in settings.webhooks if h.name == name), None)
    if hook is None:
        names = ", ".join(h.name for h in settings.webhooks)
        raise ConfigError(settings.source, [f"no webhook named {name!r} (have: {names})"])
    return hook


async def _lookup(settings: Settings, hook: WebhookSettings, identifier: str) -> Decision:
    providers = [build_provider(name, settings.providers[name]) for name in hook.providers]
    try:
        timeout = settings.server.provider_start_timeout
        for provider in providers:
            try:
                async with asyncio.timeout(timeout):
                    await provider.start()
            except ProviderError as exc:
                print(f"provider {provider.name} not ready: {exc.message}", file=sys.stderr)
            except TimeoutError:
                print(
                    f"provider {provider.name} not ready: start did not finish within {timeout:g}s",
                    file=sys.stderr,
                )
        chain = ProviderChain(
            providers,
            budget=settings.server.decision_budget,
            on_failure=hook.on_provider_failure,
        )
        now = datetime.now(UTC)
        request = WebhookRequest(
            timestamp=now, attestationData=AttestationData(permanentIdentifier=identifier)
        )
        return await decide(hook, request, chain, now=now)
    finally:
        for provider in providers:
            await provider.aclose()


def step_ca_reply(decision: Decision, hook: WebhookSettings) -> WebhookReply:
    """What step-ca receives for `decision`: a shadow webhook allows whatever the verdict."""
    return shadow_reply(hook, decision) if hook.mode == "shadow" else decision.reply()


def explain_json(decision: Decision, hook: WebhookSettings) -> dict[str, Any]:
    """The decision as the JSON object `lookup --json` prints (``allow``: the policy's verdict,
    ``reply``: what step-ca receives)."""
    record = decision.record
    out: dict[str, Any] = {
        "identifier": decision.identifier,
        "identifier_kind": decision.kind,
        "allow": decision.allow,
        "reply": step_ca_reply(decision, hook).to_json(),
        "provider": record.provider if record else None,
        "rules": [
            {
                "rule": o.rule,
                "result": "pass" if o.passed else "fail",
                "observed": o.observed,
                "code": o.code,
                "message": o.message,
            }
            for o in decision.outcomes
        ],
    }
    if decision.lookup and decision.lookup.failures:
        out["failed_providers"] = {f.provider: f.message for f in decision.lookup.failures}
    return out


def explain_text(decision: Decision, hook: WebhookSettings) -> list[str]:
    """The decision as lines for a person: the verdict, who answered, each rule in order."""
    reply = step_ca_reply(decision, hook)
    kind = decision.kind or "not a valid identifier"
    verdict = "allow" if decision.allow else f"deny {decision.code}"
    lines = [f"{decision.identifier} ({kind}), webhook {hook.name} ({hook.kind}): {verdict}"]
    if reply.error is not None:
        lines.append(f"  step-ca gets: {reply.error.code}: {reply.error.message}")
    elif not decision.allow:
        lines.append("  step-ca gets: an allow (shadow mode)")
    if decision.record is not None:
        lines.append(f"  found by: {decision.record.provider}")
    elif decision.lookup is not None:
        lines.append(f"  asked: {', '.join(hook.providers)}")
    for failure in decision.lookup.failures if decision.lookup else ():
        lines.append(f"  provider {failure.provider} failed: {failure.message}")
    if decision.outcomes:
        lines.append("  rules, in evaluation order:")
        observed = [
            "(not reported)" if o.observed is None else o.observed for o in decision.outcomes
        ]
        rule_width = max(len(o.rule) for o in decision.outcomes)
        seen_width = max(len(s) for s in observed)
        for outcome, seen in zip(decision.outcomes, observed, strict=True):
            why = f"{outcome.code}: {outcome.message}" if outcome.code else outcome.message
            lines.append(
                f"    {'pass' if outcome.passed else 'FAIL'}  {outcome.rule:<{rule_width}}  "
                f"saw {seen:<{seen_width}}  {why}"
            )
    if reply.data is not None:
        lines.append(f"  data for the certificate template (.Webhooks.{hook.name}):")
        lines.extend(f"    {line}" for line in json.dumps(reply.data, indent=2).splitlines())
    return lines


def cmd_lookup(args: argparse.Namespace) -> int:
    """Decide for one identifier without a server, and explain every rule."""
    settings = load_checked(args.config)
    hook = find_webhook(settings, args.webhook)
    configure_logging("warning", "json")
    decision = asyncio.run(_lookup(settings, hook, args.identifier))
    if args.json:
        print(json.dumps(explain_json(decision, hook), indent=2, default=str))
    else:
        print("\n".join(explain_text(decision, hook)))
    return EXIT_OK if decision.allow else EXIT_DENY


def add_lookup_command(sub: Subparsers) -> None:
    """`lookup` and its flags."""
    lookup = command(
        sub,
        "lookup",
        summary="decide for one identifier and explain every rule, no server",
        description="Ask the webhook's providers about one identifier, apply its policy and "
        "explain the decision: who answered, each rule with the value it saw, and what step-ca "
        "would get (the error, or the enrichment data). Nothing is cached; live inventories "
        "are really asked.",
        examples="  posture-connector lookup --config config.toml --webhook people C02FK3Q7MD6T\n"
        "  posture-connector lookup --config config.toml --webhook gate "
        "00008110-000A1C2E3F40801E --json",
        exits="  0  allow\n  1  deny\n  2  the config has problems, or no such webhook",
    )
    add_config(lookup)
    lookup.add_argument("--webhook", required=True, help="the webhook's name in the config")
    lookup.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (identifier, allow, reply, provider, rules) for tools",
    )
    lookup.add_argument("identifier", help="an attested serial number or UDID")
    lookup.set_defaults(func=cmd_lookup)
