"""When to try an upstream call again, and how long to wait first.

Pure: the client asks `next_wait` once per failed attempt and both checks the deadline against
and sleeps exactly the wait it got, so what is reported is what is taken.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from providers.unicode import ascii_digits

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if ascii_digits(raw):
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True, slots=True)
class Wait:
    """The pause before the next attempt.

    Attributes:
        seconds: How long to sleep.
        rate_limited: True when the upstream's ``Retry-After`` set it.
    """

    seconds: float
    rate_limited: bool


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits half to all of ``first * 2**(n-1)``.

    Attributes:
        first: The nominal first wait in seconds.
        jitter: Returns a number in [0, 1); injectable for tests.
        now: Wall clock for ``Retry-After`` dates.
    """

    first: float
    jitter: Callable[[], float] = random.random  # jitter, not crypto
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def next_wait(self, attempt: int, response: httpx.Response | None) -> Wait:
        """The wait after failed `attempt` (1-based); `Retry-After` wins when the answer has it."""
        if response is not None:
            hinted = retry_after_seconds(response, self.now())
            if hinted is not None:
                return Wait(hinted, rate_limited=True)
        exponential = self.first * 2 ** (attempt - 1)
        return Wait(exponential / 2 + self.jitter() * exponential / 2, rate_limited=False)
