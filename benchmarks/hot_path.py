"""Hot path: cache-hit decisions over plain HTTP against a bare aiohttp handler, load from `wrk`.

    .venv/bin/python -m benchmarks.hot_path [--seconds N] [--rounds N] [--connections N]
                                            [--inventory jamf|csv] [--event-loop auto|uvloop|asyncio]
                                            [--uvloop]
                                            [--without log,audit,metrics] [--floor]
                                            [--floor-parts parse,audit,log,metrics]
                                            [--floor-audit thread|process]
                                            [--floor-reader read_call|parse_body|sketch]
                                            [--floor-event-loop reference|uvloop|asyncio]
                                            [--floor-front stock|connector]

Two servers, each in its own process, get the same signed AUTHORIZING body from the same load
generator in one run:

- the reference: a bare aiohttp handler (stock `AppRunner` + `TCPSite`) that checks the HMAC of
  the body against the webhook secret, parses the JSON and answers ``{"allow": true}``;
- the connector (`posture-connector serve`'s listener and app, JSON logs at info to /dev/null, so
  every call writes its ``webhook.decision`` line) with a Jamf inventory whose answer is cached
  after the first call (``--inventory jamf``, the fake Jamf in the server's process), or a CSV
  file (``--inventory csv``, never cached: a direct index).

Figures: requests/s with `--connections` connections (`wrk`, one thread: a C load generator
that costs the servers little CPU, unlike a Python client on a 2-core machine), and the latency
of sequential calls on one connection (p50, p99), each as a ratio to the reference; the best of
`--rounds` runs of each server, taken in turns. Also the CPU time each server process spent
per call under load (Linux: from /proc; the median of the rounds), which other programs on a
shared machine disturb far less than the rates. Needs `wrk` (Debian: ``apt-get install wrk``).
Loopback only; about 4 x `--rounds` x `--seconds` (a minute by default).

`--floor` adds a third server: the work each cache-hit call requires (id, HMAC, strict parse,
timestamp window, answer lookup, log line, audit row, metrics) written straight into a bare
handler (`benchmarks._floor`), each part done the cheapest way found so far. Its ratio estimates
what a design on this stack reaches with that work (not a bound: a cheaper way to do a part
raises it); the connector's distance from it is roughly what its structure costs.
`--floor-parts` keeps only the named parts in it (the bare handler plus those parts): what each
part costs on its own. `--floor-audit process` inserts its audit rows in a writer process fed
through a pipe instead of on a thread (a design the connector does not use).
The floor reads the body with the connector's strict reader (`connector.call.read_call`);
`--floor-reader parse_body` with the pydantic model it stands for (as strict, dearer).
`--floor-reader sketch` reads it with an optimistic stand-in that checks less than the connector
must (`benchmarks._floor.sketch_read`), and `--floor-event-loop` runs the floor on another loop
than the bare handler's: both only raise the floor, to bound what any design reaches from above.
`--floor-front connector` serves the floor behind the connector's own listener (connection cap,
head deadline) and request middlewares, which every design must keep.

The connector runs on the event loop `serve` picks (`server.event_loop`, uvloop by default);
`--event-loop asyncio` runs it on asyncio's own loop instead. The reference servers run on asyncio's
loop, as a stock aiohttp handler does; `--uvloop` puts them on uvloop too (the ratio on equal loops).

`--without` shows what a part of every call costs by leaving it out of the connector (never
for a figure of the service itself): ``log`` logs at warning, so the ``webhook.decision`` line is
built but not written; ``audit`` drops entries instead of queueing them for the store;
``metrics`` sets ``[metrics] enabled = false``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks._config import HOOK_ID, SECRET, gate_config
from benchmarks._floor import AUDIT_WRITERS, READERS, serve_floor
from benchmarks._floor import PARTS as FLOOR_PARTS
from benchmarks._upstream import CLIENT_ID, CLIENT_SECRET, jamf_document, serial
from connector import create_app, stepca
from connector.app import PROVIDERS_STARTED
from connector.connection import install
from connector.errors import error_middleware
from connector.logs import configure_logging, request_context
from connector.persistence import PERSISTENCE
from connector.server import loop_factory, make_listener, running, settle_heap
from connector.settings import ServerSettings, settings_from_mapping
from connector.signing import decode_secret

DEVICE = serial(7)


# --- the servers (child processes) --------------------------------------------------------------


async def _bare(stop: asyncio.Future[None]) -> None:
    """The reference: HMAC of the body, JSON parse, a fixed allow."""
    key = decode_secret(SECRET)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Smallstep-Signature", "")):
            return web.json_response({"error": "signature"}, status=401)
        json.loads(body)
        return web.json_response({"allow": True})

    app = web.Application()
    app.router.add_post("/gate", handle)
    await _serve_on_free_port(app, stop)


async def _serve_on_free_port(app: web.Application, stop: asyncio.Future[None]) -> None:
    """Serve `app` with a stock runner on a free loopback port (printed) until `stop`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await stop
    await runner.cleanup()


