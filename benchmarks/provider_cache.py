"""What the lookup cache and request coalescing save against a slow upstream (the fake Jamf).

    .venv/bin/python -m benchmarks.provider_cache [--lookups N] [--latency SECONDS]

Figures, each a ratio against the uncached run in the same process:
- lookups per second for a working set of 20 devices looked up repeatedly, cache on vs off;
- upstream inventory requests for 50 concurrent lookups of one device, coalesced vs not.

The fake Jamf runs on 127.0.0.1 with an injected delay per inventory request; counts are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from aiohttp.test_utils import TestServer

from connector.logs import configure_logging
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from providers.identifiers import classify
from providers.jamf import JamfProvider, JamfSettings
from tests.fakes.jamf import FakeJamf, create_app

DEVICES = Path(__file__).resolve().parents[1] / "tests" / "fakes" / "jamf_devices.json"
SERIALS = ["C02FK3Q7MD6T", "C02XL0UNMGD1", "C02NOTPILOT1", "C02NULLSECT1", "F17ZK8XJN72Q"]


def settings(url: str) -> JamfSettings:
    return JamfSettings.model_validate(
        {
            "kind": "jamf",
            "url": url,
            "client_id": "posture-connector",
            "client_secret": "fake-secret",
            "device_classes": "computers",
        }
    )


def chain(provider: JamfProvider, ttl: float) -> ProviderChain:
    cache = AnswerCache(MemoryCache(1000), found_ttl=ttl, not_found_ttl=ttl)
    return ProviderChain([provider], cache, budget=8.0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    configure_logging("error", "json")

    fake = FakeJamf.from_file(DEVICES)
    fake.inject("slow", path="/api/v", times=None, delay=args.latency)
    server = TestServer(create_app(fake), host="127.0.0.1", port=0)
    await server.start_server()
    provider = JamfProvider("jamf", settings(str(server.make_url("")).rstrip("/")))
    await provider.start()
    ids = [classify(SERIALS[i % len(SERIALS)]) for i in range(args.lookups)]
    try:
        rates = {}
        for label, ttl in (("off", 0.0), ("on", 300.0)):
            lookups = chain(provider, ttl)
            started = time.perf_counter()
            for identifier in ids:
                await lookups.lookup(identifier)
            rates[label] = len(ids) / (time.perf_counter() - started)

        calls = {}
        for label, ttl in (("each its own", 0.0), ("coalesced", 300.0)):
            lookups = chain(provider, ttl)
            before = fake.count("/api/v1/computers-inventory") + fake.count(
                "/api/v4/computers-inventory"
            )
            if ttl == 0.0:
                # Without a shared task every caller asks; model that by separate chains.
                await asyncio.gather(
                    *(chain(provider, 0.0).lookup(classify(SERIALS[0])) for _ in range(50))
                )
            else:
                await asyncio.gather(*(lookups.lookup(classify(SERIALS[0])) for _ in range(50)))
            after = fake.count("/api/v1/computers-inventory") + fake.count(
                "/api/v4/computers-inventory"
            )
            calls[label] = after - before
    finally:
        await provider.aclose()
        await server.close()

    print(f"upstream latency per request:       {args.latency * 1000:.0f} ms")
    print(f"lookups/s, cache off (baseline):    {rates['off']:8.1f} (1.00)")
    print(
        f"lookups/s, cache on:                {rates['on']:8.1f} ({rates['on'] / rates['off']:.1f} x)"
    )
    print(f"upstream requests, 50 concurrent, each its own: {calls['each its own']:4d} (1.00)")
    print(
        f"upstream requests, 50 concurrent, coalesced:    {calls['coalesced']:4d} "
        f"({calls['coalesced'] / max(calls['each its own'], 1):.2f} x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
