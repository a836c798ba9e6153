"""What watching costs: webhook calls/s with metrics and tracing off, metrics on, both on.

    .venv/bin/python -m benchmarks.observability [--requests N] [--rounds N]

Figures, as ratios against the run with everything off (same process, same inventory):
- signed webhook calls/s over loopback with ``[metrics]`` on (the default) and with tracing on
  as well (spans handed to an in-memory exporter, so the figure is the SDK's cost, not a
  network's);
- the time one ``GET /metrics`` scrape takes, against one webhook call.

Rounds alternate the three setups so that other load on the machine hits each alike; the
median of the rounds is printed. Bounded in count and time; only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from benchmarks.webhook import HOOK_ID, SECRET, config, rate, write_inventory
from connector import create_app, stepca
from connector.logs import configure_logging
from connector.settings import settings_from_mapping

SETUPS = ("off", "metrics", "metrics+tracing")


async def one_round(
    inventory: Path, setup: str, calls: list[tuple[bytes, dict[str, str]]], store: Path
) -> tuple[float, float]:
    """Calls/s for `setup`, and seconds per /metrics scrape (0 when metrics are off)."""
    mapping: dict[str, Any] = {
        **config(inventory, 300),
        "metrics": {"enabled": setup != "off"},
        "store": {"path": str(store)},
    }
    exporter = InMemorySpanExporter() if setup == "metrics+tracing" else None
    app = create_app(settings_from_mapping(mapping), span_exporter=exporter)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("/people"))
        async with aiohttp.ClientSession() as session:
            await rate(session, url, calls[:100], concurrency=1)  # warm-up
            per_second = await rate(session, url, calls, concurrency=1)
            scrape = 0.0
            if setup != "off":
                started = time.perf_counter()
                for _ in range(20):
                    async with session.get(server.make_url("/metrics")) as response:
                        await response.read()
                scrape = (time.perf_counter() - started) / 20
    finally:
        await server.close()
    if exporter is not None:
        exporter.clear()
    return per_second, scrape


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("error", "json")
    results: dict[str, list[float]] = {s: [] for s in SETUPS}
    scrapes: list[float] = []
    with TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.csv"
        write_inventory(inventory, 5000)
        bodies = [stepca.enriching_body(f"C02B{i % 1000:08d}") for i in range(args.requests)]
        calls = [(b, stepca.headers_for(b, webhook_id=HOOK_ID, secret_b64=SECRET)) for b in bodies]
        for index in range(args.rounds):
            for setup in SETUPS:
                store = Path(tmp) / f"store-{index}-{setup}.sqlite3"
                per_second, scrape = await one_round(inventory, setup, calls, store)
                results[setup].append(per_second)
                if setup == "metrics":
                    scrapes.append(scrape)
    base = statistics.median(results["off"])
    for setup in SETUPS:
        value = statistics.median(results[setup])
        print(f"webhook calls, {setup:16} {value:8.0f} req/s ({value / base:.2f} x off)")
    scrape = statistics.median(scrapes)
    print(
        f"one /metrics scrape:            {scrape * 1e3:8.2f} ms ({scrape * base:.1f} x one call)"
    )


if __name__ == "__main__":
    asyncio.run(main())
