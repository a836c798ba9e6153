"""A fake Apple Business Manager API and Apple's OAuth token endpoint (the 2025 API).

Endpoints (one origin; Apple's are account.apple.com and api-business.apple.com)::

    POST /auth/oauth2/token                              client assertion -> bearer token (1 h)
    GET  /v1/orgDevices/{serial}                         {"data": orgDevice} or JSON:API 404
    GET  /v1/orgDevices/{serial}/assignedServer          {"data": mdmServer | null}
    GET  /v1/orgDevices?limit&cursor                     pages with meta.paging.nextCursor
    GET  /v1/mdmServers?limit&cursor
    GET  /v1/mdmServers/{id}/relationships/devices       device linkages ({type, id=serial})

The token endpoint checks what Apple documents: ``client_credentials`` with a JWT-bearer
``client_assertion`` signed ES256 by the API account's key (``kid``), ``iss`` = ``sub`` =
client id, ``aud`` = ``https://account.apple.com/auth/oauth2/v2/token``, a live ``exp`` at most
180 days after ``iat``, and ``scope=business.api``; it also refuses a replayed ``jti`` (?).
Error bodies follow JSON:API (``errors[].status/code/title/detail``); the 404 code for an
unknown serial and ``data: null`` for an unassigned device are assumptions (?).

Switches: `board` (faults, request log), `expire_tokens()`.

Run on its own (writes the API account key the example config reads)::

    python -m tests.fakes.abm --port 9447 --key-file /tmp/abm-key.pem
"""

from __future__ import annotations

import argparse
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from providers.abm._settings import AUDIENCE
from tests.fakes._upstream import FakeUpstream, switch_middleware

TOKEN_PATH = "/auth/oauth2/token"
CLIENT_ID = "BUSINESSAPI.9703f56c-10ce-4876-8f59-e78e5e23a152"
KEY_ID = "d136aa66-0c3b-4bd4-9892-c20e8db024ab"
MAX_ASSERTION_SECONDS = 180 * 24 * 3600

JAMF_SERVER = ("1F97349736CF4614A94F624E705841AD", "Jamf Pro Production", "MDM")
LEGACY_SERVER = ("2A08450847DF5725B05F735F816952BE", "Legacy MDM", "MDM")
CONFIGURATOR = ("3B19561958E06836C16F846F927A63CF", "Apple Configurator", "APPLE_CONFIGURATOR")

MAC = "C02ABMMAC001"
IPHONE = "F17ABMIPH002"
IPAD = "DMPABMIPD003"
UNASSIGNED = "C02ABMUNA004"
RELEASED = "C02ABMREL005"
APPLE_TV = "DY3ABMATV006"


def _device(
    serial: str,
    family: str,
    model: str,
    product_type: str,
    *,
    status: str = "ASSIGNED",
    released: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "orgDevices",
        "id": serial,
        "attributes": {
            "serialNumber": serial,
            "addedToOrgDateTime": "2025-04-30T22:05:14.192Z",
            "releasedFromOrgDateTime": released,
            "updatedDateTime": "2025-05-01T15:33:54.164Z",
            "deviceModel": model,
            "productFamily": family,
            "productType": product_type,
            "deviceCapacity": "512GB",
            "partNumber": "MRX33LL/A",
            "orderNumber": "1234567890",
            "color": "SPACE BLACK",
            "status": status,
            "orderDateTime": "2025-04-15T07:00:00Z",
            "imei": [],
            "meid": [],
            "purchaseSourceId": "1A2B3C",
            "purchaseSourceType": "APPLE",
        },
        "relationships": {
            "assignedServer": {
                "links": {
                    "self": f"/v1/orgDevices/{serial}/relationships/assignedServer",
                    "related": f"/v1/orgDevices/{serial}/assignedServer",
                }
            }
        },
        "links": {"self": f"/v1/orgDevices/{serial}"},
    }


def default_devices() -> dict[str, dict[str, Any]]:
    """The organisation's devices by serial."""
    devices = [
        _device(MAC, "Mac", "MacBook Pro (14-inch, M3, 2023)", "Mac15,3"),
        _device(IPHONE, "iPhone", "iPhone 15 Pro", "iPhone16,1"),
        _device(IPAD, "iPad", "iPad Air 11-inch (M2)", "iPad14,8"),
        _device(
            UNASSIGNED, "Mac", "MacBook Air (13-inch, M2, 2022)", "Mac14,2", status="UNASSIGNED"
        ),
        _device(
            RELEASED,
            "Mac",
            "MacBook Air (13-inch, M1, 2020)",
            "MacBookAir10,1",
            status="UNASSIGNED",
            released="2026-06-01T15:33:54.164Z",
        ),
        _device(APPLE_TV, "AppleTV", "Apple TV 4K", "AppleTV14,1"),
    ]
    return {d["id"]: d for d in devices}


