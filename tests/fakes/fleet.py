"""A fake Fleet server: a real aiohttp app that speaks the host endpoints of Fleet's REST API.

It keeps what Fleet's server code does (fleetdm/fleet, ``server/datastore/mysql/hosts.go``):
``/hosts/identifier/{identifier}`` matches hostname, osquery host id, node key, UUID *or*
hardware serial, case-insensitively, and answers the first host (``LIMIT 1``); a miss is 404.
Hosts come wrapped as ``{"host": ...}``, errors as ``{"message", "errors": [{"name",
"reason"}]}``, and software is left out only with ``exclude_software=true``.

Endpoints::

    GET /api/v1/fleet/me
    GET /api/v1/fleet/hosts                         page, per_page, order_key, order_direction
    GET /api/v1/fleet/hosts/identifier/{identifier}
    GET /api/v1/fleet/hosts/{id}

Switches: `tokens` (accepted API tokens), `teams` (the token's team scope; None is global:
hosts of other teams answer 403), faults from `tests.fakes._upstream`, `requests` (the log).

Run it on its own to try a config without Fleet::

    python -m tests.fakes.fleet --port 9445
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

HOSTS = Path(__file__).with_name("fleet_devices.json")
TOKEN = "fake-fleet-api-token"
_MESSAGES = {
    401: ("Authentication required", "Authentication required"),
    403: ("Permission Denied", "forbidden"),
    404: ("Resource Not Found", "Host was not found in the datastore"),
    429: ("limit exceeded, retry after: 1s", "limit exceeded, retry after: 1s"),
}
_SUMMARY_DROPS = ("labels", "policies", "end_users", "node_key", "software")
_SOFTWARE = [{"id": 408, "name": "osquery", "version": "5.12.1", "source": "apps"}]


@dataclass
class FakeFleet(FakeUpstream):
    """The fake's state: hosts (in id order), tokens, team scope, switches."""

    hosts: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    teams: set[int] | None = None

    @classmethod
    def from_file(cls, path: Path = HOSTS, **kwargs: Any) -> FakeFleet:
        """Load ``{"hosts": [...]}`` (see `tests/fakes/fleet_devices.json`)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        hosts = sorted(copy.deepcopy(document["hosts"]), key=lambda h: h["id"])
        return cls(hosts=hosts, **kwargs)


FAKE = web.AppKey("fake_fleet", FakeFleet)


def fleet_error(status: int) -> web.Response:
    """Fleet's error body for a status."""
    message, reason = _MESSAGES.get(status, ("Unknown Error", "internal error"))
    body = {"message": message, "errors": [{"name": "base", "reason": reason}]}
    return web.json_response(body, status=status)


def _authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return (
        header.startswith("Bearer ") and header.removeprefix("Bearer ") in request.app[FAKE].tokens
    )


def _answer(request: web.Request, host: dict[str, Any] | None) -> web.Response:
    fake = request.app[FAKE]
    if host is None:
        return fleet_error(404)
    if fake.teams is not None and host.get("team_id") not in fake.teams:
        return fleet_error(403)
    body = copy.deepcopy(host)
    body.pop("node_key", None)
    if request.query.get("exclude_software") != "true":
        body["software"] = copy.deepcopy(_SOFTWARE)
    return web.json_response({"host": body})


async def me(request: web.Request) -> web.Response:
    """``GET /api/v1/fleet/me``."""
    if not _authorized(request):
        return fleet_error(401)
    user = {"id": 9, "name": "posture-connector", "email": "api@example.com", "api_only": True}
    return web.json_response({"user": {**user, "global_role": "observer", "teams": []}})


async def host_by_identifier(request: web.Request) -> web.Response:
    """``GET /api/v1/fleet/hosts/identifier/{identifier}``: the first host any field matches."""
    if not _authorized(request):
        return fleet_error(401)
    wanted = request.match_info["identifier"].casefold()
    keys = ("hostname", "osquery_host_id", "node_key", "uuid", "hardware_serial")
    hosts = request.app[FAKE].hosts
    found = next(
        (h for h in hosts if any(str(h.get(k) or "").casefold() == wanted for k in keys)), None
    )
    return _answer(request, found)


async def host_by_id(request: web.Request) -> web.Response:
    """``GET /api/v1/fleet/hosts/{id}``."""
    if not _authorized(request):
        return fleet_error(401)
    host_id = request.match_info["id"]
    found = next((h for h in request.app[FAKE].hosts if str(h["id"]) == host_id), None)
    return _answer(request, found)


async def list_hosts(request: web.Request) -> web.Response:
    """``GET /api/v1/fleet/hosts``: host summaries (no labels or policies), paged by number."""
    if not _authorized(request):
        return fleet_error(401)
    fake = request.app[FAKE]
    try:
        page = int(request.query.get("page", "0"))
        per_page = int(request.query.get("per_page", "100"))
    except ValueError:
        return fleet_error(400)
    hosts = [h for h in fake.hosts if fake.teams is None or h.get("team_id") in fake.teams]
    if request.query.get("order_key") == "id":
        reverse = request.query.get("order_direction") == "desc"
        hosts = sorted(hosts, key=lambda h: int(h["id"]), reverse=reverse)
    chosen = hosts[page * per_page : (page + 1) * per_page]
    summaries = [{k: v for k, v in h.items() if k not in _SUMMARY_DROPS} for h in chosen]
    return web.json_response({"hosts": summaries})


def create_app(fake: FakeFleet) -> web.Application:
    """The fake Fleet server as an aiohttp application."""
    app = web.Application(middlewares=[switch_middleware(lambda r: r.app[FAKE], fleet_error)])
    app[FAKE] = fake
    app.add_routes(
        [
            web.get("/api/v1/fleet/me", me),
            web.get("/api/v1/fleet/hosts", list_hosts),
            web.get("/api/v1/fleet/hosts/identifier/{identifier}", host_by_identifier),
            web.get(r"/api/v1/fleet/hosts/{id:\d+}", host_by_id),
        ]
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the fake on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fleet")
    parser.add_argument("--port", type=int, default=9445)
    parser.add_argument("--hosts", type=Path, default=HOSTS)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args(argv)
    fake = FakeFleet.from_file(args.hosts, tokens={args.token})
    print(f"fake Fleet on http://127.0.0.1:{args.port} with {len(fake.hosts)} hosts", flush=True)
    web.run_app(create_app(fake), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
