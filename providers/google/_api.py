"""The Admin SDK Directory API as the provider uses it: ``mobiledevices.list`` pages.

Google throttles with HTTP 403 and a reason (``userRateLimitExceeded``, ``rateLimitExceeded``,
``quotaExceeded``) as well as 429; `rate_limited` tells the client to retry those 403s like a
429. Any other refusal is a `ProviderError` naming Google's reason, never a token.
"""

from __future__ import annotations

import httpx

from providers._http import BearerAuth, TokenCache, UpstreamClient, json_field, parse_body
from providers.base import ProviderError
from providers.google import _models as m

ROUTE = "/admin/directory/v1/customer/{customer}/devices/mobile"
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"})


def reason(response: httpx.Response) -> str | None:
    """The first ``error.errors[].reason`` of a Google error body, if any."""
    errors = json_field(response, "error", "errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        found = errors[0].get("reason")
        return found if isinstance(found, str) and len(found) <= 64 else None
    return None


def rate_limited(response: httpx.Response) -> bool:
    """A 403 that is Google's throttling, to be retried with backoff like a 429."""
    return response.status_code == 403 and reason(response) in RATE_LIMIT_REASONS


class GoogleApi:
    """Typed GETs of one customer's mobile devices."""

    def __init__(
        self, name: str, client: UpstreamClient, tokens: TokenCache, customer_id: str
    ) -> None:
        self._name = name
        self._client = client
        self._auth = BearerAuth(name, tokens, error_code=reason)
        self._path = f"/admin/directory/v1/customer/{customer_id}/devices/mobile"

    async def page(
        self, query: str | None, page_token: str | None, size: int, deadline: float
    ) -> m.MobileDevices:
        """One page of ``mobiledevices.list`` (projection FULL), optionally searched."""
        params = [("projection", "FULL"), ("maxResults", str(size))]
        if query is not None:
            params.append(("query", query))
        if page_token is not None:
            params.append(("pageToken", page_token))
        response = await self._client.request(
            "GET", self._path, route=ROUTE, params=params, deadline=deadline, auth=self._auth
        )
        if response.status_code != 200:
            raise self._refusal(response)
        return parse_body(self._name, response.content, m.MobileDevices, where=ROUTE)

    def _refusal(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        why = reason(response)
        detail = f"HTTP {status}" + (f" {why}" if why else "")
        if status == 401:
            return ProviderError(self._name, f"{ROUTE}: Google refused a fresh token ({detail})")
        if status == 403:
            return ProviderError(
                self._name,
                f"{ROUTE}: {detail}; the subject needs the admin privilege to read mobile "
                "devices, and the scope must be delegated to the service account",
            )
        if status in (400, 404):
            return ProviderError(self._name, f"{ROUTE}: {detail}; is customer_id right?")
        return ProviderError(self._name, f"{ROUTE}: unexpected {detail}")

    async def by_serial(
        self, serial: str, size: int, max_pages: int, deadline: float
    ) -> list[m.MobileDevice]:
        """Every device the ``serial:`` search returns, bounded: more pages fail closed."""
        found: list[m.MobileDevice] = []
        token: str | None = None
        for _ in range(max_pages):
            page = await self.page(f"serial:{serial}", token, size, deadline)
            found.extend(page.mobiledevices)
            token = page.nextPageToken
            if not token:
                return found
        raise ProviderError(
            self._name, f"the serial search matched more than {max_pages} pages of devices"
        )
