"""A fake Microsoft Graph and Entra token endpoint: a small real aiohttp app with failure switches.

It reproduces the quirks the Intune provider must handle: AADSTS-style token errors, ``udid``
blanked in list answers (real only on a GET by id with ``$select``), ``department`` not a default
user property, group casts that need ``ConsistencyLevel: eventual`` and ``$count=true``, opaque
``$skiptoken`` paging, ``0001-01-01T00:00:00Z`` dates and string ``jailBroken``.

Switches on `FakeGraph`: `expire_tokens()` (next Graph call gets 401 InvalidAuthenticationToken),
`faults` (queued statuses with or without ``Retry-After``, optionally per path), `down` (every
request answers that status), `delay` / `token_delay` (slow answers), `page_size`, and
`udid_filter` (whether ``$filter=udid eq`` works), `ignore_filter` (list everything, as a
misbehaving filter would; Entra devices with the one asked for last) and `next_link_origin` (point nextLinks elsewhere); `page_size` pages
managed devices and groups alike. A `Fault` can carry a non-Graph `body` (HTML, cut JSON, another
shape, a false gzip encoding). `requests` logs every call and `token_fetches` counts token
requests, faulted ones included; `max_connections` is the most connections carrying Graph requests open at once.

For sync mode it lists users and Entra devices (``GET /users``, ``GET /devices`` without a filter,
paged) and answers JSON batches (``POST /$batch``, at most 20 requests): each request of a batch
goes through the same switches and log as a direct one (marked `RecordedRequest.batched`), so a
queued 429 lands inside the batch answer with its ``Retry-After``, as Graph throttles them one by
one. `FakeGraph.generated` builds a large tenant.

Run on its own::

    python -m tests.fakes.graph --port 8081 --devices tests/fakes/graph_devices.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from yarl import URL

_FILTER = re.compile(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*")
_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)


FaultBody = Literal["graph", "html", "malformed", "wrongshape", "badgzip"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued failure: the next request whose path contains `path` gets it.

    Attributes:
        status: HTTP status to answer.
        retry_after: ``Retry-After`` header value, or None to send none.
        path: Substring of the request path this fault waits for ("" = any request).
        body: ``graph`` (a Graph error body), ``html`` (a proxy's page), ``malformed`` (cut
            JSON), ``wrongshape`` (JSON of another shape) or ``badgzip`` (says gzip, is not).
        skip: How many matching requests to let through first.
    """

    status: int
    retry_after: str | None = None
    path: str = ""
    body: FaultBody = "graph"
    skip: int = 0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: HTTP method.
        path: URL path.
        query: Query parameters (last value wins).
        consistency_level: The ``ConsistencyLevel`` header, if sent.
        status: What the fake answered.
        batched: Whether it arrived inside a ``$batch`` (not as an HTTP request of its own).
        at: When it arrived (``time.monotonic()``).
    """

    method: str
    path: str
    query: dict[str, str]
    consistency_level: str | None
    status: int
    batched: bool = False
    at: float = 0.0


@dataclass
class FakeGraph:
    """In-memory tenant: app registrations, managed devices, users, groups, Entra devices."""

    tenant_id: str = "contoso.onmicrosoft.com"
    clients: dict[str, str] = field(default_factory=dict)
    certificates: dict[str, x509.Certificate] = field(default_factory=dict)
    managed_devices: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    memberships: dict[str, list[str]] = field(default_factory=dict)
    entra_devices: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 100
    token_lifetime: int = 3599
    udid_filter: bool = False
    ignore_filter: bool = False
    next_link_origin: str | None = None
    delay: float = 0.0
    token_delay: float = 0.0
    down: int | None = None
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    token_fetches: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    connections: set[asyncio.BaseTransport] = field(default_factory=set)
    max_connections: int = 0

    token_scopes: dict[str, str] = field(default_factory=dict)
    """The scope each issued token was granted for (the Intune SCEP fake checks it)."""

    @classmethod
    def generated(cls, devices: int, *, users: int, groups: int, tenant_id: str) -> FakeGraph:
        """A synthetic tenant: device n belongs to user n % users, user u to groups u % groups
        and (u + 1) % groups, each device registered in Entra and in group n % groups."""
        group_ids = [f"00000000-0000-4000-a000-{g:012x}" for g in range(groups)]
        user_ids = [f"00000000-0000-4000-b000-{u:012x}" for u in range(users)]
        fake = cls(tenant_id=tenant_id)
        fake.groups = [{"id": g, "displayName": f"Group {n}"} for n, g in enumerate(group_ids)]
        fake.users = [
            {
                "id": uid,
                "displayName": f"User {u}",
                "userPrincipalName": f"user{u}@example.com",
                "mail": f"user{u}@example.com",
                "department": f"Department {u % 7}",
                "jobTitle": "Engineer",
            }
            for u, uid in enumerate(user_ids)
        ]
        for u, uid in enumerate(user_ids):
            fake.memberships[uid] = sorted({group_ids[u % groups], group_ids[(u + 1) % groups]})
        for n in range(devices):
            entra = f"00000000-0000-4000-c000-{n:012x}"
            owner = n % users if users else None
            fake.managed_devices.append(
                {
                    "id": f"00000000-0000-4000-d000-{n:012x}",
                    "userId": user_ids[owner] if owner is not None else "",
                    "deviceName": f"iPhone {n}",
                    "serialNumber": f"F2{n:010d}",
                    "udid": f"00008110-{n:016X}",
                    "operatingSystem": "iOS",
                    "osVersion": "18.3.1",
                    "model": "iPhone 15 Pro",
                    "complianceState": "compliant",
                    "managementAgent": "mdm",
                    "managedDeviceOwnerType": "company",
                    "lastSyncDateTime": "2025-03-14T09:20:55Z",
                    "azureADDeviceId": entra,
                    "userPrincipalName": f"user{owner}@example.com" if owner is not None else "",
                    "isSupervised": True,
                    "jailBroken": "False",
                }
            )
            object_id = f"00000000-0000-4000-e000-{n:012x}"
            fake.entra_devices.append({"id": object_id, "deviceId": entra})
            fake.memberships[object_id] = [group_ids[n % groups]] if groups else []
        return fake

    def http_requests(self, fragment: str = "") -> list[RecordedRequest]:
        """Graph requests that were HTTP requests of their own (batches count once)."""
        return [r for r in self.graph_requests(fragment) if not r.batched]

    def batched(self, fragment: str = "") -> list[RecordedRequest]:
        """Graph requests that arrived inside a ``$batch``."""
        return [r for r in self.graph_requests(fragment) if r.batched]

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> FakeGraph:
        """Build from the JSON layout of ``graph_devices.json``."""
        return cls(
            tenant_id=document["tenant_id"],
            clients={c["client_id"]: c["client_secret"] for c in document.get("clients", [])},
            managed_devices=list(document.get("managedDevices", [])),
            users=list(document.get("users", [])),
            groups=list(document.get("groups", [])),
            memberships={k: list(v) for k, v in document.get("memberships", {}).items()},
            entra_devices=list(document.get("devices", [])),
        )

    @classmethod
    def from_file(cls, path: Path) -> FakeGraph:
        """Load ``graph_devices.json`` (or a file of the same layout)."""
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")))

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if it had expired."""
        self.valid_tokens.clear()

    def graph_requests(self, fragment: str = "") -> list[RecordedRequest]:
        """Logged Graph (``/v1.0``) requests whose path contains `fragment`."""
        return [r for r in self.requests if r.path.startswith("/v1.0/") and fragment in r.path]

    def count_connection(self, transport: asyncio.BaseTransport | None) -> None:
        """Note the connection a Graph request came on; forget the ones the client has closed."""
        self.connections = {t for t in self.connections if not t.is_closing()}
        if transport is not None:
            self.connections.add(transport)
        self.max_connections = max(self.max_connections, len(self.connections))

    def take_fault(self, path: str) -> Fault | None:
        """Pop the first queued fault that applies to `path` (or count down its `skip`)."""
        for position, fault in enumerate(self.faults):
            if fault.path in path:
                if fault.skip:
                    self.faults[position] = replace(fault, skip=fault.skip - 1)
                    return None
                del self.faults[position]
                return fault
        return None


