"""The hot-path benchmark's floor: the work every cache-hit call must do, and nothing else.

A bare aiohttp handler, no structure, the same libraries as the connector: the webhook id, the
HMAC, the strict parse (`parse_body`: duplicate and case-variant keys, surrogates, Go's
timestamp), the timestamp window, a dict lookup standing in for the decided answer, one JSON
log line (`JsonLines`, flushed once per loop iteration), one audit row (SQLite, WAL, the
``decisions`` table's columns and indexes, written in batches on a thread every 50 ms) and the
five metric updates of a cached allow (prometheus_client). Not a service (no limits, no error
handling, nothing configurable): a bound on what any design on this stack (CPython, asyncio,
aiohttp) reaches while it still does what each call requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from benchmarks._config import HOOK_ID, SECRET
from connector.logs import JsonLineRenderer, JsonLines
from connector.models import WebhookRequest, parse_body
from connector.signing import decode_secret, verify_signature
from connector.store._audit_rows import AUDIT_COLUMNS, INSERT_JSON_BATCH

Serve = Callable[[web.Application, asyncio.Future[None]], Awaitable[None]]

BATCH = 200
"""Audit rows per INSERT, as the connector's writer takes them."""


class _Audit:
    """Rows queued in memory and inserted per batch on a thread, as the connector's SQLite
    writer does (one JSON array of rows per statement: of the ways measured, the cheapest
    under load)."""

    def __init__(self, folder: Path) -> None:
        self.rows: list[tuple[object, ...]] = []
        self._db = sqlite3.connect(folder / "floor.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(f"CREATE TABLE decisions (id INTEGER PRIMARY KEY, {AUDIT_COLUMNS})")
        self._db.execute("CREATE INDEX decisions_at ON decisions (at)")
        self._db.execute("CREATE INDEX decisions_identifier ON decisions (identifier, at)")

    def _insert(self, batch: list[tuple[object, ...]]) -> None:
        with self._db:
            self._db.execute(INSERT_JSON_BATCH, (orjson.dumps(batch).decode(),))

    async def write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.05)
            while self.rows:
                batch = self.rows[:BATCH]
                del self.rows[:BATCH]
                await loop.run_in_executor(None, self._insert, batch)

    def close(self) -> None:
        self._db.close()


async def serve_floor(stop: asyncio.Future[None], serve: Serve, device: str) -> None:
    """Serve the floor handler at ``/gate`` through `serve` until `stop`; `device` is allowed."""
    key = decode_secret(SECRET)
    answers = {device: b'{"allow":true}'}
    registry = CollectorRegistry()
    decisions = Counter(
        "decisions", "", ["webhook", "kind", "allow", "code"], registry=registry
    ).labels("gate", "AUTHORIZING", "true", "")
    duration = Histogram("decision_seconds", "", ["webhook"], registry=registry).labels("gate")
    lookups = Counter("lookups", "", ["provider", "outcome"], registry=registry).labels(
        "inv", "found"
    )
    lookup_duration = Histogram("lookup_seconds", "", ["provider"], registry=registry).labels("inv")
    hits = Counter("cache_hits", "", ["provider"], registry=registry).labels("inv")

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await request.read()
        if request.headers.get("X-Smallstep-Webhook-ID") != HOOK_ID:
            return web.json_response({"error": "unknown webhook"}, status=404)
        if not verify_signature(body, request.headers.get("X-Smallstep-Signature"), key):
            return web.json_response({"error": "signature"}, status=401)
        payload = parse_body(body, WebhookRequest)
        if abs((datetime.now(UTC) - payload.timestamp).total_seconds()) > 300:
            return web.json_response({"error": "timestamp"}, status=400)
        identifier = payload.permanent_identifier or ""
        answer = answers[identifier]
        latency = time.perf_counter() - started
        event = {
            "webhook": "gate",
            "kind": "AUTHORIZING",
            "identifier": identifier,
            "identifier_kind": "serial",
            "allow": True,
            "provider": "inv",
            "cached": True,
            "latency_ms": round(latency * 1000, 2),
            "event": "webhook.decision",
        }
        lines.msg(render(None, "info", event))
        audit.rows.append(
            (
                *(time.time(), "gate", "AUTHORIZING", identifier, "serial", True, None, "inv"),
                *("cache", None, round(latency * 1000, 2), "enforce", None, None, None, None, None),
            )
        )
        decisions.inc()
        duration.observe(latency)
        lookups.inc()
        lookup_duration.observe(latency)
        hits.inc()
        return web.Response(body=answer, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_post("/gate", handle)
    with (
        tempfile.TemporaryDirectory() as folder,
        open("/dev/null", "w", encoding="utf-8") as sink,  # noqa: ASYNC230 - set-up
    ):
        lines, render = JsonLines(sink), JsonLineRenderer()
        audit = _Audit(Path(folder))
        writer = asyncio.create_task(audit.write_forever())
        try:
            await serve(app, stop)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            audit.close()
