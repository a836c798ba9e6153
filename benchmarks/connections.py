"""Connections: server memory per held connection, and answers during a silent-connection flood.

    .venv/bin/python -m benchmarks.connections [--held N] [--silent N] [--calls N]

Every figure is measured for our listener and, as the reference, for aiohttp's stock
`AppRunner` + `TCPSite` serving the same app (the stack before), each in its own server process:

- memory: server RSS growth per held keep-alive connection (one request answered, then idle),
  plain HTTP and TLS;
- flood: the server process limited to 1,024 file descriptors; `--silent` TCP connections that
  never send a byte are opened against the TLS port while a client keeps one established
  keep-alive connection. Signed webhook calls on that connection: p50/p99 latency while the
  flood is held, as a ratio to the same calls before it; then whether a *new* connection is
  served during the flood (else probed every 0.5 s, up to 15 s).

Loopback only; bounded (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
from aiohttp import web

from connector import create_app, stepca
from connector.app import PROVIDERS_STARTED
from connector.logs import configure_logging
from connector.server import loop_factory, make_listener, running
from connector.settings import settings_from_mapping
from connector.tls import ensure_dev_certificate, server_context

SECRET = "cG9zdHVyZS1jb25uZWN0b3IgYmVuY2htYXJrIHNlY3JldCBrZXkgbWF0ZXJpYWwhISEhISEhISEhISEhIQ=="
HOOK_ID = "00000000-0000-4000-8000-00000000beef"
SERIAL = "C02B00000042"
FD_LIMIT = 1024
BUDGET = 10.0  # step-ca's webhook timeout


# --- the server process ------------------------------------------------------------------------


def _config(folder: Path, *, tls: bool) -> dict[str, Any]:
    inventory = folder / "inventory.csv"
    inventory.write_text(f"serial,managed\n{SERIAL},true\n", encoding="utf-8")
    server: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "drain_period": 0}
    if tls:
        server |= {"dev_certificate": True, "dev_certificate_dir": str(folder / "tls")}
    else:
        server["plain_http"] = True
    return {
        "server": server,
        "logging": {"level": "error"},
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


async def _serve_child(stack: str, tls: bool, folder: Path) -> None:
    """Serve until stdin closes; print the port once ready."""
    configure_logging("error", "json")
    settings = settings_from_mapping(_config(folder, tls=tls))
    context = None
    if tls:
        paths, _ = ensure_dev_certificate(folder / "tls")
        context = server_context(paths, None)
    app = create_app(settings)
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if stack == "ours":
        listener = make_listener(settings.server)
        listener.bind()
        if context is not None:
            listener.use_tls(context)
        async with running(app, listener, settings):
            await app[PROVIDERS_STARTED].wait()
            print(listener.addresses[0][1], flush=True)
            await stdin_closed
        return
    runner = web.AppRunner(app, access_log=None)  # aiohttp's defaults, as `web.run_app` had
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    await app[PROVIDERS_STARTED].wait()
    print(site.port, flush=True)
    await stdin_closed
    await runner.cleanup()


class Server:
    """A server child process for one stack."""

    def __init__(self, stack: str, *, tls: bool, folder: Path) -> None:
        self.stack = stack
        self.tls = tls
        self.process = subprocess.Popen(  # noqa: S603 - this benchmark's own server child
            [sys.executable, "-m", "benchmarks.connections", "--child", stack, str(folder)]
            + (["--tls"] if tls else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # stock asyncio reports EMFILE loudly; not a figure
            text=True,
        )
        assert self.process.stdout is not None  # noqa: S101 - PIPE above
        self.port = int(self.process.stdout.readline())
        self.client_tls: ssl.SSLContext | None = None
        if tls:
            self.client_tls = ssl.create_default_context(cafile=str(folder / "tls" / "ca.crt"))

    def rss(self) -> int:
        """Resident memory in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        return int(kib) * 1024

    def close(self) -> None:
        assert self.process.stdin is not None  # noqa: S101 - PIPE above
        self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the client ------------------------------------------------------------------------------