FAKE_KEY: web.AppKey[FakeGraph] = web.AppKey("fake_graph", FakeGraph)
BATCHED_HEADER = "X-Fake-Batched"
"""Marks the fake's own loopback requests that answer one request of a ``$batch``."""
MAX_BATCH = 20


def graph_error(status: int, message: str, code: str | None = None) -> web.Response:
    """A Graph error body with innerError ids, as Graph sends it."""
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code or _ERROR_CODES.get(status, "UnknownError"),
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return web.json_response(body, status=status)


def token_error(status: int, error: str, code: int, text: str) -> web.Response:
    """An Entra OAuth error body (AADSTS code, trace and correlation ids)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": str(trace),
        "correlation_id": str(correlation),
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.json_response(body, status=status)


@web.middleware
async def _switches(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log the request, then apply delay, queued faults, `down` and token checks."""
    fake = request.app[FAKE_KEY]
    is_graph = request.path.startswith("/v1.0/")
    if is_graph:
        fake.count_connection(request.transport)
    if request.path.endswith("/oauth2/v2.0/token"):
        fake.token_fetches += 1
    arrived = time.monotonic()
    response = await _switched(request, handler, fake, is_graph=is_graph)
    fake.requests.append(
        RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            consistency_level=request.headers.get("ConsistencyLevel"),
            status=response.status,
            batched=request.headers.get(BATCHED_HEADER) == "1",
            at=arrived,
        )
    )
    return response


