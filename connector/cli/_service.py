"""`serve` (run the service), `healthcheck` (probe it) and `lab` (hand over to the lab extra)."""

from __future__ import annotations

import argparse
import sys

import httpx
import structlog

from connector.checks import config_warnings
from connector.cli._common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    add_config,
    command,
    load_checked,
)
from connector.logs import configure_logging
from connector.settings import load_settings

LAB_EXTRA = "the lab needs: pip install 'posture-connector[lab]'"

log = structlog.get_logger("connector.cli")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service."""
    from connector.entry import EarlyHangups  # noqa: PLC0415 - keeps the other commands light
    from connector.server import ListenError, serve  # noqa: PLC0415

    early = EarlyHangups.take()  # noted since `connector.entry` started, or from now on
    settings = load_checked(args.config)
    configure_logging(settings.logging.level, settings.logging.format)
    for warning in config_warnings(settings):
        log.warning("config.warning", warning=warning)
    try:
        config = args.config.absolute()  # not resolved: SIGHUP reads what a symlink names then
        serve(settings, config.parent, config_path=config, early=early)
    except ListenError as exc:
        # One line in the configured log format, like every other line the service writes.
        structlog.get_logger("connector").error(
            "server.listen_failed", host=exc.host, port=exc.port, error=str(exc)
        )
        return EXIT_CONFIG
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Probe the local service's /healthz (or /readyz) for container health checks."""
    settings = load_settings(args.config)
    server = settings.server
    scheme = "http" if server.plain_http else "https"
    # A wildcard is probed on loopback: "::" listens on IPv6 only (the listener sets V6ONLY).
    loopback = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
    host = loopback.get(server.host, server.host)
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 address, in brackets
    url = f"{scheme}://{netloc}:{server.port}/{'readyz' if args.ready else 'healthz'}"
    try:
        # Loopback liveness of our own listener: the certificate is not what is being checked.
        response = httpx.get(url, verify=False, timeout=3.0)  # noqa: S501
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
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


def add_service_commands(sub: Subparsers) -> None:
    """`serve`, `healthcheck` and `lab`."""
    serve = command(
        sub,
        "serve",
        summary="run the webhook service",
        description="Run the webhook service until SIGTERM or SIGINT (graceful: requests under "
        "way are answered, providers close). SIGHUP re-reads the config, the TLS files and the "
        "policies: a valid config is swapped in (config.reloaded), a broken one is refused "
        "(config.reload_failed) and the running one keeps serving.",
        examples="  posture-connector serve --config /etc/posture-connector/config.toml\n"
        "  kill -HUP $(pidof posture-connector)     # reload the config",
        exits="  0  stopped by SIGTERM/SIGINT\n"
        "  2  the config has problems, or the port cannot be bound (server.listen_failed)",
    )
    add_config(serve)
    serve.set_defaults(func=cmd_serve)

    health = command(
        sub,
        "healthcheck",
        summary="probe the running service (for containers)",
        description="GET /healthz (or /readyz) of the service the config describes, on the "
        "loopback address when it listens on every address. The certificate is not verified: "
        "this checks that the process answers, not who it is.",
        examples="  posture-connector healthcheck --config config.toml\n"
        "  posture-connector healthcheck --config config.toml --ready",
        exits="  0  the service answered 200\n"
        "  2  the config cannot be read\n"
        "  3  no answer, or not 200 (not ready: a provider or the store is not ready)",
    )
    add_config(health)
    health.add_argument(
        "--ready",
        action="store_true",
        help="probe /readyz (every provider ready) instead of /healthz (the process answers)",
    )
    health.set_defaults(func=cmd_healthcheck)

    # The lab parses its own options (`posture-connector lab --help`): see `main`.
    lab = sub.add_parser(
        "lab",
        help="run a local step-ca + connector and enrol simulated Apple devices ([lab] extra)",
        add_help=False,
    )
    lab.set_defaults(func=cmd_lab)
