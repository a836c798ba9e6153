"""`check-config`: validate a config file, print a summary, the problems or the warnings."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path

from connector.checks import CheckResult, config_warnings, online_checks
from connector.cli._common import (
    CONFIG_HELP,
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    command,
    load_checked,
)
from connector.logs import configure_logging
from connector.settings import Settings

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def config_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """`--config FILE`, or the positional FILE older scripts pass (not both, unless equal)."""
    given: set[Path] = {p for p in (args.config, args.config_file) if p is not None}
    if len(given) != 1:
        parser.error("give the config file once: --config FILE (or FILE)")
    return given.pop()


def summary(path: Path, settings: Settings) -> list[str]:
    """What the config sets up, one line per listener, provider and webhook."""
    server = settings.server
    listen = "http" if server.plain_http else "https"
    lines = [
        f"{path}: OK",
        f"  listen: {listen}://{server.host}:{server.port}  mTLS: {server.client_ca is not None}",
    ]
    lines.extend(f"  provider {name}: {p.kind}" for name, p in settings.providers.items())
    for hook in settings.webhooks:
        auth = "bearer" if hook.bearer_token else "basic" if hook.basic_auth else "hmac only"
        lines.append(
            f"  webhook {hook.name}: {hook.kind} at {hook.path} id={hook.id} "
            f"providers={','.join(hook.providers)} auth={auth} "
            f"client-cert={'required' if hook.require_client_cert else 'optional'}"
        )
    return lines


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and print a summary."""
    path = config_path(args.parser, args)
    settings = load_checked(path)
    print("\n".join(summary(path, settings)))
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    if not args.online:
        return EXIT_OK
    # Providers log what goes wrong; here each result carries its message, so the log goes nowhere.
    configure_logging("error", "json", stream=io.StringIO())
    results = asyncio.run(online_checks(settings))
    print("\n".join(online_report(results)))
    return EXIT_FAILED if any(r.status == "fail" for r in results) else EXIT_OK


def online_report(results: list[CheckResult]) -> list[str]:
    """One line per online check, its verdict first."""
    return ["online checks:", *(f"  {MARKS[r.status]}  {r.subject}: {r.detail}" for r in results)]


def add_check_command(sub: Subparsers) -> None:
    """`check-config` and its flags."""
    check = command(
        sub,
        "check-config",
        summary="validate a config file",
        description="Validate a config file as `serve` would (schema, files it names, the TLS "
        "pair, policies) and print a summary. Problems go to stderr, each with the file and "
        "key path, and exit 2. Warnings (the config works, but e.g. two webhooks share a "
        "secret or an id is not a step-ca UUID) go to stderr as 'warning: ...' and still exit 0.",
        examples="  posture-connector check-config --config /etc/posture-connector/config.toml\n"
        "  posture-connector check-config /etc/posture-connector/config.toml   # older form\n"
        "  posture-connector check-config --config config.toml --online",
        exits="  0  the config is valid (warnings may have been printed); with --online, every "
        "online check passed or warned\n"
        "  2  the config has problems (listed on stderr); online checks do not run then\n"
        "  3  --online: at least one check failed (FAIL lines on stdout)",
    )
    check.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
    check.add_argument(
        "config_file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="the same as --config FILE (the positional form of earlier releases)",
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also start every provider (credentials, permissions, one harmless lookup; an "
        "inventory file loaded row by row), read the TLS certificate and judge each webhook's "
        "id and secret; needs the network the service has",
    )
    check.set_defaults(func=cmd_check_config, parser=check)