async def _switched(
    request: web.Request, handler: Handler, fake: FakeGraph, *, is_graph: bool
) -> web.StreamResponse:
    delay = fake.delay if is_graph else fake.token_delay
    if delay:
        await asyncio.sleep(delay)
    fault = fake.take_fault(request.path)
    status = fault.status if fault else fake.down
    if status is not None:
        response = _fault_body(status, fault.body if fault else "graph")
        if fault is not None and fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response
    if is_graph:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return graph_error(401, "Access token is empty.")
        if auth.removeprefix("Bearer ") not in fake.valid_tokens:
            return graph_error(401, "Access token has expired or is not yet valid.")
    return await handler(request)


def _fault_body(status: int, body: FaultBody) -> web.Response:
    if body == "html":
        page = "<html><body><h1>Forbidden</h1>Blocked by policy.</body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    if body == "malformed":
        return web.Response(
            status=status, text='{"value": [{"id": ', content_type="application/json"
        )
    if body == "wrongshape":
        return web.json_response({"value": "not a list", "access_token": 7}, status=status)
    if body == "badgzip":
        return web.Response(
            status=status,
            body=b'{"value": []}',
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    return graph_error(status, f"Fake fault {status}.")


# -- token endpoint -----------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    """``POST /{tenant}/oauth2/v2.0/token``: client secret or signed client assertion."""
    fake = request.app[FAKE_KEY]
    form = await request.post()
    tenant = request.match_info["tenant"]
    if tenant != fake.tenant_id:
        return token_error(
            400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check the tenant id."
        )
    if form.get("grant_type") != "client_credentials":
        return token_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    scope = str(form.get("scope", ""))
    if not scope.endswith("/.default"):
        return token_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier.",
        )
    client_id = str(form.get("client_id", ""))
    if client_id not in fake.clients and client_id not in fake.certificates:
        return token_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{fake.tenant_id}'.",
        )
    if "client_assertion" in form:
        refusal = _check_assertion(request, fake, client_id, form)
        if refusal is not None:
            return refusal
    elif fake.clients.get(client_id) != form.get("client_secret"):
        return token_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{client_id}'.",
        )
    value = "fake-" + secrets.token_urlsafe(24)
    fake.valid_tokens.add(value)
    fake.token_scopes[value] = scope
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": fake.token_lifetime,
            "ext_expires_in": fake.token_lifetime,
            "access_token": value,
        }
    )


