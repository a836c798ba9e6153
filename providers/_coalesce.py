"""Concurrent callers asking for one key share one running call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from providers.base import ProviderError

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Coalescer(Generic[_K, _V]):
    """Runs one call per key at a time; everyone asking meanwhile awaits the same result.

    The call runs as its own task, so a caller cancelled by its budget does not cancel it for
    the others (each caller's wait is shielded). No caller's budget bounds it, so it has its own
    (`limit` seconds): past it the call is cancelled and its callers get a `ProviderError` of
    `provider`, rather than a call that never ends holding its connection for good. Results are
    not kept: cache them yourself.
    """

    def __init__(self, provider: str, *, limit: float) -> None:
        self._provider = provider
        self._limit = limit
        self._running: dict[_K, asyncio.Task[_V]] = {}

    async def run(self, key: _K, call: Callable[[], Awaitable[_V]]) -> _V:
        """The result of `call()` for `key`, shared with concurrent callers of the same key."""
        task = self._running.get(key)
        if task is None:

            async def wrapped() -> _V:
                scope = asyncio.timeout(self._limit)
                try:
                    async with scope:
                        return await call()
                except TimeoutError:
                    if not scope.expired():
                        raise
                    raise ProviderError(
                        self._provider, f"a shared call ran past its {self._limit:g}s limit"
                    ) from None

            task = asyncio.create_task(wrapped())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: _K, task: asyncio.Task[_V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller has gone

    async def aclose(self) -> None:
        """Cancel calls still running (at shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
