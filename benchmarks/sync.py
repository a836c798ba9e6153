"""Sync mode against the fake Jamf with upstream latency: the sync, and decisions from the store.

    .venv/bin/python -m benchmarks.sync [--devices N] [--latency SECONDS] [--decisions N]

The fake Jamf runs in its own process (``python -m tests.fakes.jamf --computers N --latency S``)
so its inventory and CPU stay out of our figures; it counts requests and the most it ever had in
flight. Figures, for a SQLite store and for a throwaway PostgreSQL cluster (`tests.postgres`):

- the sync: seconds, devices/s, upstream requests, peak connections at the fake, and this
  process's RSS (peak during the sync, and after it);
- decision latency (parse + decide, as the webhook handler runs them) answered from the store,
  p50 and p99, against two references measured in the same run: the store's own ``find_device``
  (the raw read a decision makes) and a live lookup decision against the same fake (no cache).

Bounded in count and time; only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector import stepca
from connector.decision import decide
from connector.logs import configure_logging
from connector.lookup import ProviderChain, decode_answer, encode_answer
from connector.models import WebhookRequest
from connector.settings import WebhookSettings, settings_from_mapping
from connector.store import Store, StoreSettings, open_store
from connector.sync import SyncedProvider, Syncer
from providers.base import Provider
from providers.jamf import JamfProvider, JamfSettings
from providers.sync_options import SyncOptions
from tests.postgres import postgres_cluster

SECRET = "cG9zdHVyZS1jb25uZWN0b3IgYmVuY2htYXJrIHNlY3JldCBrZXkgbWF0ZXJpYWwhISEhISEhISEhISEhIQ=="
HOOK_ID = "00000000-0000-4000-8000-00000000beef"
OPTIONS = SyncOptions(mode="sync", sync_interval=900, max_staleness=7200)


@dataclass
class SyncFigures:
    """What one sync into one backend cost."""

    backend: str
    seconds: float
    devices: int
    requests: int
    peak_connections: int
    rss_before: float
    rss_peak: float
    rss_after: float


@contextlib.contextmanager
def fake_jamf(devices: int, latency: float) -> Iterator[str]:
    """The fake Jamf in a child process; yields its URL."""
    command = [
        sys.executable,
        "-m",
        "tests.fakes.jamf",
        "--port",
        "0",
        "--computers",
        str(devices),
        "--latency",
        str(latency),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
    try:
        assert child.stdout is not None  # noqa: S101 - piped above
        line = child.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"the fake Jamf did not start: {line!r}")
        yield "http://" + line.split("http://", 1)[1].split()[0]
    finally:
        child.terminate()
        child.wait(timeout=30)


def fake_stats(url: str, *, reset: bool = False) -> dict[str, Any]:
    """The fake's request counters (and zero them when `reset`)."""
    if reset:
        request = urllib.request.Request(f"{url}/fake/reset", method="POST")  # noqa: S310 - loopback
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - loopback
        return {}
    with urllib.request.urlopen(f"{url}/fake/stats", timeout=10) as answer:  # noqa: S310 - loopback
        stats: dict[str, Any] = json.load(answer)
    return stats


