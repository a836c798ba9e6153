"""A fake Mosyle Manager API: a real aiohttp app that speaks Mosyle's v2 JSON-over-POST API.

Shaped after the API articles in Mosyle's console ("How to make a Request using the API",
"List Devices", "List Devices in Device Groups"): ``/login`` takes the API token and an admin
login and answers the JWT in the ``Authorization`` header; every other call is a POST with
``accessToken`` in the body and answers HTTP 200 ``{"status": "OK", "response": …}``;
``listdevices`` needs ``options.os`` and pages from 0, ``listdevicegroupsdevices`` from 1;
values are strings (flags ``"1"``/``"true"``, dates Unix seconds). What Mosyle does not
document is a knob here: the not-found answer (``DEVICES_NOTFOUND`` inside ``response``),
whether ``response`` is an object or a one-element list (`envelope`), and the login refusal.

Endpoints::

    POST /v2/login
    POST /v2/listdevices                os, serial_numbers, page, (specific_columns ignored)
    POST /v2/listdevicegroupsdevices    os, page

Switches: `access_tokens`, `admins`, `token_lifetime`, `expire_tokens()`, `page_size`,
`group_page_size`, `envelope`, `ignore_serial_filter`, faults from `tests.fakes._upstream`,
and `requests` (the log, request bodies included).

Run it on its own to try a config without Mosyle::

    python -m tests.fakes.mosyle --port 9446
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from tests.fakes._upstream import FakeUpstream, switch_middleware

DEVICES = Path(__file__).with_name("mosyle_devices.json")
ACCESS_TOKEN = "fake-mosyle-access-token"
EMAIL = "api@example.com"
PASSWORD = "fake-mosyle-password"
LOGIN = "/v2/login"
FAMILIES = ("mac", "ios", "tvos", "visionos")


@dataclass
class FakeMosyle(FakeUpstream):
    """The fake's state: devices and device groups per family, credentials, JWTs, switches."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=lambda: {ACCESS_TOKEN})
    admins: dict[str, str] = field(default_factory=lambda: {EMAIL: PASSWORD})
    token_lifetime: float = 24 * 3600.0
    jwt_exp: bool = True  # whether issued JWTs carry an exp claim
    jwts: dict[str, float] = field(default_factory=dict)
    page_size: int = 100
    group_page_size: int = 50
    envelope: Literal["object", "list"] = "object"
    ignore_serial_filter: bool = False
    exempt: frozenset[str] = frozenset({LOGIN})

    @classmethod
    def from_file(cls, path: Path = DEVICES, **kwargs: Any) -> FakeMosyle:
        """Load ``{"devices": [...], "groups": [...]}`` (see `tests/fakes/mosyle_devices.json`)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            devices=copy.deepcopy(document["devices"]),
            groups=copy.deepcopy(document["groups"]),
            **kwargs,
        )

    @property
    def logins(self) -> int:
        """How many login requests arrived (any answer)."""
        return self.count(LOGIN)

    def expire_tokens(self) -> None:
        """Make every issued JWT invalid, as if they had all expired."""
        self.jwts.clear()

    def issue(self) -> str:
        """A JWT-shaped token (unsigned: only its ``exp`` matters to a client)."""
        expires = time.time() + self.token_lifetime
        claims: dict[str, Any] = {"sub": EMAIL, "jti": secrets.token_hex(8)}
        if self.jwt_exp:
            claims["exp"] = int(expires)
        token = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "HS256", "typ": "JWT"}, claims)
        )
        token += "." + secrets.token_urlsafe(16)
        self.jwts[token] = expires
        return token


FAKE = web.AppKey("fake_mosyle", FakeMosyle)


def mosyle_error(status: int) -> web.Response:
    """The answer for an HTTP-level failure (Mosyle does not document these bodies)."""
    return web.json_response({"status": "ERROR", "info": f"HTTP {status}"}, status=status)


def _answer(fake: FakeMosyle, payload: dict[str, Any]) -> web.Response:
    body = payload if fake.envelope == "object" else [payload]
    return web.json_response({"status": "OK", "response": body})


async def login(request: web.Request) -> web.Response:
    """``POST /v2/login``: the JWT in the ``Authorization`` header, the user in the body."""
    fake = request.app[FAKE]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body.get("accessToken"):
        return web.json_response({"status": "ERROR", "info": "accessToken Required"}, status=401)
    if body["accessToken"] not in fake.access_tokens:
        return web.json_response({"status": "ERROR", "info": "Invalid accessToken"}, status=401)
    if fake.admins.get(body.get("email", "")) != body.get("password"):
        # A refused login still answers 200, just without a token.
        return web.json_response({"status": "ERROR", "info": "Invalid credentials"})
    response = web.json_response({"UserID": "9001", "email": body["email"]})
    response.headers["Authorization"] = f"Bearer {fake.issue()}"
    return response


async def _checked(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's ``options`` after the JWT and the body's access token were checked."""
    fake = request.app[FAKE]
    header = request.headers.get("Authorization", "")
    expires = (
        fake.jwts.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
    )
    if expires is None or expires <= time.time():
        return web.json_response({"status": "ERROR", "info": "Unauthorized"}, status=401)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("accessToken") not in fake.access_tokens:
        return web.json_response({"status": "ERROR", "info": "Invalid accessToken"})
    options = body.get("options")
    if not isinstance(options, dict) or options.get("os") not in FAMILIES:
        return _answer(fake, {"status": "MISSING_DATA", "info": "Missing key: os"})
    return options


