"""The hot-path benchmark's floor: the work every cache-hit call must do, and nothing else.

A bare aiohttp handler, no structure, each part done the cheapest way found so far (by us and a
reviewer) on this stack: the webhook id, the HMAC, the strict parse (`read_call`: duplicate and
case-variant keys, surrogates, Go's timestamp; its canonical-body shortcut included), the
timestamp window, a dict lookup standing in for the decided answer, one JSON log line (orjson
straight into a binary buffer flushed once per loop iteration), one audit row (SQLite, WAL, the
``decisions`` table's columns and indexes, written on a thread every 50 ms, 25 rows per
insert unless 200 wait, about as the connector writes them) and the five metric updates of a
cached allow as plain counters and bucket counts (what a custom collector would keep: cheaper
than prometheus_client's locked children, which the connector uses), with the start-up heap
frozen out of garbage collection as `serve` does. Not a service (no limits, no error handling,
nothing configurable): an estimate of the least cost per call (so of the most throughput) of a
design on this stack (CPython, asyncio, aiohttp) that still does what each call requires; a
cheaper way to do a part would raise it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson
from aiohttp import web

from benchmarks._config import HOOK_ID, SECRET
from connector.call import read_call
from connector.models import WebhookRequest, parse_body, parse_go_timestamp
from connector.signing import decode_secret, verify_signature
from connector.store._audit_rows import AUDIT_COLUMNS, INSERT_JSON_BATCH, INSERT_ROWS
from connector.store._recorder import SMALL_BATCH

Serve = Callable[[web.Application, asyncio.Future[None]], Awaitable[None]]

PARTS = ("parse", "audit", "log", "metrics")
"""The floor's parts beyond the bare handler's work (`--floor-parts`); ``parse`` is the strict
reading and the timestamp window, without it the body is read with `json.loads` as the bare
handler reads it."""

AUDIT_WRITERS = ("thread", "process")
"""Where the floor's audit rows are inserted (`--floor-audit`)."""

BATCH = 200
"""Audit rows per INSERT with a backlog, as the connector's writer takes them (`SMALL_BATCH`
without one)."""


def sketch_read(body: bytes) -> tuple[datetime, str | None]:
    """An optimistic stand-in for the strict reading of an AUTHORIZING body: the timestamp and
    the attested identifier, checked less than `parse_body` checks them.

    It keeps the canonical-body test (orjson writes the tree back byte for byte), the top-level
    member names (once per key set) and Go's timestamp, and type-checks the two values it
    returns; it skips the rest of the model (``attestationData``'s member names,
    ``x509Certificate`` and its subject, the provisioner name). So it costs less than any reader as strict as the connector's can: the
    floor measured with it over-estimates what such a design reaches, which is what an upper
    bound wants. Anything else (another shape, a refusal) goes to `parse_body`.
    """
    tree = orjson.loads(body)
    if type(tree) is dict and orjson.dumps(tree) == body:
        keys = tuple(tree)
        attested = tree.get("attestationData")
        timestamp = tree.get("timestamp")
        if keys in _CHECKED and type(timestamp) is str:
            identifier = attested.get("permanentIdentifier") if type(attested) is dict else None
            if identifier is None or type(identifier) is str:
                return parse_go_timestamp(timestamp), identifier
    payload = parse_body(body, WebhookRequest)  # the first time, or any other body
    _CHECKED.add(tuple(orjson.loads(body)))
    return payload.timestamp, payload.permanent_identifier


def _model_read(body: bytes) -> tuple[datetime, str | None]:
    payload = parse_body(body, WebhookRequest)
    return payload.timestamp, payload.permanent_identifier


def _call_read(body: bytes) -> tuple[datetime, str | None]:
    call = read_call(body)
    return call.timestamp, call.permanent_identifier


_READERS = {"read_call": _call_read, "parse_body": _model_read, "sketch": sketch_read}
READERS = tuple(_READERS)
"""How the floor's ``parse`` part reads the body (`--floor-reader`): the connector's strict
reader (`connector.call.read_call`, the default), the pydantic model it stands for, or the
optimistic `sketch_read`."""

_CHECKED: set[tuple[str, ...]] = set()
"""Top-level key sets `parse_body` accepted once (the sketch's stand-in for the member check)."""