def rss_mib() -> tuple[float, float]:
    """This process's resident set now and its peak since the last reset, in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def reset_peak_rss() -> None:
    """Start the peak-RSS count afresh (Linux: ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def jamf_table(url: str) -> dict[str, Any]:
    """``[providers.jamf]`` for the fake (its Macs only: it has no mobile devices)."""
    return {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "device_classes": "computers",
        "budget": 8.0,
        "read_timeout": 10.0,
    }


def jamf_settings(url: str) -> JamfSettings:
    return JamfSettings.model_validate(jamf_table(url))


def webhook(url: str) -> WebhookSettings:
    settings = settings_from_mapping(
        {
            "server": {"plain_http": True},
            "providers": {"jamf": jamf_table(url)},
            "webhooks": [
                {
                    "name": "people",
                    "kind": "ENRICHING",
                    "path": "/people",
                    "id": HOOK_ID,
                    "secret": SECRET,
                    "providers": ["jamf"],
                    "policy": {"managed": True},
                }
            ],
        }
    )
    return settings.webhooks[0]


async def sync_into(backend: str, store: Store, url: str) -> SyncFigures:
    """One whole sync of the fake into `store`."""
    provider = JamfProvider("jamf", jamf_settings(url))
    syncer = Syncer("jamf", provider, OPTIONS, store, replica="bench", encode=encode_answer)
    fake_stats(url, reset=True)
    reset_peak_rss()
    rss_before, _ = rss_mib()
    started = time.perf_counter()
    generation = await syncer.sync()
    seconds = time.perf_counter() - started
    stats = fake_stats(url)
    await provider.aclose()
    rss_after, rss_peak = rss_mib()
    return SyncFigures(
        backend,
        seconds,
        generation.devices,
        stats["requests"],
        stats["max_in_flight"],
        rss_before,
        rss_peak,
        rss_after,
    )


async def latencies(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    """Each call's seconds, one after another."""
    taken = []
    for call in calls:
        started = time.perf_counter()
        await call()
        taken.append(time.perf_counter() - started)
    return taken


def decisions(
    hook: WebhookSettings, provider: Provider, bodies: list[bytes]
) -> list[Callable[[], Awaitable[object]]]:
    """One parse + decide per body, as the handler runs them."""
    chain = ProviderChain([provider], budget=9.0)

    def one(body: bytes) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            request = WebhookRequest.model_validate_json(body)
            return await decide(hook, request, chain, now=request.timestamp)

        return run

    return [one(body) for body in bodies]


def p(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] * 1000


async def store_figures(
    backend: str, settings: StoreSettings, url: str, serials: list[str]
) -> tuple[SyncFigures, list[float], list[float]]:
    """Sync into the backend, then time decisions and raw reads from it."""
    store = await open_store(settings)
    try:
        figures = await sync_into(backend, store, url)
        synced = SyncedProvider("jamf", OPTIONS, store, decode=decode_answer, live=None)
        await synced.start()
        hook = webhook(url)
        bodies = [stepca.enriching_body(s) for s in serials]
        await latencies(decisions(hook, synced, bodies[:100]))  # warm-up
        decided = await latencies(decisions(hook, synced, bodies))
        keys = [f"serial:{s}" for s in serials]
        reads = await latencies([functools.partial(store.find_device, "jamf", k) for k in keys])
    finally:
        await store.aclose()
    return figures, decided, reads


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--live", type=int, default=200, help="live lookups for the reference")
    args = parser.parse_args()
    configure_logging("error", "json")
    chooser = random.Random(7)  # noqa: S311 - sampling, not crypto
    serials = [f"C0{chooser.randrange(args.devices):010d}" for _ in range(args.decisions)]
    serials[::10] = [f"C1{n:010d}" for n in range(len(serials[::10]))]  # 10 % unknown devices

    with fake_jamf(args.devices, args.latency) as url:
        live_provider = JamfProvider("jamf", jamf_settings(url))
        await live_provider.start()
        hook = webhook(url)
        live_bodies = [stepca.enriching_body(s) for s in serials[: args.live]]
        live = await latencies(decisions(hook, live_provider, live_bodies))
        await live_provider.aclose()
        results = []
        with tempfile.TemporaryDirectory() as folder:
            sqlite = StoreSettings(path=Path(folder) / "bench.sqlite3")
            results.append(await store_figures("sqlite", sqlite, url, serials))
        with postgres_cluster() as pg_url:
            postgres = StoreSettings(backend="postgresql", url=pg_url)
            results.append(await store_figures("postgresql", postgres, url, serials))

    live_p50, live_p99 = p(live, 0.5), p(live, 0.99)
    print(f"fake Jamf: {args.devices} computers, {args.latency * 1000:.0f} ms per request")
    print(
        f"reference: live lookup decision    p50 {live_p50:8.2f} ms  p99 {live_p99:8.2f} ms (1.00)"
    )
    for figures, decided, reads in results:
        name = figures.backend
        print(
            f"{name:10} sync: {figures.seconds:6.1f} s  {figures.devices / figures.seconds:7.0f} "
            f"devices/s  {figures.requests} upstream requests  "
            f"{figures.peak_connections} peak connection(s)  "
            f"RSS {figures.rss_before:.0f} MiB before, peak {figures.rss_peak:.0f} MiB, "
            f"after {figures.rss_after:.0f} MiB"
        )
        d50, d99, r50, r99 = p(decided, 0.5), p(decided, 0.99), p(reads, 0.5), p(reads, 0.99)
        print(
            f"{name:10} store read (find_device)   p50 {r50:8.3f} ms  p99 {r99:8.3f} ms "
            f"({r99 / live_p99:.4f} x live p99)"
        )
        print(
            f"{name:10} decision from the store  p50 {d50:8.3f} ms  p99 {d99:8.3f} ms "
            f"({d99 / live_p99:.4f} x live p99, {d99 / r99:.2f} x the store read)"
        )


if __name__ == "__main__":
    asyncio.run(main())