def _check_assertion(
    request: web.Request, fake: FakeGraph, client_id: str, form: Any
) -> web.Response | None:
    cert = fake.certificates.get(client_id)
    if (
        form.get("client_assertion_type")
        != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ):
        return token_error(400, "invalid_request", 50027, "Invalid client_assertion_type.")
    if cert is None:
        return token_error(
            401, "invalid_client", 700027, "The application has no certificate credential."
        )
    thumbprint = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    try:
        decoded = jwt.decode(
            str(form["client_assertion"]),
            RSAKey.import_key(cert.public_key()),  # type: ignore[arg-type]
            algorithms=["PS256", "RS256"],
        )
    except (JoseError, ValueError):
        return token_error(
            401, "invalid_client", 700027, "Client assertion contains an invalid signature."
        )
    if decoded.header.get("x5t#S256") != thumbprint:
        return token_error(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not "
            "registered on application.",
        )
    claims = decoded.claims
    audience = f"{request.url.origin()}/{fake.tenant_id}/oauth2/v2.0/token"
    now = time.time()
    if claims.get("aud") != audience:
        return token_error(
            401, "invalid_client", 700021, "Client assertion audience claim does not match."
        )
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return token_error(
            401, "invalid_client", 700023, "Client assertion issuer and subject must be the app."
        )
    if not (claims.get("nbf", 0) - 300 <= now < claims.get("exp", 0)):
        return token_error(
            401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        )
    return None


# -- Graph ---------------------------------------------------------------------------------


def _select(item: dict[str, Any], select: str | None) -> dict[str, Any]:
    if not select:
        return dict(item)
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    return {k: item[k] for k in wanted if k in item}


def _parse_filter(raw: str | None, allowed: tuple[str, ...]) -> tuple[str, str] | web.Response:
    match = _FILTER.fullmatch(raw or "")
    if match is None:
        return graph_error(400, f"Invalid filter clause: {raw!r}.")
    prop, literal = match.group(1), match.group(2).replace("''", "'")
    if prop not in allowed:
        return graph_error(400, f"Filtering on property '{prop}' is not supported.")
    return prop, literal


async def managed_devices(request: web.Request) -> web.Response:
    """List managed devices; ``$filter`` on serialNumber (udid only if enabled), ``$select``."""
    fake = request.app[FAKE_KEY]
    allowed = ("serialNumber", "udid") if fake.udid_filter else ("serialNumber",)
    devices = fake.managed_devices
    if "$filter" in request.query:
        parsed = _parse_filter(request.query["$filter"], allowed)
        if isinstance(parsed, web.Response):
            return parsed
        prop, literal = parsed
        if not fake.ignore_filter:
            devices = [d for d in devices if str(d.get(prop, "")).upper() == literal.upper()]
    # Graph's quirk: list answers carry an empty udid whatever $select says.
    rows = [_select({**d, "udid": ""}, request.query.get("$select")) for d in devices]
    page = _page(request, fake, rows)
    if isinstance(page, web.Response):
        return page
    body: dict[str, Any] = {
        "@odata.context": f"{request.url.origin()}/v1.0/$metadata#deviceManagement/managedDevices",
        "@odata.count": len(rows),
        "value": page[0],
    }
    if page[1] is not None:
        body["@odata.nextLink"] = page[1]
    return web.json_response(body)


def _page(
    request: web.Request, fake: FakeGraph, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str | None] | web.Response:
    """One page of `rows` (``$top``, opaque ``$skiptoken``) and the nextLink to the rest."""
    skip = 0
    if "$skiptoken" in request.query:
        try:
            skip = int(base64.urlsafe_b64decode(request.query["$skiptoken"]).decode())
        except ValueError:
            return graph_error(400, "Invalid skip token.", code="Request_BadRequest")
    top = min(int(request.query.get("$top", "100")), 999, fake.page_size)
    if skip + top >= len(rows):
        return rows[skip : skip + top], None
    query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
    query["$skiptoken"] = base64.urlsafe_b64encode(str(skip + top).encode()).decode()
    link = request.url.with_query(query)
    if fake.next_link_origin is not None:
        link = URL(fake.next_link_origin).join(link.relative())
    return rows[skip : skip + top], str(link)


