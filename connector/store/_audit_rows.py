"""How an `AuditEntry` is written to and read from the ``decisions`` table.

The failing rules and the detail mapping are stored as JSON text, so one schema serves both
databases; booleans come back as 0/1 from SQLite and are normalised here.
"""

from __future__ import annotations

import json
from typing import Any

from connector.store._model import AuditEntry, FailedRule

AUDIT_COLUMNS = (
    "at, webhook, webhook_kind, identifier, identifier_kind, allow, code, provider, source, "
    "request_id, latency_ms, mode, would_allow, failed_rules, username, email, detail"
)
"""The columns of ``decisions`` in the order `audit_row` writes them."""


def audit_row(entry: AuditEntry) -> tuple[object, ...]:
    """The row values of one entry, in `AUDIT_COLUMNS` order."""
    rules = [
        {"code": r.code, "message": r.message, "observed": r.observed} for r in entry.failed_rules
    ]
    return (
        entry.at,
        entry.webhook,
        entry.webhook_kind,
        entry.identifier,
        entry.identifier_kind,
        entry.allow,
        entry.code,
        entry.provider,
        entry.source,
        entry.request_id,
        entry.latency_ms,
        entry.mode,
        entry.would_allow,
        json.dumps(rules) if rules else None,
        entry.user,
        entry.email,
        json.dumps(entry.detail, sort_keys=True) if entry.detail else None,
    )


def audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    """The entry of a row read as ``id, AUDIT_COLUMNS...``."""
    row_id, at, webhook, webhook_kind, identifier, identifier_kind, allow, code = row[:8]
    provider, source, request_id, latency_ms, mode, would_allow, rules, user = row[8:16]
    email, detail = row[16:]
    failed = tuple(
        FailedRule(code=r["code"], message=r["message"], observed=r.get("observed"))
        for r in (json.loads(rules) if rules else ())
    )
    return AuditEntry(
        at=at,
        webhook=webhook,
        webhook_kind=webhook_kind,
        identifier=identifier,
        identifier_kind=identifier_kind,
        allow=bool(allow),
        code=code,
        provider=provider,
        source=source,
        request_id=request_id,
        latency_ms=latency_ms,
        mode=mode,
        would_allow=None if would_allow is None else bool(would_allow),
        failed_rules=failed,
        user=user,
        email=email,
        detail=json.loads(detail) if detail else None,
        id=int(row_id),
    )
