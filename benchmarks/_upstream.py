"""A fake upstream (Jamf or Graph) with thousands of generated devices, in its own process.

    .venv/bin/python -m benchmarks._upstream {jamf,graph} --devices N --latency SECONDS

Prints ``port N`` once listening on 127.0.0.1, then serves until killed. Besides the fake's own
routes it answers ``GET /_bench/stats`` (requests per route, the most connections and requests
open at once, counted at the fake) and ``POST /_bench/reset``. Run apart from the service so the
fake's own CPU does not count against the connector's.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes import graph, jamf

CLIENT_ID = "posture-connector"
CLIENT_SECRET = "fake-secret"
GRAPH_CLIENT_ID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
TENANT = "contoso.onmicrosoft.com"
DEPARTMENTS = 40
GROUPS = 12
_ID = re.compile(r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})(?=/|$)")


def serial(index: int) -> str:
    """The serial number of generated device `index` (12 upper-case characters)."""
    return f"C02B{index:08d}"


def _recent(index: int) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=index % 600)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def jamf_document(devices: int, mobile_share: float) -> dict[str, Any]:
    """Computers (and a share of mobile devices) with departments and groups, all managed."""
    mobiles = int(devices * mobile_share)
    computers = [
        {
            "id": str(i + 1),
            "udid": f"{i:08X}-0000-4000-8000-{i:012X}",
            "general": {
                "name": f"MAC-{i}",
                "platform": "Mac",
                "remoteManagement": {"managed": True},
                "supervised": True,
                "lastContactTime": _recent(i),
            },
            "hardware": {"model": "MacBook Pro", "serialNumber": serial(i)},
            "operatingSystem": {"name": "macOS", "version": "15.3.2"},
            "userAndLocation": {
                "username": f"user{i}",
                "realname": f"User {i}",
                "email": f"user{i}@example.com",
                "departmentId": str(i % DEPARTMENTS + 1),
            },
            "groupMemberships": [
                {"groupId": str(g + 1), "groupName": f"Group {g}", "smartGroup": False}
                for g in (i % GROUPS, (i + 5) % GROUPS)
            ],
        }
        for i in range(devices - mobiles)
    ]
    mobile_devices = [
        {
            "mobileDeviceId": str(i + 1),
            "deviceType": "iOS",
            "general": {
                "udid": f"00008110-{i:016X}",
                "displayName": f"iPhone {i}",
                "managed": True,
                "supervised": True,
                "osVersion": "18.3.1",
                "lastInventoryUpdateDate": _recent(i),
            },
            "hardware": {"model": "iPhone 15", "serialNumber": serial(i)},
            "userAndLocation": {"username": f"user{i}", "emailAddress": f"user{i}@example.com"},
            "groups": [{"groupId": str(i % GROUPS + 1), "groupName": f"Group {i % GROUPS}"}],
        }
        for i in range(devices - mobiles, devices)
    ]
    return {
        "departments": [{"id": str(d + 1), "name": f"Dept {d}"} for d in range(DEPARTMENTS)],
        "computers": computers,
        "mobileDevices": mobile_devices,
    }


def graph_document(devices: int) -> dict[str, Any]:
    """Managed devices, one user each, a few groups per user."""
    groups = [
        {"id": f"00000000-0000-4000-8000-{g:012d}", "displayName": f"Group {g}"}
        for g in range(GROUPS)
    ]
    users = [
        {
            "id": f"10000000-0000-4000-8000-{i:012d}",
            "displayName": f"User {i}",
            "userPrincipalName": f"user{i}@example.com",
            "mail": f"user{i}@example.com",
            "department": f"Dept {i % DEPARTMENTS}",
            "jobTitle": "Engineer",
        }
        for i in range(devices)
    ]
    managed = [
        {
            "id": f"20000000-0000-4000-8000-{i:012d}",
            "userId": users[i]["id"],
            "deviceName": f"MAC-{i}",
            "managedDeviceOwnerType": "company",
            "lastSyncDateTime": _recent(i).replace(".000", ""),
            "operatingSystem": "macOS",
            "osVersion": "15.3.2",
            "complianceState": "compliant",
            "jailBroken": "False",
            "managementAgent": "mdm",
            "azureADDeviceId": f"30000000-0000-4000-8000-{i:012d}",
            "isSupervised": True,
            "userPrincipalName": users[i]["userPrincipalName"],
            "emailAddress": users[i]["mail"],
            "userDisplayName": users[i]["displayName"],
            "model": "MacBook Pro",
            "serialNumber": serial(i),
            "udid": "",
        }
        for i in range(devices)
    ]
    return {
        "tenant_id": TENANT,
        "clients": [{"client_id": GRAPH_CLIENT_ID, "client_secret": CLIENT_SECRET}],
        "managedDevices": managed,
        "users": users,
        "groups": groups,
        "memberships": {
            u["id"]: [groups[i % GROUPS]["id"], groups[(i + 3) % GROUPS]["id"]]
            for i, u in enumerate(users)
        },
        "devices": [],
    }


class Stats:
    """Requests per route since the last reset, and the bench routes (ahead of the fake's auth)."""

    def __init__(self, fake: jamf.FakeJamf | graph.FakeGraph) -> None:
        self.fake = fake
        self.routes: Counter[str] = Counter()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Answer ``/_bench/*`` here; count every other request and pass it on."""
        if request.path == "/_bench/stats":
            return web.json_response(
                {
                    "routes": dict(self.routes),
                    "max_connections": self.fake.max_connections,
                }
            )
        if request.path == "/_bench/reset":
            self.routes.clear()
            self.fake.max_connections = len(self.fake.connections)
            self.fake.requests.clear()
            return web.json_response({})
        self.routes[f"{request.method} {_ID.sub('/{id}', request.path)}"] += 1
        response: web.StreamResponse = await handler(request)
        return response


def build(kind: str, devices: int, latency: float, mobile_share: float) -> web.Application:
    """The fake's app with the stats middleware in front."""
    fake: jamf.FakeJamf | graph.FakeGraph
    if kind == "jamf":
        fake = jamf.FakeJamf.from_document(
            jamf_document(devices, mobile_share),
            clients={CLIENT_ID: CLIENT_SECRET},
            latency=latency,
            indexed=True,
        )
        app = jamf.create_app(fake)
    else:
        fake = graph.FakeGraph.from_document(graph_document(devices))
        fake.delay = latency
        app = graph.create_app(fake)
    app.middlewares.insert(0, Stats(fake).middleware)
    return app


async def serve(kind: str, devices: int, latency: float, mobile_share: float) -> None:
    """Listen on a free loopback port, say which, and serve until cancelled."""
    runner = web.AppRunner(build(kind, devices, latency, mobile_share), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"port {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=("jamf", "graph"))
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--mobile-share", type=float, default=0.25, help="Jamf: mobile devices")
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.devices, args.latency, args.mobile_share))


if __name__ == "__main__":
    main()
