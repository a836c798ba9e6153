"""File inventory load time, memory per device and lookup latency during a reload.

    .venv/bin/python -m benchmarks.inventory_load [--devices N] [--lookups N] [--dir DIR]

Generates a CSV and a JSON inventory of N devices (default 100,000; every column filled, ~220 /
~480 bytes per device) and measures, each in a fresh process so memory figures are honest:

- reference: `csv.reader` / `json.loads` alone over the same file, rows kept (the floor a
  pure-Python loader starts from), its time and its RSS growth per device;
- load: `FileProvider.start()` to ready (validation and index included), wall and CPU time (the
  worker process's CPU counted), RSS growth per device, then again after touching every page of
  the mapped image (the honest steady-state figure), and the image size per device;
- lookups: p99 of one lookup plus one event-loop pass, idle and while the same file reloads
  (worker parse and swap included), and their ratio.

Each figure is printed with its ratio against the reference of the same run, and each format
with the machine's load average around its runs: on a shared machine a wall time above the
CPU time is time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

COLUMNS = (
    "serial,udid,name,model,platform,os_version,managed,supervised,compliance,owner_type,"
    "last_contact,username,email,full_name,department,title,groups"
)
MODELS = ("MacBook Pro", "MacBook Air", "Mac mini", "iPhone 16", "iPad Pro")
PLATFORMS = ("macOS", "iOS", "iPadOS")
VERSIONS = ("14.7.1", "15.1", "15.2", "18.1", "18.2")
DEPARTMENTS = ("Finance", "Engineering", "Sales", "People", "IT")
GROUPS = ("All Devices", "MDA Pilot", "Engineering Macs", "Lost or Stolen", "Kiosk")


def _serial(i: int) -> str:
    return f"C02{i:09d}"


def _device(i: int, rnd: random.Random) -> dict[str, Any]:
    user = f"user{i}"
    return {
        "serial": _serial(i),
        "udid": f"00008110-{i:016X}",
        "name": f"Mac of {user}",
        "model": rnd.choice(MODELS),
        "platform": rnd.choice(PLATFORMS),
        "os_version": rnd.choice(VERSIONS),
        "managed": True,
        "supervised": rnd.random() < 0.5,
        "compliance": "compliant",
        "owner_type": "company",
        "last_contact": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i * 7 % 60:02d}Z",
        "user": {
            "username": user,
            "email": f"{user}@example.com",
            "full_name": f"User Number {i}",
            "department": rnd.choice(DEPARTMENTS),
            "title": "Engineer",
        },
        "groups": rnd.sample(GROUPS, 2),
    }


def generate(folder: Path, devices: int) -> tuple[Path, Path]:
    """Write `inventory.csv` and `inventory.json` with the same devices."""
    rnd = random.Random(1)  # noqa: S311 - made-up inventory, not secrets
    csv_path, json_path = folder / "inventory.csv", folder / "inventory.json"
    with csv_path.open("w", encoding="utf-8") as c, json_path.open("w", encoding="utf-8") as j:
        c.write(COLUMNS + "\n")
        j.write('{"devices": [\n')
        for i in range(devices):
            d = _device(i, rnd)
            u = d["user"]
            flat = [*(d[k] for k in list(d)[:11]), *u.values(), ";".join(d["groups"])]
            c.write(",".join(str(v).lower() if isinstance(v, bool) else v for v in flat) + "\n")
            j.write(("  " if i == 0 else ",\n  ") + json.dumps(d))
        j.write("\n]}\n")
    return csv_path, json_path


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child_reference(path: Path) -> dict[str, float]:
    """`csv.reader` / `json.loads` alone: every row or object built and kept, nothing validated.

    Garbage collection is off, as in the loader's worker: the fastest these parsers go.
    """
    gc.disable()
    before, started = _rss(), time.perf_counter()
    with path.open(encoding="utf-8", newline="") as f:
        parsed: Any = list(csv.reader(f)) if path.suffix == ".csv" else json.load(f)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss": _rss() - before, "rows": len(parsed)}


async def child_load(path: Path, lookups: int, devices: int) -> dict[str, float]:
    """Load through `FileProvider`, then time lookups idle and during a reload of the file."""
    from providers.files import CsvSettings, FileProvider, JsonSettings  # noqa: PLC0415
    from providers.identifiers import classify  # noqa: PLC0415

    kind = path.suffix[1:]
    settings = (CsvSettings if kind == "csv" else JsonSettings).model_validate(
        {"kind": kind, "path": path, "reload_interval": 0}
    )
    # No settle wait: the timed reload is the load itself, not a second of waiting before it.
    provider = FileProvider("inv", settings, settle_wait=0)
    gc.collect()
    before, cpu, started = _rss(), _cpu(), time.perf_counter()
    await provider.start()
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    rss = _rss() - before
    image = provider._index._buffer  # type: ignore[union-attr]
    view = memoryview(image)
    sum(view[:: os.sysconf("SC_PAGE_SIZE")])  # read one byte per page: all of it resident
    rss_touched = _rss() - before
    rnd = random.Random(2)  # noqa: S311 - which devices to look up

    async def timed() -> list[float]:
        # fresh identifiers each round (half of them unknown), so no decoded record is reused
        ids = [classify(_serial(rnd.randrange(devices * 2))) for _ in range(lookups)]
        out = []
        for identifier in ids:
            t = time.perf_counter()
            await provider.lookup(identifier)
            await asyncio.sleep(0)  # one loop pass: a blocked loop shows up here
            out.append(time.perf_counter() - t)
        return out

    idle = [t for _ in range(5) for t in await timed()]
    os.utime(path)  # a new mtime: the next poll reloads the same content
    reload = asyncio.create_task(provider.reload())
    during: list[float] = []
    while not reload.done():
        during.extend(await timed())
    swapped = await reload
    await provider.aclose()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss": rss,
        "rss_touched": rss_touched,
        "image": len(view),
        "devices": provider.device_count,
        "idle_p99": _p99(idle),
        "reload_p99": _p99(during),
        "reload_lookups": len(during),
        "swapped": float(swapped),
    }


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else float("nan")


def _run(*args: str) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "benchmarks.inventory_load", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--dir", type=Path, help="keep the generated files here")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, file = args.child[0], Path(args.child[1])
        if mode == "reference":
            result = child_reference(file)
        else:
            import structlog  # noqa: PLC0415

            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
            result = asyncio.run(child_load(file, args.lookups, args.devices))
        print(json.dumps(result))
        return
    with TemporaryDirectory() as temp:
        folder = args.dir or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        paths = generate(folder, args.devices)
        n = args.devices
        print(f"{n:,} devices, generated in {time.perf_counter() - started:.1f} s")
        for path in paths:
            size = path.stat().st_size
            load_before = os.getloadavg()[0]
            ref = _run("--child", "reference", str(path))
            load = _run(
                "--child", "load", str(path), "--devices", str(n), "--lookups", str(args.lookups)
            )
            parser_name = "csv.reader" if path.suffix == ".csv" else "json.loads"
            print(
                f"\n{path.suffix[1:].upper()}  {size / n:.0f} bytes/device in the file   "
                f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)"
            )
            print(
                f"  {parser_name} alone (reference):  {ref['seconds']:6.2f} s   "
                f"{ref['rss'] / n:6.0f} B RSS/device   (1.00)"
            )
            print(
                f"  FileProvider load to ready:     {load['seconds']:6.2f} s   "
                f"({load['seconds'] / ref['seconds']:.2f} x)   CPU {load['cpu']:.2f} s "
                "(worker included)"
            )
            print(
                f"  RSS per device after load:      {load['rss'] / n:6.0f} B   "
                f"({load['rss'] / max(ref['rss'], 1):.2f} x); every page touched: "
                f"{load['rss_touched'] / n:.0f} B ({load['rss_touched'] / max(ref['rss'], 1):.2f} x);"
                f" image {load['image'] / n:.0f} B"
            )
            print(
                f"  lookup p99 idle:                {load['idle_p99'] * 1e6:6.1f} us   (1.00)\n"
                f"  lookup p99 during a reload:     {load['reload_p99'] * 1e6:6.1f} us   "
                f"({load['reload_p99'] / load['idle_p99']:.2f} x; "
                f"{load['reload_lookups']:.0f} lookups, swapped={bool(load['swapped'])})"
            )


if __name__ == "__main__":
    main()
