"""The Fleet REST API as the provider uses it: typed GETs and readable refusals.

Every request carries the configured API token (`StaticBearerAuth`). A 401 is a refused token,
a 403 a role that may not read the host (a team-scoped user asking about another team's host);
both are `ProviderError`s. An unknown identifier (404) is answered as None.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from providers._http import json_field
from providers._http._static import StaticTokenApi
from providers.base import ProviderError
from providers.fleet._models import Host, HostAnswer, HostPage, Me

ME = "/api/v1/fleet/me"
HOSTS = "/api/v1/fleet/hosts"
BY_IDENTIFIER = "/api/v1/fleet/hosts/identifier/{identifier}"
BY_ID = "/api/v1/fleet/hosts/{id}"

_HOST_ID = re.compile(r"[0-9]{1,20}")


def _reason(response: httpx.Response) -> str | None:
    """Fleet's short error text (``{"message", "errors": [{"name", "reason"}]}``)."""
    message = json_field(response, "message")
    return message[:120] if isinstance(message, str) else None


class FleetApi(StaticTokenApi):
    """Typed GETs against one Fleet server."""

    def refusal(self, response: httpx.Response, route: str) -> str:
        """The vendor's reading of a 401, a 403 and other statuses."""
        status = response.status_code
        if status == 401:
            return f"Fleet refused the API token on {route} (HTTP 401)"
        if status == 403:
            return (
                f"{route}: HTTP 403; the API user needs a role that reads hosts "
                "(global Observer, or a team role covering every team)"
            )
        reason = _reason(response)
        return f"{route}: unexpected HTTP {status}{': ' + reason if reason else ''}"

    async def me(self, deadline: float) -> None:
        """``GET /api/v1/fleet/me``: proves the token before the first lookup."""
        await self.get(ME, ME, Me, deadline)

    async def host_by_identifier(self, identifier: str, deadline: float) -> Host | None:
        """The host Fleet finds for a serial or UUID; None when Fleet knows none (404)."""
        found = await self.get(
            f"{HOSTS}/identifier/{quote(identifier, safe='')}",
            BY_IDENTIFIER,
            HostAnswer,
            deadline,
            params={"exclude_software": "true"},
            missing_ok=True,
        )
        return found.host if found is not None else None

    async def host(self, host_id: str, deadline: float) -> Host | None:
        """``GET /api/v1/fleet/hosts/{id}``; None when the host was deleted meanwhile."""
        if not _HOST_ID.fullmatch(host_id):
            raise ProviderError(self._name, "Fleet answered a host id of unexpected shape")
        found = await self.get(
            f"{HOSTS}/{host_id}",
            BY_ID,
            HostAnswer,
            deadline,
            params={"exclude_software": "true"},
            missing_ok=True,
        )
        return found.host if found is not None else None

    async def host_ids(self, page: int, per_page: int, deadline: float) -> list[str]:
        """One page of host ids, in id order (``GET /api/v1/fleet/hosts``)."""
        params = {
            "page": str(page),
            "per_page": str(per_page),
            "order_key": "id",
            "order_direction": "asc",
        }
        found = await self.get(HOSTS, HOSTS, HostPage, deadline, params=params)
        return [h.id for h in found.hosts] if found is not None else []