async def managed_device(request: web.Request) -> web.Response:
    """One managed device by id; the real ``udid`` only when ``$select`` asks for it."""
    fake = request.app[FAKE_KEY]
    device_id = request.match_info["id"]
    for device in fake.managed_devices:
        if device["id"] == device_id:
            select = request.query.get("$select", "")
            shown = device if "udid" in select.split(",") else {**device, "udid": ""}
            return web.json_response(_select(shown, select))
    return graph_error(404, f"Resource '{device_id}' not found.", code="ResourceNotFound")


def _find_user(fake: FakeGraph, key: str) -> dict[str, Any] | None:
    for user in fake.users:
        if user["id"] == key or user.get("userPrincipalName", "").lower() == key.lower():
            return user
    return None


async def user(request: web.Request) -> web.Response:
    """``/users/{id|upn}``; without ``$select`` only the default properties come back."""
    fake = request.app[FAKE_KEY]
    key = request.match_info["id"]
    found = _find_user(fake, key)
    if found is None:
        return graph_error(
            404,
            f"Resource '{key}' does not exist or one of its queried reference-property objects "
            "are not present.",
        )
    select = request.query.get("$select") or ",".join(_USER_DEFAULT)
    return web.json_response(_select(found, select))


async def devices(request: web.Request) -> web.Response:
    """Entra devices, ``$filter=deviceId eq '...'``; without a filter every device, paged."""
    fake = request.app[FAKE_KEY]
    if "$filter" not in request.query:
        return _listing(request, fake, fake.entra_devices, "devices")
    parsed = _parse_filter(request.query.get("$filter"), ("deviceId",))
    if isinstance(parsed, web.Response):
        return parsed
    _, literal = parsed

    def asked(device: dict[str, Any]) -> bool:
        return str(device.get("deviceId", "")).lower() == literal.lower()

    found = [d for d in fake.entra_devices if asked(d)]
    if fake.ignore_filter:  # every device, the one asked for last
        found = sorted(fake.entra_devices, key=asked)
    return web.json_response({"value": [_select(d, request.query.get("$select")) for d in found]})


async def member_of(request: web.Request) -> web.Response:
    """``/{users|devices}/{id}/transitiveMemberOf/microsoft.graph.group`` with paging."""
    fake = request.app[FAKE_KEY]
    kind, key = request.match_info["kind"], request.match_info["id"]
    if kind == "users":
        owner = _find_user(fake, key)
        object_id = owner["id"] if owner else None
    else:
        object_id = next((d["id"] for d in fake.entra_devices if d["id"] == key), None)
    if object_id is None:
        return graph_error(404, f"Resource '{key}' does not exist.")
    if (
        request.headers.get("ConsistencyLevel") != "eventual"
        or request.query.get("$count") != "true"
    ):
        return graph_error(
            400,
            "This query using an OData cast requires the ConsistencyLevel header set to "
            "'eventual' and $count=true.",
            code="Request_UnsupportedQuery",
        )
    by_id = {g["id"]: g for g in fake.groups}
    members = [by_id[g] for g in fake.memberships.get(object_id, []) if g in by_id]
    page = _page(request, fake, members)
    if isinstance(page, web.Response):
        return page
    body: dict[str, Any] = {
        "@odata.context": f"{request.url.origin()}/v1.0/$metadata#groups",
        "@odata.count": len(members),
        "value": [
            {"@odata.type": "#microsoft.graph.group", **_select(g, request.query.get("$select"))}
            for g in page[0]
        ],
    }
    if page[1] is not None:
        body["@odata.nextLink"] = page[1]
    return web.json_response(body)


