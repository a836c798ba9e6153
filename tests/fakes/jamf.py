"""A fake Jamf Pro server: a real aiohttp app that speaks Jamf's wire format.

It serves the endpoints the provider uses, with Jamf's quirks (string ids, unrequested sections
as ``null``, case-insensitive RSQL, v4's ``lastContact``), and switches to inject faults. `latency`
delays every inventory answer (token requests excepted), as a remote Jamf would; `connections`
and `max_connections` count the client's open connections, `max_in_flight` its concurrent requests;
`indexed` answers a one-clause ``==`` filter from an index (for load runs over thousands of
devices, whose records then must not change).

Endpoints::

    POST /api/oauth/token, /api/v1/oauth/token       client credentials (either can be turned off)
    POST /api/v1/auth/token                          Basic -> user bearer token
    POST /api/v1/auth/keep-alive, /invalidate-token  GET /api/v1/auth
    GET  /api/{v1,v2,v3,v4}/computers-inventory      section, page, page-size, filter (RSQL)
    GET  /api/v2/mobile-devices/detail               same parameters, flat filter fields
    GET  /api/v1/departments/{id}, /api/v1/departments              one, or every page (sync)
    GET  /JSSResource/computers/{serialnumber,udid}/{value}     Classic API (JSON or XML)
    GET  /JSSResource/mobiledevices/{serialnumber,udid}/{value}

Collections honour ``sort`` on their id (``id:asc``, ``mobileDeviceId:asc``) as a sync pages
them; the sorted order and one-clause ``==`` filters are cached (like a database index) so that
`FakeJamf.generated` inventories of 100,000 devices answer quickly.

Run it on its own to try a config without Jamf, or with a generated inventory and latency for a
benchmark (``--port 0`` prints the port it took; ``GET /fake/stats`` reports requests)::

    python -m tests.fakes.jamf --port 9443 --devices tests/fakes/jamf_devices.json
    python -m tests.fakes.jamf --port 0 --computers 100000 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal[
    "401",
    "429",
    "500",
    "502",
    "503",
    "504",
    "slow",
    "malformed",
    "wrongshape",
    "badgzip",
    "html403",
    "reset",
]
TOKEN_PATHS = frozenset({"/api/oauth/token", "/api/v1/oauth/token", "/api/v1/auth/token"})

COMPUTER_SECTIONS = {
    "GENERAL": "general",
    "HARDWARE": "hardware",
    "OPERATING_SYSTEM": "operatingSystem",
    "USER_AND_LOCATION": "userAndLocation",
    "GROUP_MEMBERSHIPS": "groupMemberships",
    "DISK_ENCRYPTION": "diskEncryption",
    "PURCHASING": "purchasing",
    "SECURITY": "security",
    "APPLICATIONS": "applications",
    "EXTENSION_ATTRIBUTES": "extensionAttributes",
}
MOBILE_SECTIONS = {
    "GENERAL": "general",
    "HARDWARE": "hardware",
    "USER_AND_LOCATION": "userAndLocation",
    "GROUPS": "groups",
    "SECURITY": "security",
    "NETWORK": "network",
}
# Mobile filters use flat names; map them to where the detail record keeps the value.
MOBILE_FILTER_FIELDS = {
    "serialNumber": "hardware.serialNumber",
    "udid": "general.udid",
    "managed": "general.managed",
    "supervised": "general.supervised",
    "username": "userAndLocation.username",
    "emailAddress": "userAndLocation.emailAddress",
    "displayName": "general.displayName",
    "mobileDeviceId": "mobileDeviceId",
    "id": "mobileDeviceId",
}
COMPUTER_FILTER_FIELDS = frozenset(
    {
        "id",
        "udid",
        "hardware.serialNumber",
        "general.name",
        "general.managementId",
        "general.remoteManagement.managed",
        "userAndLocation.email",
        "userAndLocation.username",
    }
)
COMPUTER_SORT_FIELDS = frozenset({"id", "general.name", "udid", "hardware.serialNumber"})
MOBILE_SORT_FIELDS = {"mobileDeviceId": "mobileDeviceId", "displayName": "general.displayName"}
STATS_PATH = "/fake/"
"""Observation endpoints of the fake itself: never logged, faulted or authenticated."""
_CLAUSE = re.compile(r"""^\s*([A-Za-z.]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([^"';,]*))\s*$""")


@dataclass
class Fault:
    """One injected misbehaviour.

    Attributes:
        kind: What to answer instead of the real response ("slow" answers normally, late).
        path: Path prefix it applies to; None means every request except token requests.
        times: How many requests it affects; None until `clear_faults`.
        retry_after: `Retry-After` header value for 429/503.
        delay: Seconds to wait first (for "slow").
        when: Query parameters the request must carry (``{"page": "1"}``), if any.
    """

    kind: FaultKind
    path: str | None = None
    times: int | None = 1
    retry_after: str | None = None
    delay: float = 0.0
    when: dict[str, str] | None = None

    def matches(self, path: str, query: Mapping[str, str] | None = None) -> bool:
        """Whether this fault applies to a request for `path` with `query`."""
        if self.when and any((query or {}).get(k) != v for k, v in self.when.items()):
            return False
        if self.path is None:
            return path not in TOKEN_PATHS
        return path.startswith(self.path)


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake answered.

    Attributes:
        method: HTTP method.
        path: URL path.
        query: Query parameters in order.
        status: Status answered.
        auth: "bearer", "basic" or None.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    auth: str | None


DEVICES_FILE = Path(__file__).with_name("jamf_devices.json")
"""The fake's sample inventory."""


def jamf_computer(serial: str, number: int) -> dict[str, Any]:
    """A managed Mac in Jamf's v4 inventory shape, built from the fake's first computer."""
    template = json.loads(DEVICES_FILE.read_text(encoding="utf-8"))["computers"][0]
    computer: dict[str, Any] = copy.deepcopy(template)
    computer["id"] = str(10_000 + number)
    computer["udid"] = f"5F0C2B7E-9A41-4D8C-B3E2-{number:012d}"
    computer["hardware"]["serialNumber"] = serial
    computer["general"]["name"] = f"MAC-{number}"
    computer["general"]["managementId"] = f"c1f4e0a2-7d3b-4f5e-9a61-{number:012d}"
    computer["userAndLocation"].update(username=f"u{number}", departmentId=None)
    return computer


@dataclass
class FakeJamf:
    """The fake's state: inventory, credentials, tokens, faults, and what it has seen."""

    computers: list[dict[str, Any]] = field(default_factory=list)
    mobile_devices: list[dict[str, Any]] = field(default_factory=list)
    departments: dict[str, str] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=lambda: {"posture-connector": "fake-secret"})
    users: dict[str, str] = field(default_factory=lambda: {"api-reader": "fake-password"})
    token_lifetime: float = 599.0
    oauth_paths: set[str] = field(
        default_factory=lambda: {"/api/oauth/token", "/api/v1/oauth/token"}
    )
    oauth_missing_status: int = 404
    computer_versions: set[str] = field(default_factory=lambda: {"v1", "v2", "v3", "v4"})
    mobile_enabled: bool = True
    ignore_filter: bool = False  # a misbehaving server answering every device
    echo_refused_secret: bool = False  # a misbehaving server naming the secret it refused
    clock: Callable[[], float] = time.monotonic
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    indexed: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    connections: set[asyncio.BaseTransport] = field(default_factory=set)
    max_connections: int = 0
    _index: dict[tuple[int, str], dict[str, list[dict[str, Any]]]] = field(
        default_factory=dict, repr=False
    )
    _orders: dict[tuple[str, int], tuple[tuple[int, ...], list[dict[str, Any]]]] = field(
        default_factory=dict, repr=False
    )
    _indexes: dict[tuple[str, int], tuple[tuple[int, ...], dict[str, list[Any]]]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def generated(
        cls, computers: int, mobiles: int = 0, *, departments: int = 20, **kwargs: Any
    ) -> FakeJamf:
        """A synthetic inventory: every section filled, departments by id, ids ascending."""
        return cls(
            computers=[generated_computer(i, departments) for i in range(computers)],
            mobile_devices=[generated_mobile(i, departments) for i in range(mobiles)],
            departments={str(d + 1): f"Department {d + 1}" for d in range(departments)},
            **kwargs,
        )

    @classmethod
    def from_document(cls, document: dict[str, Any], **kwargs: Any) -> FakeJamf:
        """Build from ``{"computers": [...], "mobileDevices": [...], "departments": [...]}``."""
        return cls(
            computers=copy.deepcopy(document.get("computers", [])),
            mobile_devices=copy.deepcopy(document.get("mobileDevices", [])),
            departments={str(d["id"]): d["name"] for d in document.get("departments", [])},
            **kwargs,
        )

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> FakeJamf:
        """Load a devices file (see `tests/fakes/jamf_devices.json`)."""
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")), **kwargs)

    # --- switches ------------------------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind,
        *,
        path: str | None = None,
        times: int | None = 1,
        retry_after: str | None = None,
        delay: float = 0.0,
        when: dict[str, str] | None = None,
    ) -> None:
        """Queue a fault; faults apply in the order injected."""
        self.faults.append(Fault(kind, path, times, retry_after, delay, when))

    def clear_faults(self) -> None:
        """Stop every injected fault."""
        self.faults.clear()

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if they had all expired."""
        self.tokens.clear()

    # --- observations --------------------------------------------------------------------------

    def count(self, path_prefix: str, method: str | None = None) -> int:
        """How many requests for paths starting with `path_prefix` the fake answered."""
        return sum(
            1
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        )

    @property
    def token_requests(self) -> int:
        """How many token requests (any kind, any answer) arrived."""
        return sum(1 for r in self.requests if r.path in TOKEN_PATHS)

    # --- internals -----------------------------------------------------------------------------

    def sorted_by(
        self, records: list[dict[str, Any]], dotted: str, *, numeric: bool
    ) -> list[dict[str, Any]]:
        """`records` in ascending order of `dotted`, cached until the list's members change."""
        fingerprint = tuple(map(id, records))
        key = (dotted, id(records))
        cached = self._orders.get(key)
        if cached is None or cached[0] != fingerprint:
            cached = (fingerprint, sorted(records, key=_sort_key(dotted, numeric=numeric)))
            self._orders[key] = cached
        return cached[1]

    def matching(
        self, records: list[dict[str, Any]], dotted: str, value: str
    ) -> list[dict[str, Any]]:
        """Records whose `dotted` field equals `value` (case-insensitive), by a cached index."""
        fingerprint = tuple(map(id, records))
        key = (dotted, id(records))
        cached = self._indexes.get(key)
        if cached is None or cached[0] != fingerprint:
            index: dict[str, list[Any]] = {}
            for record in records:
                index.setdefault(_as_text(_lookup(record, dotted)).casefold(), []).append(record)
            cached = (fingerprint, index)
            self._indexes[key] = cached
        return list(cached[1].get(value.casefold(), []))

    def stats(self) -> dict[str, Any]:
        """Requests answered (per path), and the most ever in flight at once."""
        by_path: dict[str, int] = {}
        for request in self.requests:
            by_path[request.path] = by_path.get(request.path, 0) + 1
        return {
            "requests": len(self.requests),
            "by_path": by_path,
            "max_in_flight": self.max_in_flight,
        }

    def _take_fault(self, path: str, query: Mapping[str, str] | None = None) -> Fault | None:
        for fault in self.faults:
            if fault.matches(path, query):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def _count_connection(self, transport: asyncio.BaseTransport | None) -> None:
        """Note the connection a request came on; forget the ones the client has closed."""
        self.connections = {t for t in self.connections if not t.is_closing()}
        if transport is not None:
            self.connections.add(transport)
        self.max_connections = max(self.max_connections, len(self.connections))

    def _equal(self, records: list[dict[str, Any]], path: str, value: str) -> list[dict[str, Any]]:
        """Records whose `path` equals `value` (casefolded), from an index built at first use."""
        index = self._index.get((id(records), path))
        if index is None:
            index = {}
            for record in records:
                index.setdefault(_as_text(_lookup(record, path)).casefold(), []).append(record)
            self._index[(id(records), path)] = index
        return list(index.get(value, ()))

    def _issue(self) -> str:
        token = f"fake.{secrets.token_urlsafe(18)}"
        self.tokens[token] = self.clock() + self.token_lifetime
        return token

    def _valid(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        expires = self.tokens.get(header.removeprefix("Bearer "))
        return expires is not None and expires > self.clock()


FAKE = web.AppKey("fake_jamf", FakeJamf)


def _api_error(status: int, code: str, description: str = "") -> web.Response:
    # Jamf pretty-prints its errors.
    body = {"httpStatus": status, "errors": [{"code": code, "description": description}]}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=2))


