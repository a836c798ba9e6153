"""The audit writer: decisions are queued and written in batches, off the decision's path.

A decision never waits for the database. The queue is bounded: when the store is slower than
the decisions (or down), the oldest pending entries are kept and new ones are dropped and
counted (`dropped`), logged once per outage as `audit.dropped`, rather than growing memory
without bound. An outage is retried until the database answers; a batch the database refuses
for its data, or that fails by a bug, would fail forever: it is logged, counted as dropped and
given up. `aclose` flushes what is queued, within a deadline, at shutdown.

On SQLite the writer inserts a few entries per write (`SMALL_BATCH`) unless a full batch waits
(a backlog, or 200 gathered within one linger: about 4,000 decisions/s): an insert is a burst
of CPU beside the event loop, and on a machine with few cores a long one makes a decision that
arrives meanwhile wait for a core. Full batches cost the least per entry; PostgreSQL, which
inserts on its own server, always takes them.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from connector.store._model import AuditEntry, StoreError, StoreRefused
from connector.store._store import Store

log = structlog.get_logger("connector.audit")

LINGER = 0.05
"""Seconds the writer lets a batch gather after its first entry (not when a full batch, or a
small one left from the last gathering, already waits).
A write costs a transaction and three hops to the database thread whatever its size: one
entry per write costs ~80 µs of CPU, 200 per write ~6 µs each, and that CPU is taken from the
decisions. Entries still reach the database within a fraction of a second."""

SMALL_BATCH = 25
"""Entries per SQLite write while no full batch waits. An insert costs ~11 µs of CPU per entry
on the database thread: 200 at once held a core for 2-3 ms, and on two cores (the event loop
and the load generator on the other) sequential calls then saw a p99 of 1.4-2.1 ms; in writes
of 25 it was 0.7-0.9 ms, with the same throughput and CPU per call (`benchmarks.hot_path`,
2026-12-04). Writes of 10 cost measurably more CPU per call."""


class AuditRecorder:
    """Queues `AuditEntry` values and writes them to the store in batches."""

    def __init__(
        self,
        store: Store,
        *,
        max_pending: int = 10_000,
        batch: int = 200,
        small_batch: int | None = None,
        linger: float = LINGER,
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[AuditEntry] = asyncio.Queue(max_pending)
        self._batch = batch
        if small_batch is None:  # PostgreSQL inserts on its server, not on a thread beside us
            small_batch = SMALL_BATCH if store.backend == "sqlite" else batch
        self._small = max(1, min(small_batch, batch))
        self._linger = linger
        self._task: asyncio.Task[None] | None = None
        self._taken: list[AuditEntry] = []  # out of the queue, not yet written
        self._failing = False
        self.dropped = 0
        """Entries lost: the queue was full, the database refused the entry for its data, or
        its batch failed by a bug (retrying either would fail forever)."""
        self.written = 0
        """Entries written."""

    def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, entry: AuditEntry) -> None:
        """Queue an entry; never blocks, never raises."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            if self.dropped == 0 or not self._failing:
                log.error("audit.dropped", pending=self._queue.qsize())
            self.dropped += 1
            self._failing = True

    async def _run(self) -> None:
        gathered = False  # what waits was gathered by a linger already: written without one
        while True:
            self._taken = [await self._queue.get()]
            waiting = self._queue.qsize()
            if not gathered and waiting < self._batch - 1:  # a full batch is written at once
                await asyncio.sleep(self._linger)
                waiting = self._queue.qsize()
            size = self._batch if waiting >= self._batch - 1 else self._small
            while len(self._taken) < size and not self._queue.empty():
                self._taken.append(self._queue.get_nowait())
            await self._write(self._taken)
            self._taken = []
            gathered = self._queue.qsize() >= self._small

    async def _write(self, entries: list[AuditEntry]) -> None:
        await self._store.wait_ready()  # connecting at start-up is no failure yet
        while True:
            attempt = asyncio.ensure_future(self._store.record_decisions(entries))
            try:
                await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # aclose stopped the writer mid-write. The database may commit the batch all
                # the same, so learn how the attempt ended: the flush must neither write this
                # batch again nor lose it.
                await asyncio.wait([attempt])
                if not attempt.cancelled() and attempt.exception() is None:
                    self._written(entries)
                raise
            except StoreRefused as exc:  # the data, not an outage: retrying would fail forever
                if len(entries) == 1:
                    self._lost(entries, str(exc))
                else:  # one entry may spoil the batch: only what is refused alone is lost
                    await self._one_by_one(entries)
                return
            except StoreError as exc:
                if not self._failing:
                    log.error("audit.write_failed", error=str(exc), entries=len(entries))
                self._failing = True
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # a bug, not an outage: retrying would fail forever
                self._lost(entries, f"unexpected {type(exc).__name__}", trace=True)
                return
            if self._failing:
                log.info("audit.write_recovered", dropped=self.dropped)
            self._failing = False
            self._written(entries)
            return

    async def _one_by_one(self, entries: list[AuditEntry]) -> None:
        """Write a refused batch an entry at a time. Each one leaves `entries` (in place: it may
        be the batch `flush` takes over) once written or given up, so a cancellation in between
        neither writes an entry twice nor loses one."""
        while entries:
            settled = self.written + self.dropped
            try:
                await self._write(entries[:1])
            finally:
                if self.written + self.dropped > settled:
                    del entries[0]

    def _lost(self, entries: list[AuditEntry], error: str, *, trace: bool = False) -> None:
        """Give a batch up (logged, counted as dropped); the writer goes on with the next."""
        log.error("audit.write_failed", error=error, entries=len(entries), exc_info=trace)
        self.dropped += len(entries)
        if entries is self._taken:
            self._taken = []

    def _written(self, entries: list[AuditEntry]) -> None:
        self.written += len(entries)
        if entries is self._taken:
            self._taken = []

    async def flush(self) -> None:
        """Write everything queued so far; only while the background writer is stopped (it may
        hold a batch of its own, which would then be written twice)."""
        if self._task is not None:
            raise RuntimeError("stop the audit writer (aclose) before flushing")
        entries = self._taken  # kept as `_taken` until written: what a timeout loses
        while not self._queue.empty():
            entries.append(self._queue.get_nowait())
        if entries:
            await self._write(entries)

    async def aclose(self, *, flush_seconds: float = 5.0) -> None:
        """Stop the writer and flush what is queued, giving up after `flush_seconds`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending = len(self._taken) + self._queue.qsize()
        if not self._store.ready:
            if pending:
                log.error("audit.unflushed", pending=pending, reason="the store never connected")
            return
        try:
            async with asyncio.timeout(flush_seconds):
                await self.flush()
        except TimeoutError:
            lost = len(self._taken) + self._queue.qsize()
            self.dropped += lost
            log.error("audit.flush_timeout", pending=lost)
