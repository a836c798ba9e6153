"""Run a fake upstream (an aiohttp app) on 127.0.0.1 in a thread, for the synchronous e2e tests.

The connector under test is a child process; the fakes it calls (Entra and Graph, Intune's
validation service) must answer while a test blocks on step-ca or a SCEP client, so each gets
its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve `app` on a free port until the block ends; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()
    url: list[str] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        host, port = runner.addresses[0][:2]
        url.append(f"http://{host}:{port}")
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):  # pragma: no cover - a fake that cannot bind
        raise RuntimeError("the fake upstream did not start")
    try:
        yield url[0]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
