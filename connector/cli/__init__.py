"""The `posture-connector` command line (started by `connector.entry`, also `python -m connector`).

One module per command; this one builds the parser, runs the command and turns a config error
into exit code 2 and a closed pipe (`... | head -1`) into a quiet exit 141. The `lab` command
lives in the optional `posture_lab` package (the ``[lab]`` extra), imported only when run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from connector.audit_cli import add_audit_arguments, cmd_audit
from connector.cli._check import add_check_command
from connector.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_CONFIG,
    EXIT_DENY,
    EXIT_FAILED,
    EXIT_OK,
)
from connector.cli._init import add_init_command
from connector.cli._lookup import add_lookup_command
from connector.cli._send import add_send_command
from connector.cli._service import add_service_commands
from connector.settings import ConfigError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CONFIG",
    "EXIT_DENY",
    "EXIT_FAILED",
    "EXIT_OK",
    "build_parser",
    "main",
]

EPILOG = """\
examples:
  posture-connector init --config config.toml --url https://connector.example.com:8443
  posture-connector check-config --config config.toml
  posture-connector serve --config config.toml
  posture-connector lookup --config config.toml --webhook people C02FK3Q7MD6T
  posture-connector audit --config config.toml --since 24h --denied

exit codes (each command's --help has its own):
  0    success (lookup, send: allow)
  1    deny (lookup, send)
  2    usage or configuration error
  3    a request or an online check failed
  141  stdout was closed early (e.g. piped into head)
"""


def _version() -> str:
    try:
        return version("posture-connector")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="posture-connector",
        description="step-ca webhook: certificates only for devices your inventory manages",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_init_command(sub)
    add_service_commands(sub)
    add_check_command(sub)
    add_lookup_command(sub)
    audit = sub.add_parser("audit", help="query the decision audit log")
    add_audit_arguments(audit)
    audit.set_defaults(func=cmd_audit)
    add_send_command(sub)
    return parser


def _run(argv: Sequence[str] | None) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
    except BrokenPipeError:
        # Python's advice (signal module docs, "Note on SIGPIPE"): send what is left to devnull
        # so that the flush at exit cannot fail again, and exit without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code
