"""What every command shares: exit codes, the help layout, the `--config` flag, loading a config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from connector.checks import preflight
from connector.settings import ConfigError, Settings, load_settings

EXIT_OK, EXIT_DENY, EXIT_CONFIG, EXIT_FAILED = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader (``| head``) went away."""

CONFIG_HELP = "the connector's config file (TOML); relative paths in it are relative to it"

Subparsers = Any  # argparse's `_SubParsersAction`, which typeshed marks private


def command(
    sub: Subparsers, name: str, *, summary: str, description: str, examples: str, exits: str
) -> argparse.ArgumentParser:
    """A subcommand whose help ends with its examples and exit codes, laid out as written."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples.rstrip()}\n\nexit codes:\n{exits.rstrip()}\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_config(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--config FILE``, spelled and explained the same way on every command."""
    parser.add_argument("--config", type=Path, required=required, metavar="FILE", help=CONFIG_HELP)


def load_checked(path: Path) -> Settings:
    """The config at `path`, refused (`ConfigError`) on any schema or preflight problem."""
    settings = load_settings(path)
    problems = preflight(settings)
    if problems:
        raise ConfigError(str(path), problems)
    return settings