async def _serve_behind_front(app: web.Application, stop: asyncio.Future[None]) -> None:
    """Serve `app` as `serve` serves the connector's (its listener, with the connection cap and
    head deadline, and its request middlewares) on a free loopback port (printed) until `stop`."""
    app.middlewares.extend([request_context, error_middleware])
    server = ServerSettings(port=0, plain_http=True)
    listener = make_listener(server)
    listener.bind()
    install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None  # noqa: S101 - set by setup()
    listener.start(runner.server)
    print(listener.addresses[0][1], flush=True)
    await stop
    await listener.drain(1.0)
    await runner.cleanup()


PARTS = ("log", "audit", "metrics")
"""What `--without` can leave out."""


def _connector_config(
    inventory: str, folder: Path, jamf_url: str, without: frozenset[str]
) -> dict[str, Any]:
    if inventory == "jamf":
        provider: dict[str, Any] = {
            "kind": "jamf",
            "url": jamf_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "device_classes": "computers",
        }
    else:
        path = folder / "inventory.csv"
        rows = "".join(f"{serial(i)},true,user{i},Group {i % 7}\n" for i in range(20_000))
        path.write_text("serial,managed,username,groups\n" + rows, encoding="utf-8")
        provider = {"kind": "csv", "path": str(path), "reload_interval": 0}
    level = "warning" if "log" in without else "info"
    mapping = gate_config(provider, {"level": level, "format": "json"})
    # The audit log as `serve` keeps it, in a fresh file: not one that grows run after run.
    mapping["store"] = {"path": str(folder / "store.sqlite3")}
    mapping["metrics"] = {"enabled": "metrics" not in without}
    return mapping


async def _connector(
    stop: asyncio.Future[None], inventory: str, without: frozenset[str], event_loop: str
) -> None:
    """The connector as `serve` runs it, logging JSON lines to /dev/null."""
    from tests.fakes.jamf import FakeJamf  # noqa: PLC0415 - only this child needs the fake
    from tests.fakes.jamf import create_app as jamf_app  # noqa: PLC0415

    fake = FakeJamf.from_document(jamf_document(20, 0.0), clients={CLIENT_ID: CLIENT_SECRET})
    jamf_runner = web.AppRunner(jamf_app(fake), access_log=None)
    await jamf_runner.setup()
    await web.TCPSite(jamf_runner, "127.0.0.1", 0).start()
    jamf_url = f"http://127.0.0.1:{jamf_runner.addresses[0][1]}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        open(  # noqa: ASYNC230 - set-up, before timing
            "/dev/null", "w", encoding="utf-8"
        ) as sink,
    ):
        mapping = _connector_config(inventory, Path(tmp), jamf_url, without)
        mapping["server"]["event_loop"] = event_loop
        configure_logging(mapping["logging"]["level"], "json", stream=sink)
        settings = settings_from_mapping(mapping)
        app = create_app(settings)
        if "audit" in without:
            app[PERSISTENCE].audit.record = _drop  # type: ignore[method-assign]
        listener = make_listener(settings.server)
        listener.bind()
        async with running(app, listener, settings):
            await app[PROVIDERS_STARTED].wait()
            settle_heap()  # as `serve` does
            print(listener.addresses[0][1], flush=True)
            await stop
    await jamf_runner.cleanup()


def _drop(entry: object) -> None:
    """`--without audit`: the audit writer's `record`, keeping nothing."""
    del entry