def _open_audit(path: Path) -> sqlite3.Connection:
    """The audit table as the store keeps it: WAL, the ``decisions`` columns and indexes."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(f"CREATE TABLE decisions (id INTEGER PRIMARY KEY, {AUDIT_COLUMNS})")
    db.execute("CREATE INDEX decisions_at ON decisions (at)")
    db.execute("CREATE INDEX decisions_identifier ON decisions (identifier, at)")
    return db


class _Audit:
    """Rows queued in memory and inserted per batch on a thread, as the connector's SQLite
    writer does (one JSON array of rows per statement: of the ways measured, the cheapest
    under load)."""

    def __init__(self, folder: Path) -> None:
        self.rows: list[tuple[object, ...]] = []
        self._db = _open_audit(folder / "floor.sqlite3")

    def _insert(self, batch: list[tuple[object, ...]]) -> None:
        with self._db:
            self._db.execute(INSERT_JSON_BATCH, (orjson.dumps(batch).decode(),))

    async def write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.05)
            while self.rows:
                size = BATCH if len(self.rows) >= BATCH else SMALL_BATCH  # as the connector
                batch = self.rows[:size]
                del self.rows[:size]
                await loop.run_in_executor(None, self._insert, batch)

    def close(self) -> None:
        self._db.close()


class _ProcessAudit:
    """Rows sent every 50 ms, one JSON line per batch, down a pipe to a writer process that owns
    the database (`write_batches`): its inserts share no GIL with the event loop. Its CPU is not
    in the server's CPU per call (only the throughput shows it)."""

    def __init__(self, folder: Path) -> None:
        self.rows: list[tuple[object, ...]] = []
        self._path = folder / "floor.sqlite3"
        self._process: asyncio.subprocess.Process | None = None

    async def write_forever(self) -> None:
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._floor",
            str(self._path),
            stdin=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None  # noqa: S101 - PIPE above
        while True:
            await asyncio.sleep(0.05)
            if self.rows:
                batch, self.rows = self.rows, []
                process.stdin.write(orjson.dumps(batch, option=orjson.OPT_APPEND_NEWLINE))
                await process.stdin.drain()

    def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()


def write_batches(path: Path) -> None:
    """The writer process: each line of stdin is a JSON array of rows, inserted in one
    transaction with bound parameters."""
    db = _open_audit(path)
    for line in sys.stdin.buffer:
        with db:
            db.executemany(INSERT_ROWS, orjson.loads(line))
    db.close()


BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets (seconds)."""


class _Metrics:
    """Three counters and two histograms as plain numbers (one event loop updates them)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # decisions, provider lookups, cache hits
        self.buckets = [[0] * (len(BOUNDS) + 1), [0] * (len(BOUNDS) + 1)]
        self.sums = [0.0, 0.0]

    def cached_allow(self, latency: float) -> None:
        self.counts[0] += 1
        self.counts[1] += 1
        self.counts[2] += 1
        bucket = bisect.bisect_left(BOUNDS, latency)
        for histogram in (0, 1):  # decision and lookup durations
            self.buckets[histogram][bucket] += 1
            self.sums[histogram] += latency


class _Lines:
    """JSON lines written to a binary buffer, flushed once per event-loop iteration."""

    def __init__(self, buffer: BinaryIO) -> None:
        self._buffer = buffer
        self._pending = False
        self._second = -1
        self._stamp = ""

    def write(self, event: dict[str, object]) -> None:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._second))
        event["level"] = "info"
        event["timestamp"] = f"{self._stamp}.{int(now % 1 * 1e6):06d}Z"
        self._buffer.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._pending = False
        self._buffer.flush()


async def serve_floor(
    stop: asyncio.Future[None],
    serve: Serve,
    device: str,
    parts: frozenset[str] = frozenset(PARTS),
    *,
    audit_writer: str = "thread",
    reader: str = "read_call",
) -> None:
    """Serve the floor handler at ``/gate`` through `serve` until `stop`; `device` is allowed.

    With fewer `parts`, the bare handler plus those parts only: what each part costs alone.
    """
    key = decode_secret(SECRET)
    answers = {device: b'{"allow":true}'}
    metrics = _Metrics()
    strict, audited, logged, counted = (part in parts for part in PARTS)
    read = _READERS[reader]

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await request.read()
        if request.headers.get("X-Smallstep-Webhook-ID") != HOOK_ID:
            return web.json_response({"error": "unknown webhook"}, status=404)
        if not verify_signature(body, request.headers.get("X-Smallstep-Signature"), key):
            return web.json_response({"error": "signature"}, status=401)
        if strict:
            timestamp, attested = read(body)
            if abs((datetime.now(UTC) - timestamp).total_seconds()) > 300:
                return web.json_response({"error": "timestamp"}, status=400)
            identifier = attested or ""
        else:
            json.loads(body)
            identifier = device
        answer = answers[identifier]
        latency = time.perf_counter() - started
        latency_ms = round(latency * 1000, 2)
        if logged:
            lines.write(
                {
                    "webhook": "gate",
                    "kind": "AUTHORIZING",
                    "identifier": identifier,
                    "identifier_kind": "serial",
                    "allow": True,
                    "provider": "inv",
                    "cached": True,
                    "latency_ms": latency_ms,
                    "event": "webhook.decision",
                }
            )
        if audited:
            audit.rows.append(
                (
                    *(time.time(), "gate", "AUTHORIZING", identifier, "serial", True, None, "inv"),
                    *("cache", None, latency_ms, "enforce", None, None, None, None, None),
                )
            )
        if counted:
            metrics.cached_allow(latency)
        return web.Response(body=answer, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_post("/gate", handle)
    with (
        tempfile.TemporaryDirectory() as folder,
        open("/dev/null", "wb") as sink,  # noqa: ASYNC230 - set-up
    ):
        lines = _Lines(sink)
        audit = _Audit(Path(folder)) if audit_writer == "thread" else _ProcessAudit(Path(folder))
        writer = asyncio.create_task(audit.write_forever()) if audited else None
        gc.collect()
        gc.freeze()
        try:
            await serve(app, stop)
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            audit.close()


if __name__ == "__main__":
    write_batches(Path(sys.argv[1]))