def default_assignments() -> dict[str, str]:
    """Serial to the id of the device management service it is assigned to."""
    return {
        MAC: JAMF_SERVER[0],
        IPHONE: JAMF_SERVER[0],
        APPLE_TV: JAMF_SERVER[0],
        IPAD: LEGACY_SERVER[0],
    }


def _server(server: tuple[str, str, str]) -> dict[str, Any]:
    server_id, name, kind = server
    return {
        "type": "mdmServers",
        "id": server_id,
        "attributes": {
            "serverName": name,
            "serverType": kind,
            "createdDateTime": "2025-05-01T03:21:44.685Z",
            "updatedDateTime": "2025-05-01T03:21:46.284Z",
        },
        "relationships": {
            "devices": {"links": {"self": f"/v1/mdmServers/{server_id}/relationships/devices"}}
        },
    }


@dataclass
class FakeAbm:
    """In-memory organisation: one API account, device management services and devices."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    client_id: str = CLIENT_ID
    key_id: str = KEY_ID
    devices: dict[str, dict[str, Any]] = field(default_factory=default_devices)
    servers: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            s[0]: _server(s) for s in (JAMF_SERVER, LEGACY_SERVER, CONFIGURATOR)
        }
    )
    assignments: dict[str, str] = field(default_factory=default_assignments)
    token_lifetime: int = 3600
    board: FakeUpstream = field(default_factory=lambda: FakeUpstream(frozenset({TOKEN_PATH})))
    valid_tokens: set[str] = field(default_factory=set)
    used_jtis: set[str] = field(default_factory=set)
    token_requests: int = 0

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if it had expired."""
        self.valid_tokens.clear()

    def key_file(self, folder: Path, name: str = "abm-key.pem") -> Path:
        """Write the API account's private key as Apple Business Manager lets you download it."""
        path = folder / name
        path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path


FAKE: web.AppKey[FakeAbm] = web.AppKey("fake_abm", FakeAbm)

_CODES = {
    400: "PARAMETER_ERROR.INVALID",
    401: "NOT_AUTHORIZED",
    403: "FORBIDDEN_ERROR",
    404: "NOT_FOUND",
    429: "RATE_LIMIT_EXCEEDED",
}


def abm_error(status: int, detail: str) -> web.Response:
    """A JSON:API error body as the Apple Business Manager API answers it (?)."""
    body = {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": str(status),
                "code": _CODES.get(status, "UNEXPECTED_ERROR"),
                "title": "The request failed.",
                "detail": detail,
            }
        ]
    }
    return web.json_response(body, status=status)


