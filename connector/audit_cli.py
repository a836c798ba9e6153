"""`posture-connector audit`: who got a certificate, who was refused, and why.

Reads the decision audit log from the configured store (the same ``[store]`` the service
writes), newest first, as a text table for people or JSON lines for tools.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from connector.logs import configure_logging
from connector.policy import parse_duration
from connector.settings import load_settings
from connector.store import AuditEntry, AuditQuery, StoreError, StoreSettings, connect_store
from providers.unicode import terminal_safe

EXAMPLES = """\
examples:
  posture-connector audit --config posture.toml --identifier C02XK1ZZJGH5
  posture-connector audit --config posture.toml --since 24h --denied
  posture-connector audit --config posture.toml --code device-unmanaged --json

exit codes:
  0    listed (possibly nothing)
  2    configuration error
  3    the store cannot be read
  141  stdout was closed early (e.g. piped into head)
"""


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    """The `audit` subcommand's flags."""
    parser.description = "Query the decision audit log (newest first)."
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the connector's config file (TOML); relative paths in it are relative to it",
    )
    parser.add_argument("--identifier", help="serial or UDID (case-insensitive)")
    parser.add_argument(
        "--since", type=_moment, help='a span back from now ("24h", "7d") or an ISO 8601 time'
    )
    parser.add_argument("--until", type=_moment, help="same forms as --since; exclusive")
    parser.add_argument(
        "--denied", action="store_true", help="only denials (and shadow-mode would-be denials)"
    )
    parser.add_argument("--code", help="only this reason code, e.g. device-unmanaged")
    parser.add_argument("--webhook", help="only this webhook (its name)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def _moment(text: str) -> float:
    """A span back from now or an ISO 8601 time, as Unix seconds."""
    try:
        return time.time() - parse_duration(text).total_seconds()
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a span like 24h nor an ISO 8601 time"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the matching audit entries."""
    settings = load_settings(args.config)
    configure_logging("warning", settings.logging.format)  # stdout is for the entries
    query = AuditQuery(
        identifier=args.identifier,
        since=args.since,
        until=args.until,
        denied_only=args.denied,
        code=args.code,
        webhook=args.webhook,
        limit=max(1, args.limit),
    )
    try:
        entries = asyncio.run(_query(settings.store, query))
    except StoreError as exc:
        print(f"audit: {settings.store.redacted}: {exc}", file=sys.stderr)
        return 3
    for line in (to_json(e) for e in entries) if args.json else table(entries):
        print(line)
    return 0


async def _query(settings: StoreSettings, query: AuditQuery) -> list[AuditEntry]:
    """Read the store the service keeps, as it is: nothing is created or migrated."""
    if settings.backend == "sqlite" and not settings.path.is_file():
        raise StoreError(f"no store at {settings.path} (the service creates it at its first start)")
    store = connect_store(settings)
    try:
        await store.attach()
        return await store.query_decisions(query)
    finally:
        await store.aclose()


def to_json(entry: AuditEntry) -> str:
    """One entry as a JSON object (the time also as ISO 8601)."""
    fields = dataclasses.asdict(entry)
    fields["time"] = _iso(entry.at)
    return json.dumps({k: v for k, v in fields.items() if v not in (None, [], ())})


def table(entries: list[AuditEntry]) -> list[str]:
    """Entries as an aligned text table; each denial's rules follow on indented lines."""
    if not entries:
        return ["no matching decisions"]
    lines = [f"{'time (UTC)':<20} {'webhook':<12} {'identifier':<26} {'verdict':<13} code"]
    for e in entries:
        verdict = "allow" if e.allow else "DENY"
        if e.mode == "shadow" and e.would_allow is False:
            verdict = "allow(shadow)"
        # Identifiers, request ids and observed values come from whoever sent the call: each is
        # written with its control characters escaped, before the columns are aligned.
        identifier = terminal_safe(e.identifier or "-")[:26]
        lines.append(
            f"{_iso(e.at)[:19]:<20} {e.webhook[:12]:<12} {identifier:<26} {verdict:<13} "
            f"{e.code or '-'}"
            + (f"  provider={e.provider}" if e.provider else "")
            + (f"  request={terminal_safe(e.request_id)}" if e.request_id else "")
        )
        lines.extend(
            terminal_safe(f"    {r.code}: {r.message}")
            + (f" (saw {terminal_safe(r.observed)})" if r.observed else "")
            for r in e.failed_rules
        )
    return lines


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
