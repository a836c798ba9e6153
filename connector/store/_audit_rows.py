"""How an `AuditEntry` is written to and read from the ``decisions`` table.

The failing rules and the detail mapping are stored as JSON text, so one schema serves both
databases; booleans come back as 0/1 from SQLite and are normalised here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from connector.store._model import AuditEntry, FailedRule
from providers.unicode import valid_text

AUDIT_COLUMNS = (
    "at, webhook, webhook_kind, identifier, identifier_kind, allow, code, provider, source, "
    "request_id, latency_ms, mode, would_allow, failed_rules, username, email, detail"
)
"""The columns of ``decisions`` in the order `audit_row` writes them."""

INSERT_ROWS = f"INSERT INTO decisions ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 17)})"  # noqa: S608
"""One row per execution (PostgreSQL: asyncpg pipelines a batch of them)."""

INSERT_JSON_BATCH = (
    f"INSERT INTO decisions ({AUDIT_COLUMNS}) "  # noqa: S608 - fixed names, values bound
    f"SELECT {', '.join(f'value ->> {i}' for i in range(17))} FROM json_each(?) ORDER BY key"
)
"""SQLite: a whole batch as one JSON array of rows, in one statement. `executemany` releases
and retakes the GIL once per row on the database thread, and each retake waits for the busy
event loop's thread: against a busy loop a batch of 200 took ~0.13 s, and the audit cost a
quarter more CPU per decision. ``->>`` gives back SQL values (true as 1, null as NULL), as
binding the row would."""


@functools.cache
def sqlite_json_batches() -> bool:
    """Whether this SQLite library runs `INSERT_JSON_BATCH` (``->>`` came with 3.38, and a
    build may leave JSON out); if not, batches use `INSERT_ROWS`. Asked once, in memory."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        try:
            return bool(conn.execute("SELECT value ->> 0 FROM json_each('[[1]]')").fetchone()[0])
        except sqlite3.Error:
            return False


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


def storable(row: tuple[object, ...]) -> tuple[object, ...]:
    """`row` with text every backend stores as it is: UTF-8 holds no lone surrogate and
    PostgreSQL's text no NUL, so each becomes U+FFFD. An invalid identifier is recorded too,
    and whoever sent it chose it: it must neither stop the audit writer nor be cut short."""
    return tuple(_storable_text(v) if isinstance(v, str) else v for v in row)


def _storable_text(text: str) -> str:
    if text.isascii() and "\x00" not in text:
        return text
    return valid_text(text).replace("\x00", "\ufffd")


def insert_rows(entries: Iterable[AuditEntry]) -> list[tuple[object, ...]]:
    """The `INSERT_ROWS` rows for `entries`."""
    return [storable(audit_row(e)) for e in entries]


def json_batch(entries: Iterable[AuditEntry]) -> str:
    """The `INSERT_JSON_BATCH` argument for `entries` (the text is checked only when the JSON
    shows it needs to be: a lone surrogate fails orjson, a NUL is escaped as \\u0000, which
    SQLite's ``->>`` would cut the text at)."""
    rows = [audit_row(e) for e in entries]
    try:
        data: bytes | None = orjson.dumps(rows)
    except orjson.JSONEncodeError:
        data = None
    if data is None or b"\\u0000" in data:
        data = orjson.dumps([storable(row) for row in rows])
    return data.decode()
