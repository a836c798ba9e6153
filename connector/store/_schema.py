"""The store's schema as an ordered list of migrations, written once for both dialects.

A migration is a tuple of statements with three type words filled in per dialect (``{id}``,
``{blob}``, ``{real}``); `MIGRATIONS[n - 1]` takes a database from version n-1 to n. Migrations
only ever append: a released one is never edited, so every replica and every release agrees on
what version n means. Times are Unix seconds as floating point in both dialects, which keeps
the SQL portable and the comparison with the database's own clock trivial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"},
    "postgresql": {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"},
}

NOW_SQL: dict[Dialect, str] = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}
"""The database's own clock in Unix seconds: leases compare against one clock for all replicas."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step.

    Attributes:
        version: The version the database has after it.
        summary: What it adds, for the log.
        statements: DDL with ``{id}``, ``{blob}`` and ``{real}`` type words.
    """

    version: int
    summary: str
    statements: tuple[str, ...]

    def sql(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements in this dialect."""
        types = _TYPES[dialect]
        return tuple(s.format(**types) for s in self.statements)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "inventory generations, sync state, leases, audit log, SCEP challenges",
        (
            """CREATE TABLE generations (
                id {id},
                provider TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('building', 'current', 'retired')),
                started_at {real} NOT NULL,
                completed_at {real},
                devices INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX generations_provider ON generations (provider, state)",
            """CREATE TABLE devices (
                generation BIGINT NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                rank {real} NOT NULL,
                payload {blob} NOT NULL,
                PRIMARY KEY (generation, key)
            )""",
            """CREATE TABLE inventory_heads (
                provider TEXT PRIMARY KEY,
                generation BIGINT NOT NULL REFERENCES generations (id)
            )""",
            """CREATE TABLE sync_state (
                provider TEXT PRIMARY KEY,
                building BIGINT,
                cursor TEXT,
                last_success {real},
                last_attempt {real},
                last_error TEXT,
                last_full {real}
            )""",
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at {real} NOT NULL
            )""",
            """CREATE TABLE decisions (
                id {id},
                at {real} NOT NULL,
                webhook TEXT NOT NULL,
                webhook_kind TEXT NOT NULL,
                identifier TEXT,
                identifier_kind TEXT,
                allow BOOLEAN NOT NULL,
                code TEXT,
                provider TEXT,
                source TEXT,
                request_id TEXT,
                latency_ms {real},
                mode TEXT NOT NULL,
                would_allow BOOLEAN,
                failed_rules TEXT,
                username TEXT,
                email TEXT,
                detail TEXT
            )""",
            "CREATE INDEX decisions_at ON decisions (at)",
            "CREATE INDEX decisions_identifier ON decisions (identifier, at)",
            """CREATE TABLE scep_challenges (
                digest TEXT PRIMARY KEY,
                webhook TEXT NOT NULL,
                identity TEXT NOT NULL,
                created_at {real} NOT NULL,
                expires_at {real} NOT NULL,
                used_at {real}
            )""",
            "CREATE INDEX scep_challenges_expiry ON scep_challenges (expires_at)",
        ),
    ),
    Migration(
        2,
        "audit log searchable by identifier in any case",
        (
            # Searches compare upper(identifier): the plain index could not serve them, so each
            # search read the whole log (seconds at millions of rows).
            "CREATE INDEX decisions_identifier_upper ON decisions (upper(identifier), at)",
            "DROP INDEX decisions_identifier",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version
"""The schema version this release writes."""
