"""A fake Workspace ONE UEM API and token service: a real aiohttp app speaking their wire format.

Endpoints (both on one origin; the real token service is a separate regional host)::

    POST /connect/token                                  client_credentials -> bearer token (1 h)
    GET  /API/mdm/devices?searchby=Serialnumber&id=X     one device, or a JSON 404 (also Udid)
    GET  /API/mdm/devices/{id}/smartgroups               {"SmartGroup": [...]}
    GET  /API/mdm/devices/search?page=N&pagesize=M       {"Devices", "Page", "PageSize", "Total"}

Quirks reproduced: ids as ``{"Value": n}``, PascalCase fields, ``Platform`` "Apple"/"AppleOsX",
``Ownership`` "C"/"E"/"S", ``LastSeen`` without a zone, Mac UDIDs stored without dashes (?),
Basic authentication needing the ``aw-tenant-code`` header, XML unless JSON is accepted, and
204 for a search without results. Error bodies (``errorCode``, ``message``, ``activityId``) are
shaped after what clients report, not a published schema (?).

Switches: `board` (faults, request log, in-flight count), `expire_tokens()`, `other_device`
(answer a different device than asked, as a misread search would).

Run on its own::

    python -m tests.fakes.workspaceone --port 9445
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from aiohttp import web

from tests.fakes._upstream import FakeUpstream, switch_middleware

TOKEN_PATH = "/connect/token"
CLIENT_ID = "posture-connector"
CLIENT_SECRET = "fake-ws1-client-secret"
ADMIN = "api-reader"
ADMIN_PASSWORD = "fake-ws1-admin-password"
TENANT_CODE = "fake-aw-tenant-code"

MAC = "C02WS1MAC001"
MAC_UDID = "4A0C2B7E9A414D8CB3E271A9C0D4E812"  # stored without dashes
IPHONE = "F17WS1IPH002"
IPHONE_UDID = "00008110-000A1C2E3F40801E"
IPAD = "DMPWS1IPD003"
UNENROLLED = "C02WS1OFF004"
PENDING = "C02WS1PND005"
ODD_COMPLIANCE = "C02WS1ODD006"


def _device(
    number: int,
    serial: str,
    udid: str,
    *,
    platform: str = "AppleOsX",
    model: str = "MacBook Pro (14-inch, 2023)",
    os_version: str = "15.3.2",
    enrollment: str = "Enrolled",
    compliance: str = "Compliant",
    ownership: str = "C",
    user: tuple[str, str, str] | None = ("asharma", "anika.sharma@example.com", "Anika Sharma"),
    og: tuple[int, str] = (2661, "Engineering"),
    last_seen: str = "2026-11-21T08:08:09.460",
    supervised: bool = True,
) -> dict[str, Any]:
    """One device as ``GET /API/mdm/devices`` answers it."""
    user_ref: dict[str, Any] = {}
    if user is not None:
        user_ref = {"Id": {"Value": 217600 + number}, "Uuid": str(uuid.uuid4()), "Name": user[2]}
    return {
        "Udid": udid,
        "SerialNumber": serial,
        "MacAddress": "787B8A5D4304",
        "Imei": "",
        "EasId": "",
        "AssetNumber": "",
        "DeviceFriendlyName": f"{user[0] if user else 'shared'} {model} {serial[-4:]}",
        "LocationGroupId": {"Id": {"Value": og[0]}, "Uuid": str(uuid.uuid4()), "Name": og[1]},
        "LocationGroupName": og[1],
        "UserId": user_ref,
        "UserName": user[0] if user else "",
        "UserEmailAddress": user[1] if user else "",
        "Ownership": ownership,
        "PlatformId": {"Id": {"Value": 12 if platform == "AppleOsX" else 2}, "Name": platform},
        "Platform": platform,
        "ModelId": {"Id": {"Value": 2}, "Name": model},
        "Model": model,
        "OperatingSystem": os_version,
        "PhoneNumber": "",
        "LastSeen": last_seen,
        "EnrollmentStatus": enrollment,
        "ComplianceStatus": compliance,
        "CompromisedStatus": False,
        "LastEnrolledOn": "2026-03-06T16:49:28.780",
        "LastComplianceCheckOn": "0001-01-01T00:00:00.000",
        "IsSupervised": supervised,
        "Id": {"Value": 362500 + number},
        "Uuid": str(uuid.uuid4()),
    }


def default_devices() -> list[dict[str, Any]]:
    """A small fleet: managed Mac, iPhone and iPad, an unenrolled and two odd Macs."""
    return [
        _device(1, MAC, MAC_UDID),
        _device(
            2,
            IPHONE,
            IPHONE_UDID,
            platform="Apple",
            model="iPhone 15 Pro",
            os_version="18.3.1",
            og=(2662, "Sales"),
        ),
        _device(
            3,
            IPAD,
            "699975c7f9593a5605b298dff19492cbc59de72a",
            platform="Apple",
            model="iPad Pro (11-inch)",
            os_version="18.2",
            compliance="NonCompliant",
            ownership="E",
            user=("bkim", "bob.kim@example.com", "Bob Kim"),
            supervised=False,
        ),
        _device(4, UNENROLLED, "5B1D3C8FAB524E9DC4F382BAD1E5F923", enrollment="Unenrolled"),
        _device(
            5,
            PENDING,
            "6C2E4D90BC635FAED5049CBE2F60A034",
            compliance="PendingComplianceCheck",
            ownership="S",
            user=None,
            last_seen="0001-01-01T00:00:00.000",
        ),
        _device(6, ODD_COMPLIANCE, "7D3F5EA1CD746A0BE615ADCF3071B145", compliance="Quarantined"),
    ]


def default_smart_groups() -> dict[str, list[dict[str, Any]]]:
    """Smart groups by device id."""
    pilot = {"SmartGroupId": {"Value": 42}, "SmartGroupName": "MDA Pilot"}
    macs = {"SmartGroupId": {"Value": 7}, "SmartGroupName": "All Corporate Macs"}
    phones = {"SmartGroupId": {"Value": 9}, "SmartGroupName": "Corporate iPhones"}
    return {"362501": [macs, pilot], "362502": [phones, pilot], "362504": [macs]}


@dataclass
class FakeWorkspaceOne:
    """In-memory tenant: devices, smart groups, one OAuth client, one admin, one API key."""

    devices: list[dict[str, Any]] = field(default_factory=default_devices)
    smart_groups: dict[str, list[dict[str, Any]]] = field(default_factory=default_smart_groups)
    clients: dict[str, str] = field(default_factory=lambda: {CLIENT_ID: CLIENT_SECRET})
    admins: dict[str, str] = field(default_factory=lambda: {ADMIN: ADMIN_PASSWORD})
    tenant_code: str = TENANT_CODE
    token_lifetime: int = 3600
    other_device: bool = False
    omit_total: bool = False  # search pages without "Total"
    refusal_description: str | None = None
    """An ``error_description`` for a refused client; ``{secret}`` in it is replaced by the
    secret the form carried, URL-encoded (some token services echo the request they refuse)."""
    board: FakeUpstream = field(default_factory=lambda: FakeUpstream(frozenset({TOKEN_PATH})))
    valid_tokens: set[str] = field(default_factory=set)
    token_requests: int = 0

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if it had expired."""
        self.valid_tokens.clear()

    def find(self, searchby: str, value: str) -> dict[str, Any] | None:
        """The device whose alternate id equals `value` (case-insensitively, as stored)."""
        key = {"serialnumber": "SerialNumber", "udid": "Udid", "macaddress": "MacAddress"}.get(
            searchby.casefold()
        )
        if key is None:
            return None
        for device in self.devices:
            if str(device.get(key, "")).upper() == value.upper():
                return device
        return None


