"""The `posture-connector` command: serve, check-config, lookup, healthcheck, send, lab.

Exit codes: 0 success (or allow), 1 deny, 2 usage or configuration error, 3 request failed.
`lab` lives in the optional `posture_lab` package (the ``[lab]`` extra), imported only when run.
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
import structlog

from connector import stepca
from connector.audit_cli import add_audit_arguments, cmd_audit
from connector.checks import config_warnings, preflight
from connector.decision import Decision, decide
from connector.logs import configure_logging
from connector.lookup import ProviderChain
from connector.models import AttestationData, WebhookRequest
from connector.settings import ConfigError, Settings, load_settings
from providers import ProviderError, build_provider

EXIT_OK, EXIT_DENY, EXIT_CONFIG, EXIT_FAILED = 0, 1, 2, 3
LAB_EXTRA = "the lab needs: pip install 'posture-connector[lab]'"

log = structlog.get_logger("connector.cli")


def _load(path: Path) -> Settings:
    settings = load_settings(path)
    problems = preflight(settings)
    if problems:
        raise ConfigError(str(path), problems)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service."""
    from connector.server import ListenError, serve  # noqa: PLC0415 - keeps the other commands light

    settings = _load(args.config)
    configure_logging(settings.logging.level, settings.logging.format)
    for warning in config_warnings(settings):
        log.warning("config.warning", warning=warning)
    try:
        serve(settings, args.config.resolve().parent)
    except ListenError as exc:
        # One line in the configured log format, like every other line the service writes.
        structlog.get_logger("connector").error(
            "server.listen_failed", host=exc.host, port=exc.port, error=str(exc)
        )
        return EXIT_CONFIG
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
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


async def _lookup(settings: Settings, webhook: str, identifier: str) -> Decision:
    hook = next((h for h in settings.webhooks if h.name == webhook), None)
    if hook is None:
        names = ", ".join(h.name for h in settings.webhooks)
        raise ConfigError(settings.source, [f"no webhook named {webhook!r} (have: {names})"])
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


def cmd_lab(args: argparse.Namespace) -> int:
    """Hand the arguments after `lab` to the lab, or say which extra installs it."""
    try:
        from posture_lab import main as lab_main  # noqa: PLC0415 - optional extra, loaded on use
    except ModuleNotFoundError as exc:
        print(f"lab: {LAB_EXTRA} (missing: {exc.name})", file=sys.stderr)
        return EXIT_CONFIG
    return lab_main(args.lab_args)


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

    check = sub.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file and print a summary. Problems are printed on stderr "
        "and exit 2; warnings (the config works, but e.g. two webhooks share a secret or an id "
        "is not a step-ca UUID) are printed on stderr as 'warning: ...' and still exit 0.",
    )
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

    # The lab parses its own options (`posture-connector lab --help`): see `main`.
    lab = sub.add_parser(
        "lab",
        help="run a local step-ca + connector and enrol simulated Apple devices ([lab] extra)",
        add_help=False,
    )
    lab.set_defaults(func=cmd_lab)

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
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "lab":
        args.lab_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"{exc}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
