"""The store: inventory generations, sync state, leases, the audit log and SCEP challenges.

One class over either driver, so SQLite and PostgreSQL run the very same statements. A sync
writes a generation in the *building* state, then `commit_generation` makes it current in one
transaction by moving the provider's head: a reader sees the old generation or the new one,
never a mix, and a failed sync leaves the current one untouched. A committed generation is
dated from when it was begun (``completed_at`` = ``started_at``), not from its commit: its
oldest rows are that old, however long the listing took or waited to be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import structlog

from connector.store._audit_rows import (
    AUDIT_COLUMNS,
    INSERT_JSON_BATCH,
    INSERT_ROWS,
    audit_entry,
    insert_rows,
    json_batch,
    sqlite_json_batches,
)
from connector.store._drivers import Connection, Driver
from connector.store._model import (
    AuditEntry,
    AuditQuery,
    Challenge,
    Generation,
    SchemaTooNew,
    StoredAnswer,
    StoredDevice,
    StoreError,
    SyncState,
)
from connector.store._schema import LATEST, MIGRATIONS, NOW_SQL

log = structlog.get_logger("connector.store")

_AMBIGUOUS_SQL = {"sqlite": "X'00'", "postgresql": "'\\x00'::bytea"}
"""`AMBIGUOUS` as an SQL literal of each dialect."""
_MIGRATION_LOCK = 0x706F7374  # pg_advisory_xact_lock key: replicas migrate one at a time
MIGRATION_TIMEOUT = 1800.0
"""Seconds a schema statement may take (an index over a large audit log takes minutes), and
another replica may wait for it; every other statement keeps `[store] timeout`."""
PRUNE_BATCH = 5000
"""Audit entries deleted per transaction by the retention pass."""


class Store:
    """Everything the replicas share; see the module docstring for generations."""

    def __init__(self, driver: Driver, *, describe: str) -> None:
        self._driver = driver
        self._now = NOW_SQL[driver.dialect]
        self.describe = describe
        """The backend and where it is, without a password (for logs and /readyz)."""
        self._migrated = False
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Whether the schema is known to be current (`migrate` succeeded)."""
        return self._migrated

    async def wait_ready(self) -> None:
        """Return once `migrate` has succeeded."""
        await self._ready.wait()

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        self._require()
        return self._driver.transaction()

    def _reader(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        self._require()
        return self._driver.reader()

    def _searcher(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        self._require()
        return self._driver.searcher()

    def _require(self) -> None:
        if not self._migrated:
            raise StoreError(f"{self.describe}: not connected yet (the schema is not checked)")

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._driver.dialect

    # --- lifecycle --------------------------------------------------------------------------

    async def migrate(self) -> int:
        """Bring the schema to `LATEST`; refuse a newer schema without touching it."""
        async with self._driver.transaction() as tx:
            if self._driver.dialect == "postgresql":
                # Another replica may be migrating: wait for it as long as a migration may take.
                await tx.execute(
                    "SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK, time_limit=MIGRATION_TIMEOUT
                )
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await tx.fetchone("SELECT max(version) FROM schema_version")
            found = int(row[0]) if row and row[0] is not None else 0
            if found > LATEST:
                raise SchemaTooNew(found, LATEST)
            for migration in MIGRATIONS[found:]:
                log.info(
                    "store.migrating",
                    backend=self.backend,
                    version=migration.version,
                    summary=migration.summary,
                )
                try:
                    for statement in migration.sql(self._driver.dialect):
                        await tx.execute(statement, time_limit=MIGRATION_TIMEOUT)
                except StoreError as exc:
                    raise StoreError(
                        f"the schema upgrade to version {migration.version} failed "
                        f"(nothing changed): {exc}"
                    ) from None
                await tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", migration.version
                )
                log.info(
                    "store.migrated",
                    backend=self.backend,
                    version=migration.version,
                    summary=migration.summary,
                )
        self._migrated = True
        self._ready.set()
        return max(found, LATEST)

    async def attach(self) -> int:
        """Use a store the service keeps, changing nothing: its schema must be this release's
        (a tool must not create a store where there is none, nor migrate one that replicas of
        another release still use). Raises `StoreError` or `SchemaTooNew`; returns the version.
        """
        async with self._driver.reader() as conn:
            try:
                row = await conn.fetchone("SELECT max(version) FROM schema_version")
            except StoreError:
                raise StoreError(
                    f"{self.describe}: no store here (the service creates it at its first start)"
                ) from None
        found = int(row[0]) if row and row[0] is not None else 0
        if found > LATEST:
            raise SchemaTooNew(found, LATEST)
        if found < LATEST:
            raise StoreError(
                f"{self.describe}: schema version {found}, this release reads {LATEST}: "
                "start the service of this release to migrate it"
            )
        self._migrated = True
        self._ready.set()
        return found

    async def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""
        async with self._driver.reader() as conn:
            await conn.fetchone("SELECT 1")

    async def aclose(self) -> None:
        """Close connections."""
        await self._driver.aclose()

    # --- inventory generations --------------------------------------------------------------

    async def begin_generation(self, provider: str) -> int:
        """Start an invisible generation for `provider`; returns its id."""
        async with self._transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO generations (provider, state, started_at) "
                f"VALUES (?, 'building', {self._now}) RETURNING id",
                provider,
            )
        assert row is not None  # noqa: S101 - RETURNING always yields the row
        return int(row[0])

    async def building_age(self, generation: int) -> float | None:
        """Seconds since a building generation was begun, by the database's clock (the one
        every replica shares); None when it is not being built: how old its first rows are,
        for deciding whether to resume it and how long it may still take."""
        async with self._reader() as conn:
            row = await conn.fetchone(
                f"SELECT {self._now} - started_at FROM generations "
                "WHERE id = ? AND state = 'building'",
                generation,
            )
        return None if row is None else float(row[0])

    async def add_devices(self, generation: int, devices: Sequence[StoredDevice]) -> None:
        """Add devices to a building generation; of two with one key the higher rank wins.

        That is the newest-record-wins rule for a re-enrolled device listed twice, applied
        across batches by the database rather than by holding a whole inventory in memory.
        The generation's device count grows only by devices with a key it does not hold yet, so
        a page listed again (a sync resumed before its cursor was saved) is not counted twice.
        """
        rows = [(generation, key, d.rank, d.payload) for d in devices for key in d.keys]
        if not rows:
            return
        async with self._transaction() as tx:
            await _expect_building(tx, generation)
            held = await _held_keys(tx, generation, {key for _, key, _, _ in rows})
            # Of two different records with one key and one rank, neither is known current: the
            # key then holds `AMBIGUOUS` (until a newer record replaces it), which the reader
            # refuses, as a live lookup refuses a tie. The same record written twice (a page
            # listed again on resume) is no tie.
            await tx.executemany(
                "INSERT INTO devices (generation, key, rank, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (generation, key) DO UPDATE SET payload = CASE "
                "WHEN excluded.rank = devices.rank AND excluded.payload <> devices.payload "
                f"THEN {_AMBIGUOUS_SQL[self._driver.dialect]} ELSE excluded.payload END, "
                "rank = excluded.rank WHERE excluded.rank >= devices.rank",
                rows,
            )
            await tx.execute(
                "UPDATE generations SET devices = devices + ? WHERE id = ?",
                _new_devices(devices, held),
                generation,
            )

    async def commit_generation(self, provider: str, generation: int) -> Generation:
        """Make a building generation current (atomically) and drop the ones it replaces.

        Its ``completed_at`` becomes its ``started_at``: freshness counts from the listing's
        first page, so pages listed long ago (a resumed sync) never pass for fresh.
        """
        async with self._transaction() as tx:
            row = await tx.fetchone(
                "SELECT provider, state FROM generations WHERE id = ?", generation
            )
            if row is None or row[0] != provider or row[1] != "building":
                raise StoreError(f"generation {generation} of {provider} is not being built")
            await tx.execute(
                "UPDATE generations SET state = 'retired' WHERE provider = ? AND state = 'current'",
                provider,
            )
            await tx.execute(
                "UPDATE generations SET state = 'current', completed_at = started_at WHERE id = ?",
                generation,
            )
            await tx.execute(
                "INSERT INTO inventory_heads (provider, generation) VALUES (?, ?) "
                "ON CONFLICT (provider) DO UPDATE SET generation = excluded.generation",
                provider,
                generation,
            )
        await self._drop_retired(provider)
        current = await self.current_generation(provider)
        assert current is not None  # noqa: S101 - just committed
        return current

    async def abort_generation(self, generation: int) -> None:
        """Throw a building generation away (a sync that will not resume).

        One statement on the generation's row, its devices going with it (``ON DELETE
        CASCADE``): it waits for a commit of the same generation under way on another replica
        and then finds it current, and leaves it whole. Deleting the devices first, by a test
        the commit had not yet changed, emptied a copy that went on to answer every lookup
        "not found".
        """
        async with self._transaction() as tx:
            await tx.execute(
                "DELETE FROM generations WHERE id = ? AND state = 'building'", generation
            )

    async def _drop_retired(self, provider: str) -> None:
        async with self._transaction() as tx:
            await tx.execute(
                "DELETE FROM devices WHERE generation IN "
                "(SELECT id FROM generations WHERE provider = ? AND state = 'retired')",
                provider,
            )
            await tx.execute(
                "DELETE FROM generations WHERE provider = ? AND state = 'retired'", provider
            )

    async def drop_stale_copies(
        self, provider: str, *, keep: str, max_age: float, holder: str, lease_ttl: float
    ) -> list[str]:
        """Forget `provider`'s other synced copies that can no longer answer; their names.

        A provider's copies are named ``PROVIDER@LISTING``, one per set of settings it was
        listed under (`connector.sync.copy_name`), and ``PROVIDER`` for one an earlier release
        listed. A copy other than `keep` goes once nothing of it is newer than `max_age`
        seconds (its readers' ``max_staleness``): replicas that still run under its settings
        keep it fresh, and a stale copy answers nothing anyway. `holder` takes the copy's sync
        lease while it drops it, so no replica syncs it meanwhile; a copy whose lease another
        holds is left alone.
        """
        prefix = f"{provider}@"
        async with self._reader() as conn:
            rows = await conn.fetchall(
                "SELECT DISTINCT provider FROM generations "
                "WHERE (provider = ? OR substr(provider, 1, ?) = ?) AND provider <> ?",
                provider,
                len(prefix),
                prefix,
                keep,
            )
        dropped: list[str] = []
        for (name,) in rows:
            lease = f"sync:{name}"
            if not await self.acquire_lease(lease, holder, lease_ttl):
                continue  # being synced: fresh soon
            try:
                if await self._drop_copy(name, max_age):
                    dropped.append(name)
            finally:
                await self.release_lease(lease, holder)
        return dropped

    async def _drop_copy(self, name: str, max_age: float) -> bool:
        """Drop the copy `name` unless part of it is newer than `max_age`; whether it went."""
        async with self._transaction() as tx:
            fresh = await tx.fetchone(
                "SELECT 1 FROM generations WHERE provider = ? AND ("
                f"(state = 'current' AND completed_at >= {self._now} - ?) OR "
                f"(state = 'building' AND started_at >= {self._now} - ?))",
                name,
                float(max_age),
                float(max_age),
            )
            if fresh is not None:
                return False
            await tx.execute("DELETE FROM inventory_heads WHERE provider = ?", name)
            await tx.execute(
                "DELETE FROM devices WHERE generation IN "
                "(SELECT id FROM generations WHERE provider = ?)",
                name,
            )
            await tx.execute("DELETE FROM generations WHERE provider = ?", name)
            await tx.execute("DELETE FROM sync_state WHERE provider = ?", name)
        return True

    async def current_generation(self, provider: str) -> Generation | None:
        """The generation decisions read for `provider`, if one was ever completed."""
        async with self._reader() as conn:
            row = await conn.fetchone(
                f"SELECT g.id, g.completed_at, g.devices, {self._now} - g.completed_at "
                "FROM inventory_heads h JOIN generations g ON g.id = h.generation "
                "WHERE h.provider = ?",
                provider,
            )
        if row is None:
            return None
        return Generation(
            id=int(row[0]), provider=provider, completed_at=row[1], devices=row[2], age=row[3]
        )

    async def find_device(self, provider: str, key: str) -> StoredAnswer | None:
        """The device with `key` in `provider`'s current generation, and that generation."""
        async with self._reader() as conn:
            row = await conn.fetchone(
                f"SELECT d.generation, g.completed_at, d.payload, {self._now} - g.completed_at "
                "FROM inventory_heads h "
                "JOIN devices d ON d.generation = h.generation AND d.key = ? "
                "JOIN generations g ON g.id = h.generation WHERE h.provider = ?",
                key,
                provider,
            )
        if row is None:
            return None
        return StoredAnswer(
            generation=int(row[0]), completed_at=row[1], payload=bytes(row[2]), age=row[3]
        )

    # --- sync state and leases --------------------------------------------------------------

    async def load_sync_state(self, provider: str) -> SyncState:
        """Where the provider's sync stands (an empty state when it never ran)."""
        async with self._reader() as conn:
            row = await conn.fetchone(
                "SELECT building, cursor, last_success, last_attempt, last_error, last_full "
                "FROM sync_state WHERE provider = ?",
                provider,
            )
        if row is None:
            return SyncState(provider)
        return SyncState(provider, *row)

    async def save_sync_state(self, state: SyncState) -> None:
        """Record where the provider's sync stands."""
        async with self._transaction() as tx:
            await tx.execute(
                "INSERT INTO sync_state (provider, building, cursor, last_success, "
                "last_attempt, last_error, last_full) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider) DO UPDATE SET building = excluded.building, "
                "cursor = excluded.cursor, last_success = excluded.last_success, "
                "last_attempt = excluded.last_attempt, last_error = excluded.last_error, "
                "last_full = excluded.last_full",
                state.provider,
                state.building,
                state.cursor,
                state.last_success,
                state.last_attempt,
                state.last_error,
                state.last_full,
            )

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease `name` for `ttl` seconds; False while another holds it.

        Expiry is judged by the database's clock, the one clock all replicas share.
        """
        async with self._transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO leases (name, holder, expires_at) "
                f"VALUES (?, ?, {self._now} + ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at "
                f"WHERE leases.holder = excluded.holder OR leases.expires_at < {self._now} "
                "RETURNING holder",
                name,
                holder,
                float(ttl),
            )
        return row is not None

    async def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Extend `holder`'s own lease `name` by `ttl` seconds from now; False when it has
        expired or another holds it (unlike `acquire_lease`, an expired lease is not taken
        back: another replica may have taken it and let it go meanwhile)."""
        async with self._transaction() as tx:
            row = await tx.fetchone(
                f"UPDATE leases SET expires_at = {self._now} + ? "
                f"WHERE name = ? AND holder = ? AND expires_at >= {self._now} RETURNING holder",
                float(ttl),
                name,
                holder,
            )
        return row is not None

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (on a clean shutdown) so another replica takes over."""
        async with self._transaction() as tx:
            await tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)

    # --- audit log --------------------------------------------------------------------------

    async def record_decisions(self, entries: Sequence[AuditEntry]) -> None:
        """Append decisions (in one transaction: a batch is kept whole or not at all)."""
        if not entries:
            return
        async with self._transaction() as tx:
            if self._driver.dialect == "sqlite" and sqlite_json_batches():
                await tx.execute(INSERT_JSON_BATCH, json_batch(entries))
            else:
                await tx.executemany(INSERT_ROWS, insert_rows(entries))

    async def query_decisions(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching every field of `query`, newest first."""
        where: list[str] = []
        args: list[Any] = []
        if query.identifier is not None:  # indexed as upper(identifier) (schema version 2)
            # Both sides by the database's own upper(): SQLite's (or a C locale's) changes ASCII
            # letters only, and Python's would miss every identifier other than ASCII.
            where.append("upper(identifier) = upper(?)")
            args.append(query.identifier)
        if query.since is not None:
            where.append("at >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("at < ?")
            args.append(query.until)
        if query.denied_only:
            where.append("(allow = ? OR would_allow = ?)")
            args += [False, False]
        if query.code is not None:
            where.append("code = ?")
            args.append(query.code)
        if query.webhook is not None:
            where.append("webhook = ?")
            args.append(query.webhook)
        sql = f"SELECT id, {AUDIT_COLUMNS} FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(int(query.limit))
        async with self._searcher() as conn:  # a scan here never delays a synced decision
            rows = await conn.fetchall(sql, *args)
        return [audit_entry(row) for row in rows]

    async def prune_decisions(self, before: float) -> int:
        """Delete entries older than `before` (retention); returns how many went.

        In batches of `PRUNE_BATCH`, one short transaction each: millions of expired entries
        (retention lowered, a long outage) in one statement outlasted the store's timeout,
        so none ever went, and held SQLite's only write lock for as long (SCEP challenges and
        the audit waited)."""
        removed = 0
        while True:
            async with self._transaction() as tx:
                gone = await tx.fetchall(
                    "DELETE FROM decisions WHERE id IN "
                    "(SELECT id FROM decisions WHERE at < ? ORDER BY at LIMIT ?) RETURNING id",
                    before,
                    PRUNE_BATCH,
                )
            removed += len(gone)
            if len(gone) < PRUNE_BATCH:
                return removed

    # --- SCEP challenges --------------------------------------------------------------------

    async def add_challenge(self, challenge: Challenge) -> None:
        """Remember a one-time challenge (its digest only)."""
        async with self._transaction() as tx:
            await tx.execute(
                "INSERT INTO scep_challenges (digest, webhook, identity, created_at, expires_at) "
                f"VALUES (?, ?, ?, {self._now}, ?)",
                challenge.digest,
                challenge.webhook,
                challenge.identity,
                challenge.expires_at,
            )

    async def burn_challenge(self, digest: str, webhook: str, now: float) -> Challenge | None:
        """Use a challenge up: the unexpired, unused one with this digest, once, or None."""
        async with self._transaction() as tx:
            row = await tx.fetchone(
                "UPDATE scep_challenges SET used_at = ? WHERE digest = ? AND webhook = ? "
                "AND used_at IS NULL AND expires_at > ? RETURNING identity, expires_at",
                now,
                digest,
                webhook,
                now,
            )
        if row is None:
            return None
        return Challenge(digest=digest, webhook=webhook, identity=row[0], expires_at=row[1])

    async def release_challenge(self, digest: str, webhook: str, used_at: float) -> bool:
        """Give back a challenge that `burn_challenge` used up at `used_at` but that issued
        nothing (the device's posture was refused or could not be checked), so the device
        may present it again before it expires. Only that use is undone; True if it was."""
        async with self._transaction() as tx:
            row = await tx.fetchone(
                "UPDATE scep_challenges SET used_at = NULL WHERE digest = ? AND webhook = ? "
                "AND used_at = ? RETURNING digest",
                digest,
                webhook,
                used_at,
            )
        return row is not None

    async def prune_challenges(self, before: float) -> None:
        """Forget challenges that expired before `before`."""
        async with self._transaction() as tx:
            await tx.execute("DELETE FROM scep_challenges WHERE expires_at < ?", before)


async def _expect_building(tx: Connection, generation: int) -> None:
    row = await tx.fetchone("SELECT state FROM generations WHERE id = ?", generation)
    if row is None or row[0] != "building":
        raise StoreError(f"generation {generation} is not being built")


_KEYS_PER_QUERY = 500  # per IN (...) list: well below either database's parameter limit


async def _held_keys(tx: Connection, generation: int, keys: set[str]) -> set[str]:
    """Which of `keys` the generation already holds."""
    wanted, held = sorted(keys), set[str]()
    for start in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[start : start + _KEYS_PER_QUERY]
        marks = ", ".join(["?"] * len(chunk))
        found = await tx.fetchall(
            f"SELECT key FROM devices WHERE generation = ? AND key IN ({marks})",
            generation,
            *chunk,
        )
        held.update(row[0] for row in found)
    return held


def _new_devices(devices: Sequence[StoredDevice], held: set[str]) -> int:
    """How many of `devices` have a key neither in `held` nor in an earlier one of them.

    A record listed again has every key held already; a re-enrolled Mac (its serial again, a
    new UDID) is a record of its own, as the upstream counts it. A device without keys is not
    stored, so not counted.
    """
    seen, count = set(held), 0
    for device in devices:
        if not seen.issuperset(device.keys):
            count += 1
        seen.update(device.keys)
    return count


def unix_now() -> float:
    """Wall-clock Unix seconds (the audit log's time base)."""
    return time.time()