def child(kind: str, args: argparse.Namespace) -> None:
    """Serve until SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
        if kind == "bare":
            await _bare(stopped)
        elif kind == "floor":
            await serve_floor(
                stopped,
                _serve_behind_front if args.floor_front == "connector" else _serve_on_free_port,
                DEVICE,
                args.floor_parts,
                audit_writer=args.floor_audit,
                reader=args.floor_reader,
            )
        else:
            await _connector(stopped, args.inventory, args.without, args.event_loop)

    if kind == "connector":
        factory = loop_factory(args.event_loop)
    elif kind == "floor" and args.floor_event_loop != "reference":
        factory = loop_factory(args.floor_event_loop)
    else:
        factory = loop_factory("uvloop" if args.uvloop else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


# --- the load generator -------------------------------------------------------------------------


class Server:
    """A server child process."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        command = [sys.executable, "-m", "benchmarks.hot_path", "--child", kind]
        command += ["--inventory", args.inventory, "--event-loop", args.event_loop]
        command += ["--uvloop"] if args.uvloop else []
        command += ["--without", ",".join(sorted(args.without))]
        command += ["--floor-parts", ",".join(sorted(args.floor_parts))]
        command += ["--floor-audit", args.floor_audit]
        command += ["--floor-reader", args.floor_reader]
        command += ["--floor-event-loop", args.floor_event_loop]
        command += ["--floor-front", args.floor_front]
        self.process = subprocess.Popen(  # noqa: S603 - this benchmark's own child
            command, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None  # noqa: S101 - PIPE above
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/gate"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process so far (None where /proc is absent)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def _parts_of(known: tuple[str, ...]) -> Callable[[str], frozenset[str]]:
    """An argparse type: a comma-separated subset of `known`."""

    def parts(text: str) -> frozenset[str]:
        chosen = frozenset(p.strip() for p in text.split(",") if p.strip())
        unknown = chosen - set(known)
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown part {', '.join(sorted(unknown))} (choose from {', '.join(known)})"
            )
        return chosen

    return parts