def _listing(
    request: web.Request, fake: FakeGraph, items: list[dict[str, Any]], entity: str
) -> web.Response:
    """A paged collection answer with ``$select`` applied."""
    rows = [_select(item, request.query.get("$select")) for item in items]
    page = _page(request, fake, rows)
    if isinstance(page, web.Response):
        return page
    body: dict[str, Any] = {
        "@odata.context": f"{request.url.origin()}/v1.0/$metadata#{entity}",
        "value": page[0],
    }
    if page[1] is not None:
        body["@odata.nextLink"] = page[1]
    return web.json_response(body)


async def users(request: web.Request) -> web.Response:
    """``GET /users``: every user, paged; without ``$select`` only the default properties."""
    fake = request.app[FAKE_KEY]
    select = request.query.get("$select") or ",".join(_USER_DEFAULT)
    return _listing(request, fake, [_select(u, select) for u in fake.users], "users")


async def batch(request: web.Request) -> web.Response:
    """``POST /$batch``: each request answered by the fake itself, concurrently, in one reply."""
    try:
        document = await request.json()
    except ValueError:
        document = None
    requests = document.get("requests") if isinstance(document, dict) else None
    if not isinstance(requests, list):
        return graph_error(400, "Invalid batch payload.", code="BadRequest")
    if len(requests) > MAX_BATCH:
        return graph_error(400, f"The batch holds more than {MAX_BATCH} requests.")
    ids = [str(r.get("id")) for r in requests]
    if len(set(ids)) != len(ids):
        return graph_error(400, "Batch request ids must be unique.", code="BadRequest")
    origin = request.url.origin()
    headers = {"Authorization": request.headers.get("Authorization", ""), BATCHED_HEADER: "1"}
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(_one(session, origin, headers, r) for r in requests))
    return web.json_response({"responses": answers})


async def _one(
    session: aiohttp.ClientSession, origin: URL, headers: dict[str, str], item: dict[str, Any]
) -> dict[str, Any]:
    url = str(item.get("url", ""))
    target = URL(f"{origin}/v1.0/{url.lstrip('/')}", encoded=True)
    sent = {**headers, **{str(k): str(v) for k, v in (item.get("headers") or {}).items()}}
    async with session.request(str(item.get("method", "GET")), target, headers=sent) as answer:
        try:
            body = await answer.json(content_type=None)
        except ValueError:
            body = None
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after",)}
        return {
            "id": str(item.get("id")),
            "status": answer.status,
            "headers": {"Content-Type": "application/json", **kept},
            "body": body,
        }


def create_app(fake: FakeGraph) -> web.Application:
    """The fake's aiohttp application (token endpoint and Graph on one origin)."""
    app = web.Application(middlewares=[_switches])
    app[FAKE_KEY] = fake
    app.add_routes(
        [
            web.post("/{tenant}/oauth2/v2.0/token", token),
            web.get("/v1.0/deviceManagement/managedDevices", managed_devices),
            web.get("/v1.0/deviceManagement/managedDevices/{id}", managed_device),
            web.get("/v1.0/devices", devices),
            web.get(
                "/v1.0/{kind:users|devices}/{id}/transitiveMemberOf/microsoft.graph.group",
                member_of,
            ),
            web.get("/v1.0/users/{id}", user),
            web.get("/v1.0/users", users),
            web.post("/v1.0/$batch", batch),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fake Graph on 127.0.0.1 from a devices file."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.graph", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--devices",
        type=Path,
        default=Path(__file__).with_name("graph_devices.json"),
        help="JSON tenant: tenant_id, clients, managedDevices, users, groups, memberships, devices",
    )
    args = parser.parse_args(argv)
    fake = FakeGraph.from_file(args.devices)
    print(
        f"fake Graph for tenant {fake.tenant_id} on http://{args.host}:{args.port} "
        f"({len(fake.managed_devices)} managed devices)",
        flush=True,
    )
    web.run_app(create_app(fake), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
