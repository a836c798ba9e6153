"""Scaffolding the vendor provider tests share: a fake's base URL, providers made (and closed)
per test, and a serial identifier as the webhook passes it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from providers.identifiers import DeviceIdentifier, IdentifierKind, classify


class _Startable(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


ProviderT = TypeVar("ProviderT", bound=_Startable)


async def served_url(aiohttp_server: Any, app: web.Application) -> str:
    """Serve a fake's app on 127.0.0.1 (a free port) and return its base URL, no slash."""
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@contextlib.asynccontextmanager
async def providers_made(
    build: Callable[..., ProviderT],
) -> AsyncIterator[Callable[..., Awaitable[ProviderT]]]:
    """``make(start=True, **options)``: a provider from ``build(**options)``, started unless
    ``start=False``; every provider made is closed on exit."""
    made: list[ProviderT] = []

    async def make(*, start: bool = True, **options: Any) -> ProviderT:
        provider = build(**options)
        made.append(provider)
        if start:
            await provider.start()
        return provider

    try:
        yield make
    finally:
        for provider in made:
            await provider.aclose()


def serial(value: str) -> DeviceIdentifier:
    """A serial identifier as the webhook passes it."""
    return classify(value, frozenset({IdentifierKind.SERIAL}))