def lua_script(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script that POSTs `body` with `headers`."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles in ms."""
    output = subprocess.run(  # noqa: S603 - wrk from PATH, fixed arguments
        [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    figures = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    figures["calls"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    for name, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", output):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        figures[f"p{name}"] = float(value) * scale
    return figures


def measure(servers: dict[str, Server], script: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Best of `--rounds` alternating runs per server: throughput with many connections, then
    the latency of sequential calls (the machine is shared: the best run is the least disturbed)."""
    best: dict[str, dict[str, float]] = {}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    for name, server in servers.items():
        wrk(server.url, script, 4, 1)  # warm-up: caches filled, code paths hot
        best[name] = {"rate": 0.0, "p50": float("inf"), "p99": float("inf")}
    for _ in range(args.rounds):
        for name, server in servers.items():
            before = server.cpu_seconds()
            loaded = wrk(server.url, script, args.connections, args.seconds)
            after = server.cpu_seconds()
            if before is not None and after is not None:
                cpu[name].append((after - before) / loaded["calls"])
            sequential = wrk(server.url, script, 1, args.seconds)
            figures = best[name]
            figures["rate"] = max(figures["rate"], loaded["rate"])
            figures["p50"] = min(figures["p50"], sequential["p50"])
            figures["p99"] = min(figures["p99"], sequential["p99"])
    for name, spent in cpu.items():
        if spent:
            best[name]["cpu"] = statistics.median(spent)
    return best


def check_allowed(url: str, body: bytes, headers: dict[str, str]) -> None:
    """The connector must answer allow for the body (else the figures measure a deny)."""
    import urllib.request  # noqa: PLC0415 - one request before timing

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        answer = json.loads(response.read())
    if answer.get("allow") is not True:
        raise RuntimeError(f"expected an allow, got {answer}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs; best counts")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--inventory", choices=("jamf", "csv"), default="jamf")
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the connector's server.event_loop (auto: uvloop, as serve runs it)",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the reference servers (bare, floor) on uvloop too",
    )
    parser.add_argument(
        "--without",
        type=_parts_of(PARTS),
        default=frozenset(),
        help=f"comma-separated parts left out of the connector ({', '.join(PARTS)})",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the floor: the work each call requires, in a bare handler",
    )
    parser.add_argument(
        "--floor-parts",
        type=_parts_of(FLOOR_PARTS),
        default=frozenset(FLOOR_PARTS),
        help=f"comma-separated parts the floor does beyond the bare handler ({', '.join(FLOOR_PARTS)}; "
        "default all, empty: none)",
    )
    parser.add_argument(
        "--floor-audit",
        choices=AUDIT_WRITERS,
        default="thread",
        help="where the floor inserts audit rows: on a thread (as the connector) or in a process",
    )
    parser.add_argument(
        "--floor-reader",
        choices=READERS,
        default="read_call",
        help="how the floor reads the body: read_call (the connector's strict reader), "
        "parse_body (the pydantic model, as strict) or sketch (an optimistic stand-in that "
        "checks less: the floor then over-estimates)",
    )
    parser.add_argument(
        "--floor-front",
        choices=("stock", "connector"),
        default="stock",
        help="how the floor is served: a stock runner, or behind the connector's listener and "
        "request middlewares (the connection cap, head deadline, request context, error mapping)",
    )
    parser.add_argument(
        "--floor-event-loop",
        choices=("reference", "uvloop", "asyncio"),
        default="reference",
        help="the floor's event loop (reference: the bare handler's, see --uvloop)",
    )
    parser.add_argument("--child", choices=("bare", "floor", "connector"), help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.child:
        child(args.child, args)
        return
    if shutil.which("wrk") is None:
        sys.exit("benchmarks.hot_path needs wrk on PATH (Debian: apt-get install wrk)")
    body = stepca.authorizing_body(DEVICE)
    headers = stepca.headers_for(body, webhook_id=HOOK_ID, secret_b64=SECRET)
    headers.pop("X-Request-Id")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body, headers), encoding="utf-8")
        servers = {"bare": Server("bare", args)}
        if args.floor:
            servers["floor"] = Server("floor", args)
        servers["connector"] = Server("connector", args)
        try:
            for server in servers.values():
                check_allowed(server.url, body, headers)
            best = measure(servers, script, args)
        finally:
            for server in servers.values():
                server.close()
        bare, ours = best["bare"], best["connector"]
    connector_loop = "asyncio" if args.event_loop == "asyncio" else "uvloop"
    loop = f"connector on {connector_loop}, reference on {'uvloop' if args.uvloop else 'asyncio'}"
    left_out = f"; connector without {', '.join(sorted(args.without))}" if args.without else ""
    print(
        f"signed AUTHORIZING call, {args.inventory} inventory "
        f"({'cached' if args.inventory == 'jamf' else 'direct index'}), plain HTTP, {loop}, wrk"
        + left_out
    )
    print(
        f"throughput, {args.connections} connections: bare {bare['rate']:8.0f} req/s (1.00)   "
        f"connector {ours['rate']:8.0f} req/s ({ours['rate'] / bare['rate']:.2f} x)"
    )
    if "cpu" in bare and "cpu" in ours:
        print(
            f"CPU per call under load (median):  bare {bare['cpu'] * 1e6:8.1f} us    (1.00)   "
            f"connector {ours['cpu'] * 1e6:8.1f} us    (bare/connector {bare['cpu'] / ours['cpu']:.2f})"
        )
    floor = best.get("floor")
    if floor is not None:
        cpu = (
            f"; CPU per call {floor['cpu'] * 1e6:.1f} us (bare/floor {bare['cpu'] / floor['cpu']:.2f})"
            if "cpu" in floor and "cpu" in bare
            else ""
        )
        parts = ", ".join(p for p in FLOOR_PARTS if p in args.floor_parts) or "none"
        if "audit" in args.floor_parts:
            parts += f"; audit rows inserted on a {args.floor_audit}"
        if "parse" in args.floor_parts and args.floor_reader != "read_call":
            parts += f"; read by {args.floor_reader}"
        if args.floor_event_loop != "reference":
            parts += f"; on {args.floor_event_loop}"
        if args.floor_front == "connector":
            parts += "; behind the connector's listener and middlewares"
        print(
            f"floor (required work, no structure; parts: {parts}): {floor['rate']:8.0f} req/s "
            f"({floor['rate'] / bare['rate']:.2f} x bare){cpu}; sequential p99 {floor['p99']:.3f} ms"
        )
    for p in ("p50", "p99"):
        print(
            f"sequential latency {p}:           bare {bare[p]:8.3f} ms    (1.00)   "
            f"connector {ours[p]:8.3f} ms    ({ours[p] / bare[p]:.2f} x)"
        )


if __name__ == "__main__":
    main()
