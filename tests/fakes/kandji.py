"""A fake Kandji API: a real aiohttp app that speaks Kandji's device endpoints.

It keeps Kandji's quirks (from the vendor's API reference, api-docs.kandji.io): the device list
is a bare JSON array, ``serial_number`` matches substrings, ``limit`` is capped at 300 with
``offset`` paging, ``user`` is an object or ``""``, details flags are ``"True"`` strings and the
UDID is ``hardware_overview.udid`` on Macs but ``.uuid`` elsewhere. Errors use the
``{"detail": ...}`` body of Kandji's framework (the exact texts are not documented).

Endpoints::

    GET /api/v1/devices                    serial_number, platform, blueprint_id, limit, offset
    GET /api/v1/devices/{device_id}
    GET /api/v1/devices/{device_id}/details

Switches: `tokens` (accepted API tokens), `denied` (endpoint permissions the token lacks:
"Device list", "Device details"), `ignore_serial_filter` (answer every device), faults from
`tests.fakes._upstream`, and `requests` (the log).

Run it on its own to try a config without Kandji::

    python -m tests.fakes.kandji --port 9444
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes._upstream import FakeUpstream, switch_middleware

DEVICES = Path(__file__).with_name("kandji_devices.json")
TOKEN = "fake-kandji-token"
MAX_LIMIT = 300
_ERRORS = {
    401: "Invalid token.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    429: "Request was throttled.",
}


@dataclass
class FakeKandji(FakeUpstream):
    """The fake's state: devices (list fields plus a ``details`` object), tokens, switches."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    denied: set[str] = field(default_factory=set)
    ignore_serial_filter: bool = False

    @classmethod
    def from_file(cls, path: Path = DEVICES, **kwargs: Any) -> FakeKandji:
        """Load ``{"devices": [...]}`` (see `tests/fakes/kandji_devices.json`)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(devices=copy.deepcopy(document["devices"]), **kwargs)

    def find(self, device_id: str) -> dict[str, Any] | None:
        """The device with this id, if any."""
        return next((d for d in self.devices if d["device_id"] == device_id), None)


FAKE = web.AppKey("fake_kandji", FakeKandji)


def kandji_error(status: int) -> web.Response:
    """Kandji's error body for a status."""
    return web.json_response(
        {"detail": _ERRORS.get(status, "A server error occurred.")}, status=status
    )


def _guard(request: web.Request, permission: str) -> web.Response | None:
    fake = request.app[FAKE]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or header.removeprefix("Bearer ") not in fake.tokens:
        return kandji_error(401)
    if permission in fake.denied:
        return kandji_error(403)
    return None


def _listed(device: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in device.items() if k != "details"}


async def list_devices(request: web.Request) -> web.Response:
    """``GET /api/v1/devices``: filters, then ``offset``/``limit`` (at most 300)."""
    refused = _guard(request, "Device list")
    if refused is not None:
        return refused
    fake = request.app[FAKE]
    query = request.query
    try:
        limit = min(int(query.get("limit", str(MAX_LIMIT))), MAX_LIMIT)
        offset = int(query.get("offset", "0"))
    except ValueError:
        return web.json_response({"detail": "Invalid limit or offset."}, status=400)
    found = fake.devices
    serial = query.get("serial_number")
    if serial is not None and not fake.ignore_serial_filter:
        found = [d for d in found if serial.casefold() in (d.get("serial_number") or "").casefold()]
    for key in ("platform", "blueprint_id", "device_id"):
        if key in query:
            found = [d for d in found if d.get(key) == query[key]]
    return web.json_response([_listed(d) for d in found[offset : offset + limit]])


async def get_device(request: web.Request) -> web.Response:
    """``GET /api/v1/devices/{device_id}``."""
    refused = _guard(request, "Device ID")
    if refused is not None:
        return refused
    device = request.app[FAKE].find(request.match_info["device_id"])
    return kandji_error(404) if device is None else web.json_response(_listed(device))


async def device_details(request: web.Request) -> web.Response:
    """``GET /api/v1/devices/{device_id}/details``."""
    refused = _guard(request, "Device details")
    if refused is not None:
        return refused
    device = request.app[FAKE].find(request.match_info["device_id"])
    if device is None:
        return kandji_error(404)
    return web.json_response(copy.deepcopy(device.get("details") or {}))


def create_app(fake: FakeKandji) -> web.Application:
    """The fake Kandji API as an aiohttp application."""
    app = web.Application(middlewares=[switch_middleware(lambda r: r.app[FAKE], kandji_error)])
    app[FAKE] = fake
    app.add_routes(
        [
            web.get("/api/v1/devices", list_devices),
            web.get("/api/v1/devices/{device_id}", get_device),
            web.get("/api/v1/devices/{device_id}/details", device_details),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the fake on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.kandji")
    parser.add_argument("--port", type=int, default=9444)
    parser.add_argument("--devices", type=Path, default=DEVICES)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args(argv)
    fake = FakeKandji.from_file(args.devices, tokens={args.token})
    print(
        f"fake Kandji on http://127.0.0.1:{args.port} with {len(fake.devices)} devices",
        flush=True,
    )
    web.run_app(create_app(fake), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