async def _hold_one(server: Server) -> asyncio.StreamWriter:
    """A keep-alive connection that has had one answer (as a client's pool holds it)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        server.port,
        ssl=server.client_tls,
        server_hostname="localhost" if server.tls else None,
    )
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return writer


async def memory_per_connection(stack: str, tls: bool, held: int, folder: Path) -> float:
    """Server RSS growth per held connection, in bytes."""
    server = Server(stack, tls=tls, folder=folder)
    writers: list[asyncio.StreamWriter] = []
    try:
        writers += [await _hold_one(server) for _ in range(20)]  # warm-up: pools, caches
        await asyncio.sleep(0.5)
        before = server.rss()
        writers += [await _hold_one(server) for _ in range(held)]
        await asyncio.sleep(1.0)
        after = server.rss()
    finally:
        for writer in writers:
            writer.close()
        server.close()
    return (after - before) / held


async def _calls(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    """Latencies (s) of `count` sequential signed calls; each must be answered allow."""
    latencies = []
    for _ in range(count):
        body = stepca.enriching_body(SERIAL)
        headers = stepca.headers_for(body, webhook_id=HOOK_ID, secret_b64=SECRET)
        started = time.perf_counter()
        async with session.post(
            url, data=body, headers=headers, skip_auto_headers=["Content-Type"]
        ) as answer:
            payload = await answer.json()
        latencies.append(time.perf_counter() - started)
        if answer.status != 200 or payload.get("allow") is not True:
            raise RuntimeError(f"unexpected answer {answer.status} {payload}")
    return latencies


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def _fresh_call(server: Server, url: str) -> float | None:
    """Latency (s) of one signed call on a new connection, or None when it is not served."""
    connector = aiohttp.TCPConnector(ssl=server.client_tls or True, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            [latency] = await asyncio.wait_for(_calls(session, url, 1), timeout=2)
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            return None
    return latency


async def flood(stack: str, silent: int, calls: int, folder: Path) -> dict[str, Any]:
    """Calls on an established connection before and during a flood; recovery of new ones."""
    server = Server(stack, tls=True, folder=folder)
    url = f"https://localhost:{server.port}/people"
    sockets: list[asyncio.StreamWriter] = []
    try:
        connector = aiohttp.TCPConnector(ssl=server.client_tls or True, limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _calls(session, url, 20)  # warm-up, and the connection is established
            idle = await _calls(session, url, calls)
            flood_started = time.monotonic()
            for _ in range(silent):
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                sockets.append(writer)
            opened = time.monotonic() - flood_started
            held = await _calls(session, url, calls)
            # Still holding the established connection: its slot (or fd) is not for the probe.
            fresh = await _fresh_call(server, url)
            probed = time.monotonic()
            recovered: float | None = 0.0 if fresh is not None else None
            while recovered is None and time.monotonic() < probed + 15:
                await asyncio.sleep(0.5)
                if await _fresh_call(server, url) is not None:
                    recovered = time.monotonic() - probed
    finally:
        for writer in sockets:
            writer.close()
        server.close()
    return {"idle": idle, "held": held, "opened": opened, "fresh": fresh, "recovered": recovered}


async def main(held: int, silent: int, calls: int) -> None:
    """Run every figure for both stacks and print them with their ratios."""
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"memory per held keep-alive connection ({held} held, server RSS growth):")
        for tls in (False, True):
            stock = await memory_per_connection("stock", tls, held, folder)
            ours = await memory_per_connection("ours", tls, held, folder)
            label = "TLS  " if tls else "plain"
            print(
                f"  {label}: ours {ours / 1024:6.1f} KiB, aiohttp stock {stock / 1024:6.1f} KiB "
                f"-> {ours / stock:.2f}x"
            )
        print(
            f"\nflood: {silent} silent TCP connections against TLS, server fd limit {FD_LIMIT}; "
            f"{calls} signed calls on an established keep-alive connection:"
        )
        for stack in ("stock", "ours"):
            result = await flood(stack, silent, calls, folder)
            idle, during = result["idle"], result["held"]
            fresh, recovered = result["fresh"], result["recovered"]
            if fresh is not None:
                newcomer = f"a new connection is served ({fresh * 1000:.1f} ms)"
            elif recovered is not None:
                newcomer = f"a new connection is NOT served; again after {recovered:.1f} s"
            else:
                newcomer = "a new connection is NOT served for 15 s and more"
            print(
                f"  {stack:5}: idle p50 {_p(idle, 50):.2f} ms p99 {_p(idle, 99):.2f} ms; "
                f"flooded p50 {_p(during, 50):.2f} ms p99 {_p(during, 99):.2f} ms "
                f"-> {_p(during, 50) / _p(idle, 50):.2f}x / {_p(during, 99) / _p(idle, 99):.2f}x; "
                f"max {max(during) * 1000:.1f} ms (budget {BUDGET * 1000:.0f} ms); "
                f"flood opened in {result['opened']:.1f} s; {newcomer}"
            )


def _child(argv: list[str]) -> None:
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (FD_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
    stack, folder = argv[1], Path(argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    # Ours on the loop `serve` runs on (uvloop by default), the stock stack on asyncio's, as
    # `web.run_app` runs it.
    factory = loop_factory("auto" if stack == "ours" else "asyncio")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_child(stack, "--tls" in argv, folder))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[1:])
        os._exit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--held", type=int, default=300, help="connections held for the memory figure"
    )
    parser.add_argument("--silent", type=int, default=1000, help="silent connections in the flood")
    parser.add_argument("--calls", type=int, default=200, help="signed calls per latency sample")
    options = parser.parse_args()
    asyncio.run(main(options.held, options.silent, options.calls))