FAKE: web.AppKey[FakeWorkspaceOne] = web.AppKey("fake_workspaceone", FakeWorkspaceOne)


def ws1_error(status: int, message: str, code: int | None = None) -> web.Response:
    """An error as Workspace ONE's REST API answers it (?)."""
    body = {"errorCode": code or status, "message": message, "activityId": str(uuid.uuid4())}
    return web.json_response(body, status=status)


def _json(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """JSON when asked for; the API's default otherwise is XML."""
    if "json" not in request.headers.get("Accept", ""):
        return web.Response(
            status=status, text="<Device><Id>0</Id></Device>", content_type="application/xml"
        )
    return web.json_response(body, status=status)


async def token(request: web.Request) -> web.Response:
    """``POST /connect/token``: client credentials (in the form) for a bearer token."""
    fake = request.app[FAKE]
    fake.token_requests += 1
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    client_id = str(form.get("client_id", ""))
    if fake.clients.get(client_id) is None or fake.clients[client_id] != form.get("client_secret"):
        refusal = {"error": "invalid_client"}
        if fake.refusal_description is not None:
            echoed = quote_plus(str(form.get("client_secret", "")))
            refusal["error_description"] = fake.refusal_description.replace("{secret}", echoed)
        return web.json_response(refusal, status=400)
    value = "ws1-" + secrets.token_urlsafe(24)
    fake.valid_tokens.add(value)
    return web.json_response(
        {"access_token": value, "expires_in": fake.token_lifetime, "token_type": "Bearer"}
    )


def _authorized(request: web.Request, fake: FakeWorkspaceOne) -> web.Response | None:
    """None when the request carries a valid token, or Basic credentials with the API key."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        if auth.removeprefix("Bearer ") in fake.valid_tokens:
            return None
        return ws1_error(401, "The access token is invalid or has expired.", 1005)
    if auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ws1_error(401, "User credentials are invalid.", 1005)
        if request.headers.get("aw-tenant-code") != fake.tenant_code:
            return ws1_error(401, "The API key (aw-tenant-code) is invalid.", 1013)
        if fake.admins.get(user) is not None and fake.admins[user] == password:
            return None
        return ws1_error(401, "User credentials are invalid.", 1005)
    return ws1_error(401, "Authorization is required.", 1005)


async def device_by_alternate_id(request: web.Request) -> web.Response:
    """``GET /API/mdm/devices?searchby=...&id=...``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    searchby, value = request.query.get("searchby", ""), request.query.get("id", "")
    if searchby.casefold() not in ("serialnumber", "udid", "macaddress"):
        return ws1_error(422, f"Invalid searchby parameter '{searchby}'.")
    found = fake.find(searchby, value)
    if found is not None and fake.other_device:
        found = next(d for d in fake.devices if d is not found)
    if found is None:
        return ws1_error(404, "Device not found.", 404)
    return _json(request, found)


async def device_smart_groups(request: web.Request) -> web.Response:
    """``GET /API/mdm/devices/{id}/smartgroups``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    device_id = request.match_info["id"]
    if not any(str(d["Id"]["Value"]) == device_id for d in fake.devices):
        return ws1_error(404, "Device not found.", 404)
    return _json(request, {"SmartGroup": fake.smart_groups.get(device_id, [])})


async def search(request: web.Request) -> web.Response:
    """``GET /API/mdm/devices/search``: 0-based pages of at most 500; 204 when empty."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    page = int(request.query.get("page", "0"))
    size = min(int(request.query.get("pagesize", "500")), 500)
    chunk = fake.devices[page * size : (page + 1) * size]
    if not chunk:
        return web.Response(status=204)
    body = {
        "Devices": [copy.deepcopy(d) for d in chunk],
        "Page": page,
        "PageSize": size,
        "Total": len(fake.devices),
    }
    if fake.omit_total:
        del body["Total"]
    return _json(request, body)


def create_app(fake: FakeWorkspaceOne) -> web.Application:
    """The fake's aiohttp application."""
    middleware = switch_middleware(
        lambda r: r.app[FAKE].board, lambda status: ws1_error(status, f"Injected fault {status}.")
    )
    app = web.Application(middlewares=[middleware])
    app[FAKE] = fake
    app.add_routes(
        [
            web.post(TOKEN_PATH, token),
            web.get("/API/mdm/devices", device_by_alternate_id),
            web.get("/API/mdm/devices/search", search),
            web.get("/API/mdm/devices/{id}/smartgroups", device_smart_groups),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fake on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.workspaceone", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9445)
    args = parser.parse_args(argv)
    fake = FakeWorkspaceOne()
    print(
        f"fake Workspace ONE on http://{args.host}:{args.port} ({len(fake.devices)} devices)",
        flush=True,
    )
    web.run_app(create_app(fake), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
