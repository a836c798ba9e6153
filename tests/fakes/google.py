"""A fake Google OAuth token endpoint and Admin SDK Directory API (mobile devices).

Endpoints (one origin; Google's are oauth2.googleapis.com and admin.googleapis.com)::

    POST /token                                                  JWT-bearer grant -> access token
    GET  /admin/directory/v1/customer/{customerId}/devices/mobile   query, projection, paging

The token endpoint checks what Google checks: the RS256 signature and ``kid`` of the service
account key, ``iss``, ``aud`` (this endpoint's URL), a lifetime of at most an hour, a known
``sub`` and scopes the domain delegated to the client. The API serves ``my_customer`` or the
customer id, answers FULL or BASIC projections, pages with an opaque ``pageToken``, leaves the
``mobiledevices`` key out when nothing matches, matches ``serial:`` searches by prefix (Google's
search is loose; how loose is not documented (?)), and refuses non-admins with 403 ``forbidden``.

Switches: `board` (faults, request log), `expire_tokens()`, `rate_limited` (the next N API
requests answer 403 ``userRateLimitExceeded``, Google's throttling).

Run on its own (writes the service account key the example config reads)::

    python -m tests.fakes.google --port 9446 --key-file /tmp/google-sa.json
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
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from providers.google._settings import SCOPE
from tests.fakes._upstream import FakeUpstream, switch_middleware

TOKEN_PATH = "/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_EMAIL = "posture-connector@example-project.iam.gserviceaccount.com"
SUBJECT = "it-admin@example.com"
NON_ADMIN = "anika.sharma@example.com"
CUSTOMER = "C01b2c3d4"

IPHONE = "F17GGLIPH001"
IPHONE_TWIN = "F17GGLIPH0012"  # the loose search for IPHONE finds this one too
IPAD = "DMPGGLIPD002"
BLOCKED = "F17GGLBLK003"
EXCHANGE = "F17GGLEAS004"
PENDING = "F17GGLPND005"
DUPLICATE = "F17GGLDUP007"
NEVER_SYNCED = "F17GGLNEW008"
ANDROID = "R58GGLAND009"

BASIC_FIELDS = ("kind", "etag", "resourceId", "deviceId", "model", "status", "type")


def _device(
    number: int,
    serial: str,
    *,
    device_type: str = "IOS_SYNC",
    status: str = "APPROVED",
    model: str = "iPhone 15 Pro",
    os: str = "iOS 18.3.1",
    owner: tuple[str, str] = ("anika.sharma@example.com", "Anika Sharma"),
    last_sync: str = "2026-11-21T07:12:09.123Z",
    compromised: str = "No compromise detected",
) -> dict[str, Any]:
    """One mobile device as ``mobiledevices.list`` answers it with projection FULL."""
    return {
        "kind": "admin#directory#mobiledevice",
        "etag": f'"etag-{number}"',
        "resourceId": f"AFiQxQ8{number:04d}",
        "deviceId": f"ios-{number:04d}-{secrets.token_hex(4)}",
        "name": [owner[1]],
        "email": [owner[0]],
        "model": model,
        "os": os,
        "type": device_type,
        "status": status,
        "serialNumber": serial,
        "firstSync": "2025-01-10T09:00:00.000Z",
        "lastSync": last_sync,
        "userAgent": "Google Device Policy",
        "deviceCompromisedStatus": compromised,
        "manufacturer": "Apple Inc." if device_type != "ANDROID" else "Google",
    }


def default_devices() -> list[dict[str, Any]]:
    """A small fleet with every case the provider must tell apart."""
    ben = ("ben.ortiz@example.com", "Ben Ortiz")
    return [
        _device(1, IPHONE),
        _device(2, IPHONE_TWIN, owner=ben),
        _device(3, IPAD, model="iPad Air (5th generation)", os="iOS 18.2"),
        _device(4, BLOCKED, status="BLOCKED"),
        _device(5, EXCHANGE, device_type="GOOGLE_SYNC", os="iOS 17.6"),
        _device(6, PENDING, status="PENDING"),
        _device(7, DUPLICATE, last_sync="2026-06-01T10:00:00.000Z", owner=ben),
        _device(8, DUPLICATE, last_sync="2026-11-20T10:00:00.000Z"),
        _device(9, NEVER_SYNCED, last_sync="1970-01-01T00:00:00.000Z"),
        _device(10, ANDROID, device_type="ANDROID", model="Pixel 8", os="Android 14"),
        _device(11, "F17GGLJBK011", compromised="Compromised"),
    ]


@dataclass
class FakeGoogle:
    """In-memory Workspace customer: one service account, delegation, admins and devices."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    client_email: str = CLIENT_EMAIL
    delegated_scopes: set[str] = field(default_factory=lambda: {SCOPE})
    admins: set[str] = field(default_factory=lambda: {SUBJECT})
    users: set[str] = field(default_factory=lambda: {SUBJECT, NON_ADMIN})
    customers: frozenset[str] = frozenset({"my_customer", CUSTOMER})
    devices: list[dict[str, Any]] = field(default_factory=default_devices)
    token_lifetime: int = 3599
    rate_limited: int = 0
    board: FakeUpstream = field(default_factory=lambda: FakeUpstream(frozenset({TOKEN_PATH})))
    valid_tokens: dict[str, str] = field(default_factory=dict)
    token_requests: int = 0
    looping_pages: bool = False
    """Every page's ``nextPageToken`` points at the second page (a server whose pages loop)."""

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if it had expired."""
        self.valid_tokens.clear()

    def key_file(self, folder: Path, name: str = "google-sa.json") -> Path:
        """Write the service account's JSON key as the Cloud console downloads it."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        document = {
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        path = folder / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return path


