"""What `test_replicas.py` runs beside the replicas: the fake Jamf as a real HTTP server on a
thread of its own, and a watcher that samples the shared PostgreSQL store while a test runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from tests.e2e.balancers import free_port
from tests.fakes.jamf import FakeJamf, create_app


class JamfServer:
    """The fake Jamf served on 127.0.0.1 from a background thread's event loop."""

    def __init__(self, computers: Sequence[dict[str, Any]]) -> None:
        self.fake = FakeJamf(computers=list(computers))
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(create_app(self.fake), access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where the replicas reach it."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> JamfServer:
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def run(self, change: Any) -> None:
        """Call `change()` on the server's loop (the fake's state is not shared across threads)."""
        done = threading.Event()

        def call() -> None:
            change()
            done.set()

        self._loop.call_soon_threadsafe(call)
        assert done.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Sample:
    """The store as one query saw it.

    Attributes:
        at: `time.monotonic()` of the sample.
        current: (generation id, devices) of the provider's current generation, if any.
        building: ids of generations being built.
        holder: who holds the provider's sync lease (a replica id, ``host:pid:random``).
    """

    at: float
    current: tuple[int, int] | None
    building: tuple[int, ...]
    holder: str | None


class StoreWatch:
    """Samples a synced copy's generations and lease (`copy`: its name in the store,
    `connector.sync.copy_name`) every `interval` seconds on a thread."""

    def __init__(self, url: str, provider: str, *, interval: float = 0.1) -> None:
        self._url = url
        self._provider = provider
        self._interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)

    async def sample(self, conn: asyncpg.Connection) -> Sample:
        """One consistent look at the store (a single read-only transaction)."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            current = await conn.fetchrow(
                "SELECT g.id, g.devices FROM inventory_heads h "
                "JOIN generations g ON g.id = h.generation WHERE h.provider = $1",
                self._provider,
            )
            building = await conn.fetch(
                "SELECT id FROM generations WHERE provider = $1 AND state = 'building'",
                self._provider,
            )
            holder = await conn.fetchval(
                "SELECT holder FROM leases WHERE name = $1", f"sync:{self._provider}"
            )
        return Sample(
            time.monotonic(),
            None if current is None else (int(current[0]), int(current[1])),
            tuple(int(r[0]) for r in building),
            holder,
        )

    async def _watch(self) -> None:
        conn = await asyncpg.connect(self._url)
        try:
            while not self._stop.is_set():
                self.samples.append(await self.sample(conn))
                await asyncio.sleep(self._interval)
        finally:
            await conn.close()

    def now(self) -> Sample:
        """One sample taken right away, on a connection of its own."""

        async def once() -> Sample:
            conn = await asyncpg.connect(self._url)
            try:
                return await self.sample(conn)
            finally:
                await conn.close()

        return asyncio.run(once())

    def __enter__(self) -> StoreWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_for(self, done: Any, timeout: float) -> Sample:
        """The first sample (from now on) for which `done(sample)` holds."""
        deadline = time.monotonic() + timeout
        seen = len(self.samples)
        while True:
            for sample in self.samples[seen:]:
                if done(sample):
                    return sample
            seen = len(self.samples)
            assert time.monotonic() < deadline, self.samples[-5:]
            time.sleep(self._interval / 2)


def holders(samples: Sequence[Sample]) -> Iterator[str]:
    """The lease holders in the order they held it."""
    last = None
    for sample in samples:
        if sample.holder is not None and sample.holder != last:
            last = sample.holder
            yield sample.holder