def _oauth_error(error: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def token(request: web.Request) -> web.Response:
    """``POST /auth/oauth2/token``: client credentials with an ES256 client assertion."""
    fake = request.app[FAKE]
    fake.token_requests += 1
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type")
    if (
        form.get("client_assertion_type")
        != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ):
        return _oauth_error("invalid_request")
    if form.get("client_id") != fake.client_id:
        return _oauth_error("invalid_client", 401)
    try:
        decoded = jwt.decode(
            str(form.get("client_assertion", "")),
            ECKey.import_key(fake.key.public_key()),
            algorithms=["ES256"],
        )
    except (JoseError, ValueError):
        return _oauth_error("invalid_client", 401)
    claims, now = decoded.claims, time.time()
    issued, expires = claims.get("iat", 0), claims.get("exp", 0)
    if (
        decoded.header.get("kid") != fake.key_id
        or claims.get("iss") != fake.client_id
        or claims.get("sub") != fake.client_id
        or claims.get("aud") != AUDIENCE
        or not issued - 300 <= now < expires
        or expires - issued > MAX_ASSERTION_SECONDS
        or not claims.get("jti")
        or claims["jti"] in fake.used_jtis
    ):
        return _oauth_error("invalid_client", 401)
    fake.used_jtis.add(str(claims["jti"]))
    if form.get("scope") != "business.api":
        return _oauth_error("invalid_scope")
    value = "abm-" + secrets.token_urlsafe(32)
    fake.valid_tokens.add(value)
    body = {"access_token": value, "token_type": "Bearer", "expires_in": fake.token_lifetime}
    return web.json_response(body | {"scope": "business.api"})


def _authorized(request: web.Request, fake: FakeAbm) -> web.Response | None:
    if request.headers.get("Authorization", "").removeprefix("Bearer ") in fake.valid_tokens:
        return None
    return abm_error(401, "Authentication credentials are missing or invalid.")


def _page(request: web.Request, rows: list[dict[str, Any]], self_link: str) -> web.Response:
    """``limit`` (1..1000) and an opaque ``cursor``; ``meta.paging.nextCursor`` on all but the last."""
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("cursor", "0") or "0", 16)
    except ValueError:
        return abm_error(400, "The cursor or limit is invalid.")
    if not 1 <= limit <= 1000:
        return abm_error(400, "limit must be between 1 and 1000.")
    chunk = rows[offset : offset + limit]
    paging: dict[str, Any] = {"limit": limit}
    links = {"self": self_link}
    if offset + limit < len(rows):
        paging["nextCursor"] = format(offset + limit, "x")
        links["next"] = f"{self_link}?cursor={paging['nextCursor']}&limit={limit}"
    return web.json_response({"data": chunk, "links": links, "meta": {"paging": paging}})


async def org_device(request: web.Request) -> web.Response:
    """``GET /v1/orgDevices/{id}``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    found = fake.devices.get(request.match_info["id"])
    if found is None:
        return abm_error(404, "There is no resource of type 'orgDevices' with this id.")
    return web.json_response({"data": found, "links": {"self": request.path}})


async def assigned_server(request: web.Request) -> web.Response:
    """``GET /v1/orgDevices/{id}/assignedServer``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    serial = request.match_info["id"]
    if serial not in fake.devices:
        return abm_error(404, "There is no resource of type 'orgDevices' with this id.")
    server_id = fake.assignments.get(serial)
    data = fake.servers[server_id] if server_id is not None else None
    return web.json_response({"data": data, "links": {"self": request.path}})


async def org_devices(request: web.Request) -> web.Response:
    """``GET /v1/orgDevices``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    return refusal or _page(request, list(fake.devices.values()), "/v1/orgDevices")


async def mdm_servers(request: web.Request) -> web.Response:
    """``GET /v1/mdmServers``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    return refusal or _page(request, list(fake.servers.values()), "/v1/mdmServers")


async def server_devices(request: web.Request) -> web.Response:
    """``GET /v1/mdmServers/{id}/relationships/devices``."""
    fake = request.app[FAKE]
    refusal = _authorized(request, fake)
    if refusal is not None:
        return refusal
    server_id = request.match_info["id"]
    if server_id not in fake.servers:
        return abm_error(404, "There is no resource of type 'mdmServers' with this id.")
    rows = [
        {"type": "orgDevices", "id": serial}
        for serial, assigned in fake.assignments.items()
        if assigned == server_id
    ]
    return _page(request, rows, request.path)


def create_app(fake: FakeAbm) -> web.Application:
    """The fake's aiohttp application (token endpoint and API on one origin)."""
    middleware = switch_middleware(
        lambda r: r.app[FAKE].board, lambda status: abm_error(status, f"Injected fault {status}.")
    )
    app = web.Application(middlewares=[middleware])
    app[FAKE] = fake
    app.add_routes(
        [
            web.post(TOKEN_PATH, token),
            web.get("/v1/orgDevices", org_devices),
            web.get("/v1/orgDevices/{id}", org_device),
            web.get("/v1/orgDevices/{id}/assignedServer", assigned_server),
            web.get("/v1/mdmServers", mdm_servers),
            web.get("/v1/mdmServers/{id}/relationships/devices", server_devices),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fake on 127.0.0.1 and write the API account key it accepts."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.abm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9447)
    parser.add_argument("--key-file", type=Path, default=Path("abm-key.pem"))
    args = parser.parse_args(argv)
    fake = FakeAbm()
    key = fake.key_file(args.key_file.parent, args.key_file.name)
    print(
        f"fake Apple Business Manager on http://{args.host}:{args.port} "
        f"({len(fake.devices)} devices); API account key in {key}",
        flush=True,
    )
    web.run_app(create_app(fake), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
