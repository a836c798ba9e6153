"""Webhook throughput and inventory memory, as ratios against baselines run in the same process.

    .venv/bin/python -m benchmarks.webhook [--requests N] [--devices N]

Figures:
- webhook calls/s over loopback (signature check, parse, lookup in a file inventory, which is
  never cached, policy, reply) against a `/healthz` baseline on the same server: the cost of our
  work over aiohttp's;
- in-process decision time against a bare HMAC of the same body;
- memory per inventory device (tracemalloc) against the CSV text it came from.

Bounded in count and time; only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import time
import tracemalloc
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from connector import create_app, stepca
from connector.decision import decide
from connector.lookup import ProviderChain
from connector.models import WebhookRequest
from connector.settings import settings_from_mapping
from providers.files import CsvSettings, FileProvider
from providers.identifiers import classify

SECRET = "cG9zdHVyZS1jb25uZWN0b3IgYmVuY2htYXJrIHNlY3JldCBrZXkgbWF0ZXJpYWwhISEhISEhISEhISEhIQ=="
HOOK_ID = "00000000-0000-4000-8000-00000000beef"
HEADER = "serial,managed,username,department,groups\n"


def write_inventory(path: Path, devices: int) -> None:
    """A CSV inventory of `devices` managed Macs."""
    rows = (f"C02B{i:08d},true,user{i},Dept {i % 40},All;Team {i % 25}\n" for i in range(devices))
    path.write_text(HEADER + "".join(rows), encoding="utf-8")


def config(inventory: Path, found_ttl: float) -> dict[str, Any]:
    return {
        "server": {"plain_http": True, "port": 0},
        "logging": {"level": "error"},
        "cache": {"found_ttl": found_ttl, "not_found_ttl": found_ttl},
        "providers": {"inv": {"kind": "csv", "path": str(inventory), "reload_interval": 0}},
        "webhooks": [
            {
                "name": "people",
                "kind": "ENRICHING",
                "path": "/people",
                "id": HOOK_ID,
                "secret": SECRET,
                "providers": ["inv"],
            }
        ],
    }


async def rate(
    session: aiohttp.ClientSession,
    url: str,
    calls: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
) -> float:
    """Requests per second for `calls`, `concurrency` at a time."""
    queue = list(calls)
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            body, headers = queue.pop()
            async with session.post(
                url, data=body, headers=headers, skip_auto_headers=["Content-Type"]
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"unexpected {response.status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(calls) / (time.perf_counter() - started)


async def http_figures(inventory: Path, requests: int, found_ttl: float) -> tuple[float, float]:
    from connector.logs import configure_logging  # noqa: PLC0415

    configure_logging("error", "json")
    app = create_app(settings_from_mapping(config(inventory, found_ttl)))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        bodies = [stepca.enriching_body(f"C02B{i % 1000:08d}") for i in range(requests)]
        calls = [(b, stepca.headers_for(b, webhook_id=HOOK_ID, secret_b64=SECRET)) for b in bodies]
        async with aiohttp.ClientSession() as session:
            await rate(
                session, str(server.make_url("/people")), calls[:200], concurrency=1
            )  # warm-up
            # /healthz via GET is the baseline; a POST to it would be a 405, so use GET here.
            started = time.perf_counter()
            for _ in range(requests):
                async with session.get(server.make_url("/healthz")) as response:
                    await response.read()
            baseline = requests / (time.perf_counter() - started)
            webhook = await rate(session, str(server.make_url("/people")), calls, concurrency=1)
    finally:
        await server.close()
    return baseline, webhook


async def decision_ratio(inventory: Path, rounds: int) -> tuple[float, float]:
    provider = FileProvider("inv", CsvSettings(kind="csv", path=inventory, reload_interval=0))
    await provider.start()
    settings = settings_from_mapping(config(inventory, 300))
    hook = settings.webhooks[0]
    chain = ProviderChain([provider], budget=settings.server.decision_budget)
    body = stepca.enriching_body("C02B00000042")
    key = hook.hmac_key
    started = time.perf_counter()
    for _ in range(rounds):
        hmac.new(key, body, hashlib.sha256).hexdigest()
    hmac_time = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        request = WebhookRequest.model_validate_json(body)
        await decide(hook, request, chain, now=request.timestamp)
    decide_time = (time.perf_counter() - started) / rounds
    await provider.aclose()
    classify("C02B00000042")
    return hmac_time, decide_time


async def memory_per_device(path: Path, devices: int) -> tuple[float, float]:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    provider = FileProvider("inv", CsvSettings(kind="csv", path=path, reload_interval=0))
    await provider.start()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    await provider.aclose()
    size = len(path.read_bytes())  # noqa: ASYNC240 - a benchmark, outside the timed part
    return used / devices, size / devices


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20_000)
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.csv"
        write_inventory(inventory, args.devices)
        base, webhook = await http_figures(inventory, args.requests, found_ttl=300)
        hmac_time, decide_time = await decision_ratio(inventory, 2000)
        per_device, csv_bytes = await memory_per_device(inventory, args.devices)
    print(f"baseline GET /healthz:           {base:8.0f} req/s (1.00)")
    print(
        f"webhook, file inventory:         {webhook:8.0f} req/s ({webhook / base:.2f} x baseline)"
    )
    print(f"HMAC of one body:                {hmac_time * 1e6:8.1f} us (1.00)")
    print(
        f"parse + decide (file inventory): {decide_time * 1e6:8.1f} us ({decide_time / hmac_time:.1f} x HMAC)"
    )
    print(
        f"inventory memory per device:     {per_device:8.0f} B ({per_device / csv_bytes:.1f} x its CSV bytes)"
    )


if __name__ == "__main__":
    asyncio.run(main())