FAKE: web.AppKey[FakeGoogle] = web.AppKey("fake_google", FakeGoogle)

_REASONS = {
    400: ("invalid", "INVALID_ARGUMENT"),
    401: ("authError", "UNAUTHENTICATED"),
    403: ("forbidden", "PERMISSION_DENIED"),
    404: ("notFound", "NOT_FOUND"),
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"),
}


def google_error(status: int, message: str, reason: str | None = None) -> web.Response:
    """An error as Google APIs answer it: ``{"error": {code, message, errors, status}}``."""
    default_reason, grpc = _REASONS.get(status, ("backendError", "INTERNAL"))
    detail = {"message": message, "domain": "global", "reason": reason or default_reason}
    body = {"error": {"code": status, "message": message, "errors": [detail], "status": grpc}}
    return web.json_response(body, status=status)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


async def token(request: web.Request) -> web.Response:
    """``POST /token`` with a JWT-bearer assertion signed by the service account."""
    fake = request.app[FAKE]
    fake.token_requests += 1
    form = await request.post()
    if form.get("grant_type") != GRANT_TYPE:
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ")
    try:
        decoded = jwt.decode(
            str(form.get("assertion", "")),
            RSAKey.import_key(fake.key.public_key()),
            algorithms=["RS256"],
        )
    except (JoseError, ValueError):
        return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
    claims = decoded.claims
    now = time.time()
    if decoded.header.get("kid") != fake.key_id or claims.get("iss") != fake.client_email:
        return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
    if claims.get("aud") != f"{request.url.origin()}{TOKEN_PATH}":
        return _oauth_error(400, "invalid_grant", "Invalid JWT: Failed audience check.")
    issued, expires = claims.get("iat", 0), claims.get("exp", 0)
    if not (expires - issued <= 3600 and issued - 300 <= now < expires):
        return _oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim.",
        )
    if claims.get("sub") not in fake.users:
        return _oauth_error(400, "invalid_grant", "Invalid email or User ID")
    if not set(str(claims.get("scope", "")).split()) <= fake.delegated_scopes:
        return _oauth_error(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not "
            "authorized for any of the scopes requested.",
        )
    value = "ya29." + secrets.token_urlsafe(32)
    fake.valid_tokens[value] = str(claims["sub"])
    return web.json_response(
        {"access_token": value, "expires_in": fake.token_lifetime, "token_type": "Bearer"}
    )


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


async def mobile_devices(request: web.Request) -> web.Response:
    """``mobiledevices.list``: ``query=serial:X`` (prefix), projection, maxResults, pageToken."""
    fake = request.app[FAKE]
    subject = fake.valid_tokens.get(
        request.headers.get("Authorization", "").removeprefix("Bearer ")
    )
    if subject is None:
        return google_error(401, "Request had invalid authentication credentials.")
    if fake.rate_limited > 0:
        fake.rate_limited -= 1
        return google_error(403, "Quota exceeded for quota metric.", "userRateLimitExceeded")
    if subject not in fake.admins:
        return google_error(403, "Not Authorized to access this resource/api")
    if request.match_info["customer"] not in fake.customers:
        return google_error(404, "Resource Not Found: customer")
    size = int(request.query.get("maxResults", "100"))
    if not 1 <= size <= 100:
        return google_error(400, "Invalid value for maxResults.", "invalid")
    rows = fake.devices
    query = request.query.get("query", "")
    if query:
        field_name, _, value = query.partition(":")
        if field_name != "serial" or not value:
            return google_error(400, f"Invalid query: {query}", "invalid")
        rows = [d for d in rows if d["serialNumber"].upper().startswith(value.rstrip("*").upper())]
    offset = 0
    if "pageToken" in request.query:
        try:
            offset = int(
                base64.urlsafe_b64decode(request.query["pageToken"]).decode().split(":")[1]
            )
        except (ValueError, IndexError):
            return google_error(400, "Invalid page token.", "invalid")
    chunk = [copy.deepcopy(d) for d in rows[offset : offset + size]]
    if request.query.get("projection", "BASIC").upper() != "FULL":
        chunk = [{k: v for k, v in d.items() if k in BASIC_FIELDS} for d in chunk]
    body: dict[str, Any] = {"kind": "admin#directory#mobiledevices", "etag": '"list-etag"'}
    if chunk:
        body["mobiledevices"] = chunk
    if offset + size < len(rows):
        body["nextPageToken"] = _page_token(size if fake.looping_pages else offset + size)
    return web.json_response(body)


def create_app(fake: FakeGoogle) -> web.Application:
    """The fake's aiohttp application (token endpoint and Directory API on one origin)."""
    middleware = switch_middleware(
        lambda r: r.app[FAKE].board,
        lambda status: google_error(status, f"Injected fault {status}."),
    )
    app = web.Application(middlewares=[middleware])
    app[FAKE] = fake
    app.add_routes(
        [
            web.post(TOKEN_PATH, token),
            web.get("/admin/directory/v1/customer/{customer}/devices/mobile", mobile_devices),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fake on 127.0.0.1 and write the service account key file it accepts."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.google", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9446)
    parser.add_argument("--key-file", type=Path, default=Path("google-sa.json"))
    args = parser.parse_args(argv)
    fake = FakeGoogle()
    key = fake.key_file(args.key_file.parent, args.key_file.name)
    print(
        f"fake Google on http://{args.host}:{args.port} ({len(fake.devices)} devices); "
        f"service account key in {key}",
        flush=True,
    )
    web.run_app(create_app(fake), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