async def list_devices(request: web.Request) -> web.Response:
    """``POST /v2/listdevices``: one family, optionally some serials, pages from 0."""
    fake = request.app[FAKE]
    options = await _checked(request)
    if isinstance(options, web.Response):
        return options
    found = [d for d in fake.devices if d["os"] == options["os"]]
    serials = options.get("serial_numbers")
    if isinstance(serials, str):
        serials = [s.strip() for s in serials.split(",")]
    if isinstance(serials, list) and not fake.ignore_serial_filter:
        wanted = {str(s).upper() for s in serials}
        found = [d for d in found if d.get("serial_number", "").upper() in wanted]
    page = int(options.get("page", 0))
    chosen = found[page * fake.page_size : (page + 1) * fake.page_size]
    if not chosen:
        return _answer(fake, {"status": "DEVICES_NOTFOUND", "info": "No devices found."})
    devices = copy.deepcopy(chosen)
    return _answer(
        fake,
        {
            "devices": devices,
            "rows": str(len(found)),
            "page_size": fake.page_size,
            "page": page + 1,
        },
    )


async def list_group_devices(request: web.Request) -> web.Response:
    """``POST /v2/listdevicegroupsdevices``: device groups with member UDIDs, pages from 1."""
    fake = request.app[FAKE]
    options = await _checked(request)
    if isinstance(options, web.Response):
        return options
    found = [g for g in fake.groups if g["os"] == options["os"]]
    page = max(int(options.get("page", 1)), 1)
    size = fake.group_page_size
    chosen = found[(page - 1) * size : page * size]
    groups = [
        {
            "id": g["id"],
            "name": g["name"],
            "device_numbers": str(len(g["deviceudids"])),
            "deviceudids": list(g["deviceudids"]),
        }
        for g in chosen
    ]
    payload = {"groups": groups, "rows": len(found), "page_size": size, "page": page}
    return web.json_response({"status": "OK", "response": [payload]})


def create_app(fake: FakeMosyle) -> web.Application:
    """The fake Mosyle Manager API as an aiohttp application."""
    app = web.Application(middlewares=[switch_middleware(lambda r: r.app[FAKE], mosyle_error)])
    app[FAKE] = fake
    app.add_routes(
        [
            web.post(LOGIN, login),
            web.post("/v2/listdevices", list_devices),
            web.post("/v2/listdevicegroupsdevices", list_group_devices),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the fake on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.mosyle")
    parser.add_argument("--port", type=int, default=9446)
    parser.add_argument("--devices", type=Path, default=DEVICES)
    args = parser.parse_args(argv)
    fake = FakeMosyle.from_file(args.devices)
    print(
        f"fake Mosyle Manager on http://127.0.0.1:{args.port}/v2 with {len(fake.devices)} devices "
        f"(access token {ACCESS_TOKEN!r}, admin {EMAIL!r})",
        flush=True,
    )
    web.run_app(create_app(fake), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
