"""Morning burst: thousands of distinct devices enrolling at once against a slow upstream.

    .venv/bin/python -m benchmarks.burst [--provider jamf|intune] [--devices N] [--in-flight N]
                                         [--latency SECONDS] [--classes computers|mobile|both]

The fake upstream (Jamf, or Graph for Intune) runs in its own process with `--devices` generated
devices and answers every inventory request after `--latency` seconds. The connector serves
signed AUTHORIZING calls on our listener; a client keeps `--in-flight` of them open, each for a
different device, so every call is a cache miss. Figures, in one run:

- the ceiling the connection limit allows: ``max_connections / latency`` upstream requests/s
  (5 / 0.05 s = 100), and, as the measured reference, a bare aiohttp client with the same
  connection limit sending the same kind of inventory request to the same fake;
- the connector: decisions/s, how each was answered (allowed, ``inventory-unavailable``, and how
  many of those were refused at once by the admission limit), upstream requests per decision and
  per second (as a ratio to both references), decision latency, and the most connections the
  fake saw open at once.

Loopback only; bounded by `--devices` (2,000 at 50 ms takes about half a minute for Jamf).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from benchmarks._config import HOOK_ID, SECRET, gate_config
from benchmarks._upstream import CLIENT_ID, CLIENT_SECRET, GRAPH_CLIENT_ID, TENANT, serial
from connector import create_app, stepca
from connector.app import PROVIDERS_STARTED
from connector.logs import configure_logging
from connector.server import make_listener, running
from connector.settings import settings_from_mapping
from providers.intune._api import DEVICE_SELECT
from providers.jamf._api import COMPUTER_SECTIONS

CONNECTIONS = 5
REFUSED = "refused at once"  # the admission message (providers/_http/_gate.py)


class Upstream:
    """The fake in a child process."""

    def __init__(self, kind: str, devices: int, latency: float, mobile_share: float) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - this benchmark's own child
            [
                sys.executable,
                "-m",
                "benchmarks._upstream",
                kind,
                "--devices",
                str(devices),
                "--latency",
                str(latency),
                "--mobile-share",
                str(mobile_share),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None  # noqa: S101 - PIPE above
        line = self.process.stdout.readline()
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.url}/_bench/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.url}/_bench/reset") as response:
            await response.read()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def provider_config(kind: str, url: str, classes: str) -> dict[str, Any]:
    if kind == "jamf":
        return {
            "kind": "jamf",
            "url": url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "device_classes": classes,
            "max_connections": CONNECTIONS,
        }
    return {
        "kind": "intune",
        "tenant_id": TENANT,
        "client_id": GRAPH_CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority_host": url,
        "graph_host": url,
        "max_connections": CONNECTIONS,
    }


def config(kind: str, url: str, classes: str) -> dict[str, Any]:
    return gate_config(provider_config(kind, url, classes), {"level": "error"})


async def token(session: aiohttp.ClientSession, kind: str, url: str) -> str:
    if kind == "jamf":
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
        form["client_secret"] = CLIENT_SECRET
        async with session.post(f"{url}/api/oauth/token", data=form) as response:
            return str((await response.json())["access_token"])
    form = {"grant_type": "client_credentials", "client_id": GRAPH_CLIENT_ID}
    form |= {"client_secret": CLIENT_SECRET, "scope": f"{url}/.default"}
    async with session.post(f"{url}/{TENANT}/oauth2/v2.0/token", data=form) as response:
        return str((await response.json())["access_token"])


def inventory_request(kind: str, url: str, index: int) -> tuple[str, list[tuple[str, str]]]:
    """The first request a lookup of device `index` makes, exactly as the provider sends it."""
    if kind == "jamf":
        params = [("section", s) for s in COMPUTER_SECTIONS]
        params += [("page", "0"), ("page-size", "100")]
        params.append(("filter", f'hardware.serialNumber=="{serial(index)}"'))
        return f"{url}/api/v4/computers-inventory", params
    return f"{url}/v1.0/deviceManagement/managedDevices", [
        ("$filter", f"serialNumber eq '{serial(index)}'"),
        ("$select", DEVICE_SELECT),
    ]


async def reference(kind: str, upstream: Upstream, requests: int, in_flight: int) -> float:
    """Inventory requests/s of a bare aiohttp client limited to `CONNECTIONS` connections."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Authorization": f"Bearer {await token(session, kind, upstream.url)}"}
        queue = list(range(requests))
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                url, params = inventory_request(kind, upstream.url, queue.pop())
                async with session.get(url, params=params, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"reference request answered {response.status}")

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return requests / (time.perf_counter() - started)


Answer = tuple[str, str, float]
"""(request id, allowed or the deny code, seconds)."""


