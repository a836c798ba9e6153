"""The `posture-connector` command: serve, check-config, lookup, send.

Exit codes: 0 success (or allow), 1 deny, 2 usage or configuration error, 3 request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from connector import stepca
from connector.audit_cli import add_audit_arguments, cmd_audit
from connector.checks import preflight
from connector.decision import Decision, decide
from connector.lab import add_lab_arguments, run_lab
from connector.logs import configure_logging
from connector.lookup import LookupCache, ProviderChain
from connector.models import AttestationData, WebhookRequest
from connector.settings import ConfigError, Settings, load_settings
from providers import ProviderError, build_provider

EXIT_OK, EXIT_DENY, EXIT_CONFIG, EXIT_FAILED = 0, 1, 2, 3


def _load(path: Path) -> Settings:
    settings = load_settings(path)
    problems = preflight(settings)
    if problems:
        raise ConfigError(str(path), problems)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service."""
    from connector.server import serve  # noqa: PLC0415 - keeps the other commands light

    settings = _load(args.config)
    configure_logging(settings.logging.level, settings.logging.format)
    serve(settings, args.config.resolve().parent)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and print a summary."""
    settings = _load(args.config)
    server = settings.server
    listen = "http" if server.plain_http else "https"
    print(f"{args.config}: OK")
    print(f"  listen: {listen}://{server.host}:{server.port}  mTLS: {server.client_ca is not None}")
    for name, provider in settings.providers.items():
        print(f"  provider {name}: {provider.kind}")
    for hook in settings.webhooks:
        auth = "bearer" if hook.bearer_token else "basic" if hook.basic_auth else "hmac only"
        print(
            f"  webhook {hook.name}: {hook.kind} at {hook.path} id={hook.id} "
            f"providers={','.join(hook.providers)} auth={auth} "
            f"client-cert={'required' if hook.require_client_cert else 'optional'}"
        )
    return EXIT_OK


async def _lookup(settings: Settings, webhook: str, identifier: str) -> Decision:
    hook = next((h for h in settings.webhooks if h.name == webhook), None)
    if hook is None:
        names = ", ".join(h.name for h in settings.webhooks)
        raise ConfigError(settings.source, [f"no webhook named {webhook!r} (have: {names})"])
    providers = [build_provider(name, settings.providers[name]) for name in hook.providers]
    try:
        for provider in providers:
            try:
                await provider.start()
            except ProviderError as exc:
                print(f"provider {provider.name} not ready: {exc.message}", file=sys.stderr)
        chain = ProviderChain(providers, LookupCache(found_ttl=0, not_found_ttl=0, max_entries=1))
        now = datetime.now(UTC)
        request = WebhookRequest(
            timestamp=now, attestationData=AttestationData(permanentIdentifier=identifier)
        )
        return await decide(hook, request, chain, now=now)
    finally:
        for provider in providers:
            await provider.aclose()


def _explain(decision: Decision) -> dict[str, Any]:
    record = decision.record
    out: dict[str, Any] = {
        "identifier": decision.identifier,
        "identifier_kind": decision.kind,
        "allow": decision.allow,
        "reply": decision.reply().to_json(),
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


def cmd_lookup(args: argparse.Namespace) -> int:
    """Decide for one identifier without a server, and explain every rule."""
    settings = _load(args.config)
    configure_logging("warning", "json")
    decision = asyncio.run(_lookup(settings, args.webhook, args.identifier))
    print(json.dumps(_explain(decision), indent=2, default=str))
    return EXIT_OK if decision.allow else EXIT_DENY


def _secret(args: argparse.Namespace) -> str:
    if args.secret_file is not None:
        return Path(args.secret_file).read_text(encoding="utf-8").strip()
    if args.secret is not None:
        return str(args.secret)
    value = os.environ.get("POSTURE_WEBHOOK_SECRET")
    if value is None:
        raise ValueError("give --secret, --secret-file or POSTURE_WEBHOOK_SECRET")
    return value


def cmd_send(args: argparse.Namespace) -> int:
    """Act as step-ca: build, sign and POST one webhook request, print the answer."""
    # Usage problems exit 2, never 1: a script must not read a typo as "deny".
    try:
        secret = _secret(args)
        if args.kind == "ENRICHING":
            body = stepca.enriching_body(args.identifier)
        else:
            body = stepca.authorizing_body(args.identifier)
        basic = None
        if args.basic_auth:
            user, colon, password = args.basic_auth.partition(":")
            if not colon:
                raise ValueError("--basic-auth takes USER:PASSWORD")
            basic = (user, password)
        headers = stepca.headers_for(
            body,
            webhook_id=args.id,
            secret_b64=secret,
            bearer_token=args.bearer_token,
            basic_auth=basic,
        )
        # An SSLContext, not `verify=<path>` / `cert=`: httpx deprecates those.
        verify = ssl.create_default_context(cafile=args.cacert)
        if args.cert:
            verify.load_cert_chain(args.cert, args.key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(f"send: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with httpx.Client(verify=verify, timeout=10.0) as client:
            response = client.post(args.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        print(f"send: request failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    print(json.dumps({"status": response.status_code, "answer": answer}, indent=2))
    if response.status_code != 200:
        return EXIT_FAILED
    return EXIT_OK if isinstance(answer, dict) and answer.get("allow") is True else EXIT_DENY


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Probe the local service's /healthz (or /readyz) for container health checks."""
    settings = load_settings(args.config)
    server = settings.server
    scheme = "http" if server.plain_http else "https"
    host = "127.0.0.1" if server.host in {"0.0.0.0", "::", ""} else server.host  # noqa: S104
    url = f"{scheme}://{host}:{server.port}/{'readyz' if args.ready else 'healthz'}"
    try:
        # Loopback liveness of our own listener: the certificate is not what is being checked.
        response = httpx.get(url, verify=False, timeout=3.0)  # noqa: S501
    except httpx.HTTPError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"healthcheck: {url}: {response.status_code}")
    return EXIT_OK if response.status_code == 200 else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="posture-connector",
        description="step-ca webhook: certificates only for devices your inventory manages",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook service")
    serve.add_argument("--config", type=Path, required=True)
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)

    lookup = sub.add_parser("lookup", help="decide for one identifier and explain, no server")
    lookup.add_argument("--config", type=Path, required=True)
    lookup.add_argument("--webhook", required=True, help="the webhook's name")
    lookup.add_argument("identifier", help="serial number or UDID")
    lookup.set_defaults(func=cmd_lookup)

    health = sub.add_parser("healthcheck", help="probe the running service (for containers)")
    health.add_argument("--config", type=Path, required=True)
    health.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    health.set_defaults(func=cmd_healthcheck)

    lab = sub.add_parser(
        "lab", help="run a local step-ca + connector and enrol simulated Apple devices"
    )
    add_lab_arguments(lab)
    lab.set_defaults(func=run_lab)

    audit = sub.add_parser("audit", help="query the decision audit log")
    add_audit_arguments(audit)
    audit.set_defaults(func=cmd_audit)

    send = sub.add_parser("send", help="act as step-ca: send one signed webhook request")
    send.add_argument("--url", required=True)
    send.add_argument("--id", required=True, help="webhook id (X-Smallstep-Webhook-ID)")
    send.add_argument("--secret", help="base64 webhook secret (or POSTURE_WEBHOOK_SECRET)")
    send.add_argument("--secret-file", help="file holding the webhook secret")
    send.add_argument("--identifier", required=True, help="attested serial or UDID")
    send.add_argument("--kind", choices=["AUTHORIZING", "ENRICHING"], default="ENRICHING")
    send.add_argument("--cacert", help="CA bundle that signed the connector's certificate")
    send.add_argument("--cert", help="client certificate (for mTLS)")
    send.add_argument("--key", help="client key (for mTLS)")
    send.add_argument("--bearer-token")
    send.add_argument("--basic-auth", help="USER:PASSWORD")
    send.set_defaults(func=cmd_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"{exc}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
