"""The one boundary where every failure under a provider becomes `ProviderError`.

What crosses it::

    ProviderError / ProviderNotReady    passed through unchanged
    ExceptionGroup (concurrent calls)   its first ProviderError, else its first failure translated
    AnswerTooLarge                      ProviderError naming the limit (``max_answer_bytes``)
    httpx.HTTPError                     ProviderError naming the error class (never a URL or secret)
    TimeoutError of the budget          ProviderError "lookup exceeded its Ns budget"
    any other Exception (a bug)         ProviderError "unexpected <class>", traceback at debug

So the chain only ever sees `ProviderError` and fails closed, instead of answering step-ca 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import structlog

from providers._http._body import AnswerTooLarge
from providers.base import ProviderError, ProviderNotReady

log = structlog.get_logger("providers.http")


def translate(provider: str, error: BaseException) -> ProviderError:
    """The `ProviderError` that stands for `error` (see the module docstring)."""
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, BaseExceptionGroup):
        leaves = list(_leaves(error))
        chosen = next((e for e in leaves if isinstance(e, ProviderError)), None)
        return chosen or translate(provider, leaves[0])
    if isinstance(error, AnswerTooLarge):
        return ProviderError(
            provider, f"the answer is larger than max_answer_bytes ({error.limit} bytes)"
        )
    if isinstance(error, httpx.DecodingError):
        return ProviderError(provider, "the answer could not be decoded (bad Content-Encoding)")
    if isinstance(error, httpx.TimeoutException):
        return ProviderError(provider, f"timed out ({type(error).__name__})")
    if isinstance(error, httpx.TransportError):
        return ProviderError(provider, f"connection failed ({type(error).__name__})")
    if isinstance(error, httpx.HTTPError):
        return ProviderError(provider, f"HTTP failure ({type(error).__name__})")
    log.debug("provider.unexpected_error", provider=provider, exc_info=error)
    return ProviderError(provider, f"unexpected {type(error).__name__}")


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


@contextlib.contextmanager
def upstream_boundary(provider: str) -> Iterator[None]:
    """Translate every `Exception` raised inside into `ProviderError` (cancellation passes)."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        raise translate(provider, exc) from None


@contextlib.asynccontextmanager
async def bounded(provider: str, seconds: float) -> AsyncIterator[float]:
    """The error boundary plus a time budget for a whole lookup; yields the monotonic deadline."""
    deadline = time.monotonic() + seconds
    with upstream_boundary(provider):
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                yield deadline
        except TimeoutError:
            if not scope.expired():
                raise
            raise ProviderError(provider, f"lookup exceeded its {seconds:g}s budget") from None


@contextlib.contextmanager
def starting(provider: str) -> Iterator[None]:
    """Any failure while starting leaves the provider not ready, with the same message.

    Nothing is logged here: the service logs ``provider.not_ready`` once with this message.
    """
    try:
        yield
    except ProviderNotReady:
        raise
    except ProviderError as exc:
        raise ProviderNotReady(provider, exc.message) from None
