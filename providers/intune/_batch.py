"""Microsoft Graph JSON batching: many GETs in one request, throttled ones sent again.

Graph takes up to 20 requests per ``POST /$batch`` and throttles each of them on its own: a 429
(or 503, 504) comes back inside a 200 batch answer with its own ``Retry-After``. Those requests
go again in a later round, after the longest ``Retry-After`` they named (an exponential backoff
when none did), at most ``retries`` times and never past the deadline. Batches go
``concurrency`` at a time, so a sync keeps to a few connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from providers._http import RETRYABLE_STATUSES
from providers.base import ProviderError
from providers.intune._api import GraphApi, describe_error_document
from providers.intune._models import BatchAnswer, BatchItem
from providers.unicode import ascii_digits

log = structlog.get_logger("providers.intune")

MAX_BATCH = 20
"""Graph's limit of requests per ``$batch``."""


@dataclass(frozen=True, slots=True)
class BatchGet:
    """One GET to send inside a batch.

    Attributes:
        key: The caller's name for the answer (a user id, a device id).
        url: Relative to ``/v1.0/``, query included.
        headers: Headers of this request (``ConsistencyLevel``).
    """

    key: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


def retry_after(item: BatchItem) -> float | None:
    """A throttled answer's ``Retry-After`` in seconds (Graph sends seconds), if readable."""
    raw = next((v for k, v in item.headers.items() if k.lower() == "retry-after"), None)
    return float(raw) if raw is not None and ascii_digits(raw.strip()) else None


class Batcher:
    """Sends GETs 20 to a batch; see the module docstring."""

    def __init__(
        self,
        name: str,
        api: GraphApi,
        *,
        retries: int,
        backoff: float,
        concurrency: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._name = name
        self._api = api
        self._retries = retries
        self._backoff = backoff
        self._concurrency = asyncio.Semaphore(max(1, concurrency))
        self._sleep = sleep

    async def get_all(
        self, gets: Sequence[BatchGet], deadline: float, *, route: str
    ) -> dict[str, BatchItem]:
        """Each GET's answer by key: status 200 or 404; any other answer is a ProviderError."""
        answers: dict[str, BatchItem] = {}
        pending = list(gets)
        attempt = 0
        while pending:
            chunks = [pending[i : i + MAX_BATCH] for i in range(0, len(pending), MAX_BATCH)]
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._send(chunk, deadline)) for chunk in chunks]
            throttled: list[tuple[BatchGet, BatchItem]] = []
            for chunk, task in zip(chunks, tasks, strict=True):
                for get, item in zip(chunk, task.result(), strict=True):
                    if item.status in RETRYABLE_STATUSES:
                        throttled.append((get, item))
                    elif item.status in (200, 404):
                        answers[get.key] = item
                    else:
                        described = describe_error_document(item.status, item.body)
                        raise self._api.refusal(item.status, route, described)
            if not throttled:
                break
            attempt += 1
            pending = [get for get, _ in throttled]
            await self._wait(attempt, [item for _, item in throttled], deadline, route)
        return answers

    async def _wait(
        self, attempt: int, throttled: list[BatchItem], deadline: float, route: str
    ) -> None:
        """Sleep out the throttle before the next round, or fail when that is not allowed."""
        hinted = [s for s in map(retry_after, throttled) if s is not None]
        wait = max(hinted) if hinted else self._backoff * 2 ** (attempt - 1)
        failure = f"{route}: Graph throttled {len(throttled)} batched requests"
        if attempt > self._retries or time.monotonic() + wait >= deadline:
            raise ProviderError(self._name, failure)
        log.info(
            "provider.batch_throttled",
            provider=self._name,
            route=route,
            requests=len(throttled),
            attempt=attempt,
            wait=wait,
        )
        await self._sleep(wait)

    async def _send(self, chunk: Sequence[BatchGet], deadline: float) -> list[BatchItem]:
        """One ``POST /$batch``; the answers in the order of `chunk`."""
        body = {
            "requests": [
                {"id": str(n), "method": "GET", "url": f"/{get.url}", "headers": dict(get.headers)}
                for n, get in enumerate(chunk)
            ]
        }
        async with self._concurrency:
            answer = await self._api.post(
                "$batch", body, BatchAnswer, route="/v1.0/$batch", deadline=deadline
            )
        by_id = {item.id: item for item in answer.responses}
        missing = [str(n) for n in range(len(chunk)) if str(n) not in by_id]
        if missing:
            raise ProviderError(self._name, f"Graph's $batch answer lacks {len(missing)} requests")
        return [by_id[str(n)] for n in range(len(chunk))]