async def burst(url: str, devices: int, in_flight: int) -> tuple[float, list[Answer]]:
    """Decide every device once, `in_flight` at a time; (seconds, answers)."""
    calls = []
    for i in range(devices):
        body = stepca.authorizing_body(serial(i))
        calls.append((body, stepca.headers_for(body, webhook_id=HOOK_ID, secret_b64=SECRET)))
    calls.reverse()
    answers: list[Answer] = []
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()

        async def worker() -> None:
            while calls:
                body, headers = calls.pop()
                sent = time.perf_counter()
                async with session.post(
                    f"{url}/gate", data=body, headers=headers, skip_auto_headers=["Content-Type"]
                ) as response:
                    reply = await response.json(content_type=None)
                answer = "allowed" if reply.get("allow") else reply["error"]["code"]
                answers.append((headers["X-Request-Id"], answer, time.perf_counter() - sent))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started, answers


class FailureLog(io.StringIO):
    """The log stream: the kind of each ``provider.lookup_failed``, by request id."""

    def __init__(self) -> None:
        self.failures: dict[str, str] = {}

    def write(self, text: str) -> int:
        for line in text.splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "provider.lookup_failed":
                error = str(event.get("error", ""))
                kind = "refused at once" if REFUSED in error else "failed (timeout or error)"
                self.failures[str(event.get("request_id"))] = kind
        return len(text)


async def loop_lag() -> list[float]:
    """How late a 10 ms timer fires, sampled until cancelled (the event loop's backlog)."""
    lags: list[float] = []
    try:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)
    except asyncio.CancelledError:
        return lags


def percentiles(values: list[float]) -> str:
    """p50, p99 and max in milliseconds."""
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)]
    return (
        f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    failure_log = FailureLog()
    configure_logging("warning", "json", stream=failure_log)
    upstream_kind = "jamf" if args.provider == "jamf" else "graph"
    # Every device exists in the classes searched: a Mac-only fleet for "computers".
    share = {"computers": 0.0, "mobile": 1.0, "both": 0.25}[args.classes]
    upstream = Upstream(upstream_kind, args.devices, args.latency, share)
    try:
        ceiling = CONNECTIONS / args.latency
        ref = await reference(upstream_kind, upstream, args.reference, args.in_flight)
        mapping = config(args.provider, upstream.url, args.classes)
        if args.budget is not None:
            mapping["providers"]["inv"]["budget"] = args.budget
        settings = settings_from_mapping(mapping)
        budget = float(getattr(settings.providers["inv"], "budget", 0.0))
        app = create_app(settings)
        listener = make_listener(settings.server)
        listener.bind()
        async with running(app, listener, settings), aiohttp.ClientSession() as session:
            await app[PROVIDERS_STARTED].wait()
            await upstream.reset(session)
            port = listener.addresses[0][1]
            lag = asyncio.create_task(loop_lag())
            cpu = time.process_time()
            seconds, answers = await burst(f"http://127.0.0.1:{port}", args.devices, args.in_flight)
            cpu = time.process_time() - cpu
            lag.cancel()
            lags = await lag
            stats = await upstream.stats(session)
    finally:
        upstream.close()

    outcome = {rid: failure_log.failures.get(rid, answer) for rid, answer, _ in answers}
    served = [t for rid, a, t in answers if a != "inventory-unavailable"]
    refused = [t for rid, _, t in answers if outcome[rid] == "refused at once"]
    requests = sum(n for route, n in stats["routes"].items() if "token" not in route)
    per_lookup = requests / max(len(served), 1)
    allows = ceiling / per_lookup
    rate = requests / seconds
    print(
        f"{args.provider}: {args.devices} distinct devices, {args.in_flight} in flight, upstream "
        f"answers in {args.latency * 1000:.0f} ms, max_connections {CONNECTIONS}, budget {budget:g}s"
    )
    print(
        f"ceiling, {CONNECTIONS} connections / {args.latency:g} s:    {ceiling:6.1f} upstream req/s (1.00)"
    )
    print(
        f"reference, bare aiohttp client:     {ref:6.1f} upstream req/s ({ref / ceiling:.2f} x ceiling)"
    )
    print(
        f"connector:                          {rate:6.1f} upstream req/s "
        f"({rate / ceiling:.2f} x ceiling, {rate / ref:.2f} x reference)"
    )
    print(
        f"decided from the inventory: {len(served)} of {len(answers)} in {seconds:.1f} s = "
        f"{len(served) / seconds:.1f}/s at {per_lookup:.2f} requests each; the connection "
        f"limit allows {allows:.1f}/s -> {len(served) / seconds / allows:.2f} x"
    )
    for answer, count in Counter(outcome.values()).most_common():
        print(f"  {answer:40} {count:6d}")
    print(f"latency, decided from the inventory: {percentiles(served)}")
    print(f"latency, refused at once:            {percentiles(refused)}")
    print(f"most connections open at the fake at once: {stats['max_connections']}")
    lags = sorted(lags) or [0.0]
    print(
        f"this process (connector and load generator): {cpu / seconds:.0%} of a core; event loop "
        f"lag p50 {statistics.median(lags) * 1000:.1f} ms, max {lags[-1] * 1000:.0f} ms"
    )
    print("upstream requests by route: " + json.dumps(stats["routes"], sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--provider", choices=("jamf", "intune"), default="jamf")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--classes", choices=("computers", "mobile", "both"), default="computers")
    parser.add_argument("--budget", type=float, help="the provider's budget (default: its own)")
    parser.add_argument("--reference", type=int, default=500, help="requests of the reference run")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