def _unauthorized() -> web.Response:
    return web.json_response({"httpStatus": 401, "errors": []}, status=401)


def _fault_response(fault: Fault) -> web.StreamResponse | None:
    kind = fault.kind
    if kind == "401":
        return _unauthorized()
    if kind in ("429", "503") and fault.retry_after is not None:
        response = _api_error(int(kind), "TOO_MANY_REQUESTS" if kind == "429" else "UNAVAILABLE")
        response.headers["Retry-After"] = fault.retry_after
        return response
    if kind in ("429", "500", "502", "503", "504"):
        return _api_error(int(kind), "FAULT")
    if kind == "malformed":
        return web.Response(
            status=200,
            text='{"totalCount": 1, "results": [{"id": ',
            content_type="application/json",
        )
    if kind == "wrongshape":
        return web.json_response({"totalCount": "many", "results": {"id": "1"}})
    if kind == "badgzip":
        # Says gzip, is not: an appliance rewriting bodies, or a truncated cache entry.
        return web.Response(
            status=200,
            body=b'{"totalCount": 0, "results": []}',
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    if kind == "html403":
        return web.Response(
            status=403,
            text="<html><head><title>403 Forbidden</title></head><body>Request blocked.</body></html>",
            content_type="text/html",
        )
    return None


def _auth_kind(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return "bearer"
    if header.startswith("Basic "):
        return "basic"
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request, track concurrency, apply faults, check bearer tokens."""
    fake = request.app[FAKE]
    if request.path.startswith(STATS_PATH):
        return await handler(request)
    fake._count_connection(request.transport)
    fake.in_flight += 1
    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
    status = 500
    try:
        response = await _dispatch(fake, request, handler)
        status = response.status
        return response
    finally:
        fake.in_flight -= 1
        fake.requests.append(
            LoggedRequest(
                request.method,
                request.path,
                tuple(request.query.items()),
                status,
                _auth_kind(request),
            )
        )


async def _dispatch(fake: FakeJamf, request: web.Request, handler: Handler) -> web.StreamResponse:
    if fake.latency and request.path not in TOKEN_PATHS:
        await asyncio.sleep(fake.latency)
    fault = fake._take_fault(request.path, request.query)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.kind == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=599)
        faulty = _fault_response(fault)
        if faulty is not None:
            return faulty
    if request.path not in TOKEN_PATHS and not fake._valid(request):
        return _unauthorized()
    return await handler(request)


# --- authentication -----------------------------------------------------------------------------


async def oauth_token(request: web.Request) -> web.Response:
    """Client credentials; `oauth_missing_status` when this path is switched off."""
    fake = request.app[FAKE]
    if request.path not in fake.oauth_paths:
        return _api_error(fake.oauth_missing_status, "NOT_FOUND")
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not isinstance(client_id, str) or fake.clients.get(client_id) != secret:
        echoed = secret if fake.echo_refused_secret and isinstance(secret, str) else None
        return web.json_response({"error": echoed or "invalid_client"}, status=401)
    return web.json_response(
        {
            "access_token": fake._issue(),
            "scope": "api-role:1",
            "token_type": "Bearer",
            "expires_in": int(fake.token_lifetime),
        }
    )


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _user_token_body(fake: FakeJamf) -> dict[str, str]:
    expires = datetime.now(UTC) + timedelta(seconds=fake.token_lifetime)
    return {
        "token": fake._issue(),
        "expires": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }


async def user_token(request: web.Request) -> web.Response:
    """Basic credentials -> user bearer token with an ISO-8601 ``expires``."""
    fake = request.app[FAKE]
    credentials = _basic(request)
    if credentials is None or fake.users.get(credentials[0]) != credentials[1]:
        return _api_error(401, "INVALID_CREDENTIALS")
    return web.json_response(_user_token_body(fake))


async def keep_alive(request: web.Request) -> web.Response:
    """A new user token; the old one stops working."""
    fake = request.app[FAKE]
    fake.tokens.pop(request.headers["Authorization"].removeprefix("Bearer "), None)
    return web.json_response(_user_token_body(fake))


async def invalidate_token(request: web.Request) -> web.Response:
    """Drop the presented token."""
    request.app[FAKE].tokens.pop(request.headers["Authorization"].removeprefix("Bearer "), None)
    return web.Response(status=204)


async def auth_details(request: web.Request) -> web.Response:
    """A trimmed ``GET /api/v1/auth``."""
    del request
    return web.json_response({"account": {"username": "api-reader"}, "accountGroups": []})


# --- inventory ----------------------------------------------------------------------------------


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _sort_key(dotted: str, *, numeric: bool) -> Callable[[dict[str, Any]], Any]:
    """Text sorts ignore case; id sorts are numeric (Jamf ids are numbers written as strings)."""

    def key(record: dict[str, Any]) -> Any:
        value = _as_text(_lookup(record, dotted))
        if numeric:
            return (0, int(value), "") if value.isdigit() else (1, 0, value)
        return value.casefold()

    return key


def _rsql(expression: str, fields: dict[str, str]) -> Callable[[dict[str, Any]], bool] | str:
    """Compile ``field=="value"`` clauses joined by ``;``; an error message when invalid."""
    tests: list[tuple[str, str, str]] = []
    for clause in re.split(r";| and ", expression):
        match = _CLAUSE.match(clause)
        if match is None:
            return f"invalid RSQL clause {clause.strip()!r}"
        name, op = match.group(1), match.group(2)
        value = next(g for g in match.group(3, 4, 5) if g is not None)
        if name not in fields:
            return f"field {name!r} cannot be filtered"
        tests.append((fields[name], op, value.casefold()))

    def predicate(record: dict[str, Any]) -> bool:
        for path, op, value in tests:
            equal = _as_text(_lookup(record, path)).casefold() == value
            if equal != (op == "=="):
                return False
        return True

    return predicate


def _page(
    request: web.Request,
    records: list[dict[str, Any]],
    *,
    sections: dict[str, str],
    fields: dict[str, str],
    sorts: dict[str, str],
    default_sort: str,
    render: Callable[[dict[str, Any], set[str]], dict[str, Any]],
) -> web.Response:
    wanted = request.query.getall("section", ["GENERAL"])
    unknown = [s for s in wanted if s not in sections]
    if unknown:
        return _api_error(400, "INVALID_SECTION", ", ".join(unknown))
    try:
        page = int(request.query.get("page", "0"))
        size = int(request.query.get("page-size", "100"))
    except ValueError:
        return _api_error(400, "INVALID_PARAMETER", "page")
    name, _, direction = request.query.get("sort", default_sort).partition(":")
    if name not in sorts or direction not in ("", "asc", "desc"):
        return _api_error(400, "INVALID_SORT", name)
    fake = request.app[FAKE]
    dotted = sorts[name]
    numeric = dotted in ("id", "mobileDeviceId")
    if "filter" in request.query and not fake.ignore_filter:
        predicate = _rsql(request.query["filter"], fields)
        if isinstance(predicate, str):
            return _api_error(400, "INVALID_RSQL_FILTER", predicate)
        single = _single_equality(request.query["filter"], fields)
        found = (
            fake.matching(records, *single)
            if single is not None
            else [r for r in records if predicate(r)]
        )
        matches = sorted(found, key=_sort_key(dotted, numeric=numeric))
    else:
        matches = fake.sorted_by(records, dotted, numeric=numeric)
    if direction == "desc":
        matches = matches[::-1]
    chosen = matches[page * size : (page + 1) * size]
    keys = {sections[s] for s in wanted}
    return web.json_response(
        {"totalCount": len(matches), "results": [render(r, keys) for r in chosen]}
    )


def _single_equality(expression: str, fields: dict[str, str]) -> tuple[str, str] | None:
    """``field=="value"`` alone: (record path, value), answered from an index."""
    match = _CLAUSE.match(expression)
    if match is None or match.group(2) != "==" or ";" in expression or " and " in expression:
        return None
    value = next(g for g in match.group(3, 4, 5) if g is not None)
    return fields[match.group(1)], value


def _render_computer(version: str) -> Callable[[dict[str, Any], set[str]], dict[str, Any]]:
    def render(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"id": str(record["id"]), "udid": record.get("udid")}
        for key in COMPUTER_SECTIONS.values():
            body[key] = copy.deepcopy(record.get(key)) if key in keys else None
        general = body.get("general")
        if version == "v4" and isinstance(general, dict):
            # v4 renames lastContactTime and adds lastCheckIn.
            general["lastContact"] = general.pop("lastContactTime", None)
            general["lastCheckIn"] = general["lastContact"]
            general.pop("lastReportedIp", None)
        return body

    return render


def _render_mobile(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mobileDeviceId": str(record["mobileDeviceId"]),
        "deviceType": record.get("deviceType", "iOS"),
    }
    for key in MOBILE_SECTIONS.values():
        body[key] = copy.deepcopy(record.get(key)) if key in keys else None
    return body


async def computers_inventory(request: web.Request) -> web.Response:
    """``GET /api/{version}/computers-inventory``; 404 for versions switched off."""
    fake = request.app[FAKE]
    version = request.match_info["version"]
    if version not in fake.computer_versions:
        return _api_error(404, "NOT_FOUND")
    fields = {f: f for f in COMPUTER_FILTER_FIELDS}
    return _page(
        request,
        fake.computers,
        sections=COMPUTER_SECTIONS,
        fields=fields,
        sorts={f: f for f in COMPUTER_SORT_FIELDS},
        default_sort="general.name:asc",
        render=_render_computer(version),
    )


async def mobile_detail(request: web.Request) -> web.Response:
    """``GET /api/v2/mobile-devices/detail``."""
    fake = request.app[FAKE]
    if not fake.mobile_enabled:
        return _api_error(404, "NOT_FOUND")
    return _page(
        request,
        fake.mobile_devices,
        sections=MOBILE_SECTIONS,
        fields=MOBILE_FILTER_FIELDS,
        sorts=MOBILE_SORT_FIELDS,
        default_sort="displayName:asc",
        render=_render_mobile,
    )


async def department(request: web.Request) -> web.Response:
    """``GET /api/v1/departments/{id}``."""
    fake = request.app[FAKE]
    dept_id = request.match_info["id"]
    if dept_id not in fake.departments:
        return _api_error(404, "INVALID_ID", f"Department with id {dept_id} not found")
    return web.json_response({"id": dept_id, "name": fake.departments[dept_id]})


async def departments(request: web.Request) -> web.Response:
    """``GET /api/v1/departments``: every department, paged, sorted by id."""
    fake = request.app[FAKE]
    try:
        page = int(request.query.get("page", "0"))
        size = int(request.query.get("page-size", "100"))
    except ValueError:
        return _api_error(400, "INVALID_PARAMETER", "page")
    rows = [{"id": i, "name": n} for i, n in fake.departments.items()]
    ordered = sorted(rows, key=_sort_key("id", numeric=True))
    chosen = ordered[page * size : (page + 1) * size]
    return web.json_response({"totalCount": len(ordered), "results": chosen})


async def stats(request: web.Request) -> web.Response:
    """``GET /fake/stats``: what the fake has answered (for a benchmark in another process)."""
    return web.json_response(request.app[FAKE].stats())


async def reset_stats(request: web.Request) -> web.Response:
    """``POST /fake/reset``: forget the request log and the in-flight high-water mark."""
    fake = request.app[FAKE]
    fake.requests.clear()
    fake.max_in_flight = fake.in_flight
    return web.Response(status=204)


# --- generated inventories ----------------------------------------------------------------------


def generated_computer(number: int, departments: int) -> dict[str, Any]:
    """Mac number `number` of a synthetic inventory: every section the provider reads, filled."""
    serial = f"C0{number:010d}"
    udid = f"{number:08X}-0000-4000-8000-{number:012X}"
    return {
        "id": str(number + 1),
        "udid": udid,
        "general": {
            "name": f"MAC-{number:07d}",
            "platform": "Mac",
            "managementId": udid.lower(),
            "remoteManagement": {"managed": number % 50 != 0, "managementUsername": "jamfmgmt"},
            "supervised": True,
            "lastContactTime": "2025-03-14T09:26:41.207Z",
            "reportDate": "2025-03-14T08:59:03.118Z",
            "lastReportedIp": "10.1.2.3",
        },
        "hardware": {
            "make": "Apple",
            "model": "MacBook Pro (14-inch, 2023)",
            "modelIdentifier": "Mac14,9",
            "serialNumber": serial,
            "appleSilicon": True,
        },
        "operatingSystem": {"name": "macOS", "version": "15.3.2", "build": "24D81"},
        "userAndLocation": {
            "username": f"user{number}",
            "realname": f"User {number}",
            "email": f"user{number}@example.com",
            "position": "Engineer",
            "departmentId": str(number % departments + 1) if departments else "",
        },
        "groupMemberships": [
            {"groupId": "1", "groupName": "All Managed Clients", "smartGroup": True},
            {
                "groupId": str(100 + number % 25),
                "groupName": f"Team {number % 25}",
                "smartGroup": False,
            },
        ],
    }


def generated_mobile(number: int, departments: int) -> dict[str, Any]:
    """iPhone number `number` of a synthetic inventory."""
    department = number % departments + 1 if departments else 0
    return {
        "mobileDeviceId": str(number + 1),
        "deviceType": "iOS",
        "general": {
            "udid": f"00008110-{number:016X}",
            "displayName": f"iPhone {number:07d}",
            "managed": True,
            "supervised": True,
            "osVersion": "18.3.1",
            "lastInventoryUpdateDate": "2025-03-14T07:12:09.441Z",
        },
        "hardware": {"serialNumber": f"F1{number:010d}", "model": "iPhone 15 Pro"},
        "userAndLocation": {
            "username": f"user{number}",
            "realName": f"User {number}",
            "emailAddress": f"user{number}@example.com",
            "department": f"Department {department}" if department else "",
        },
        "groups": [{"groupId": "12", "groupName": "Corporate iPhones", "smart": True}],
    }


# --- Classic API --------------------------------------------------------------------------------


def _classic_time(value: str | None) -> str | None:
    return value[:-1] + "+0000" if value and value.endswith("Z") else value


def _classic_location(ul: dict[str, Any] | None, department_name: str | None) -> dict[str, Any]:
    ul = ul or {}
    full_name = ul.get("realname") or ul.get("realName") or ""
    return {
        "username": ul.get("username", ""),
        "realname": full_name,
        "real_name": full_name,
        "email_address": ul.get("email") or ul.get("emailAddress") or "",
        "position": ul.get("position", ""),
        "department": department_name or ul.get("department") or "",
    }


def _classic_computer(fake: FakeJamf, record: dict[str, Any]) -> dict[str, Any]:
    general = record.get("general") or {}
    hardware = record.get("hardware") or {}
    system = record.get("operatingSystem") or {}
    ul = record.get("userAndLocation") or {}
    return {
        "computer": {
            "general": {
                "id": int(record["id"]),
                "name": general.get("name", ""),
                "serial_number": hardware.get("serialNumber", ""),
                "udid": record.get("udid", ""),
                "remote_management": {
                    "managed": (general.get("remoteManagement") or {}).get("managed", False)
                },
                "supervised": general.get("supervised", False),
                "last_contact_time_utc": _classic_time(general.get("lastContactTime")),
            },
            "location": _classic_location(ul, fake.departments.get(str(ul.get("departmentId")))),
            "hardware": {
                "model": hardware.get("model", ""),
                "os_name": system.get("name", ""),
                "os_version": system.get("version", ""),
            },
            "groups_accounts": {
                "computer_group_memberships": [
                    g["groupName"] for g in record.get("groupMemberships") or []
                ]
            },
        }
    }


def _classic_mobile(record: dict[str, Any]) -> dict[str, Any]:
    general = record.get("general") or {}
    hardware = record.get("hardware") or {}
    return {
        "mobile_device": {
            "general": {
                "id": int(record["mobileDeviceId"]),
                "device_name": general.get("displayName", ""),
                "serial_number": hardware.get("serialNumber", ""),
                "udid": general.get("udid", ""),
                "managed": general.get("managed", False),
                "supervised": general.get("supervised", False),
                "os_type": record.get("deviceType", "iOS"),
                "os_version": general.get("osVersion", ""),
                "model": hardware.get("model", ""),
                "model_identifier": hardware.get("modelIdentifier", ""),
                "last_inventory_update_utc": _classic_time(general.get("lastInventoryUpdateDate")),
            },
            "location": _classic_location(record.get("userAndLocation"), None),
            # Jamf's own sample wraps each group; real servers also send them bare.
            "mobile_device_groups": [
                {
                    "size": 1,
                    "mobile_device_group": {"id": int(g["groupId"]), "name": g["groupName"]},
                }
                for g in record.get("groups") or []
            ],
        }
    }


def _classic_answer(request: web.Request, body: dict[str, Any] | None) -> web.Response:
    if body is None:
        return web.Response(
            status=404,
            text="<html><body><p>The server has not found anything matching the request URI</p>"
            "</body></html>",
            content_type="text/html",
        )
    if "application/json" not in request.headers.get("Accept", ""):
        return web.Response(text="<computer><general/></computer>", content_type="text/xml")
    return web.json_response(body)


async def classic_computer(request: web.Request) -> web.Response:
    """``GET /JSSResource/computers/{serialnumber|udid}/{value}``."""
    fake = request.app[FAKE]
    by, value = request.match_info["by"], request.match_info["value"].casefold()
    for record in fake.computers:
        key = (
            (record.get("hardware") or {}).get("serialNumber")
            if by == "serialnumber"
            else (record.get("udid"))
        )
        if _as_text(key).casefold() == value:
            return _classic_answer(request, _classic_computer(fake, record))
    return _classic_answer(request, None)


async def classic_mobile(request: web.Request) -> web.Response:
    """``GET /JSSResource/mobiledevices/{serialnumber|udid}/{value}``."""
    fake = request.app[FAKE]
    by, value = request.match_info["by"], request.match_info["value"].casefold()
    for record in fake.mobile_devices:
        key = _lookup(record, "hardware.serialNumber" if by == "serialnumber" else "general.udid")
        if _as_text(key).casefold() == value:
            return _classic_answer(request, _classic_mobile(record))
    return _classic_answer(request, None)


def create_app(fake: FakeJamf) -> web.Application:
    """The fake Jamf Pro as an aiohttp application."""
    app = web.Application(middlewares=[_observe])
    app[FAKE] = fake
    app.add_routes(
        [
            web.post("/api/oauth/token", oauth_token),
            web.post("/api/v1/oauth/token", oauth_token),
            web.post("/api/v1/auth/token", user_token),
            web.post("/api/v1/auth/keep-alive", keep_alive),
            web.post("/api/v1/auth/invalidate-token", invalidate_token),
            web.get("/api/v1/auth", auth_details),
            web.get(r"/api/{version:v\d}/computers-inventory", computers_inventory),
            web.get("/api/v2/mobile-devices/detail", mobile_detail),
            web.get("/api/v1/departments/{id}", department),
            web.get("/api/v1/departments", departments),
            web.get("/fake/stats", stats),
            web.post("/fake/reset", reset_stats),
            web.get(r"/JSSResource/computers/{by:serialnumber|udid}/{value}", classic_computer),
            web.get(r"/JSSResource/mobiledevices/{by:serialnumber|udid}/{value}", classic_mobile),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the fake on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.jamf", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=9443, help="0: any free port (printed)")
    parser.add_argument("--devices", type=Path, default=DEVICES_FILE)
    parser.add_argument("--computers", type=int, default=0, help="generate this many Macs")
    parser.add_argument("--mobiles", type=int, default=0, help="generate this many iPhones")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--client-id", default="posture-connector")
    parser.add_argument("--client-secret", default="fake-secret")
    parser.add_argument("--username", default="api-reader")
    parser.add_argument("--password", default="fake-password")
    parser.add_argument("--token-lifetime", type=float, default=599.0)
    parser.add_argument(
        "--indexed", action="store_true", help="index devices for filters (for load runs)"
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "clients": {args.client_id: args.client_secret},
        "users": {args.username: args.password},
        "token_lifetime": args.token_lifetime,
    }
    if args.computers or args.mobiles:
        fake = FakeJamf.generated(args.computers, args.mobiles, **options)
    else:
        fake = FakeJamf.from_file(args.devices, **options)
    fake.latency = args.latency
    fake.indexed = args.indexed
    asyncio.run(_serve(fake, args.port, args.client_id))


async def _serve(fake: FakeJamf, port: int, client_id: str) -> None:
    runner = web.AppRunner(create_app(fake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(
        f"fake Jamf Pro on http://127.0.0.1:{bound} with {len(fake.computers)} computers and "
        f"{len(fake.mobile_devices)} mobile devices (client id {client_id!r})",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
