"""The Jamf Pro API as the provider uses it: typed requests, pages, and readable refusals.

Every request carries the bearer token through `BearerAuth` (a 401 renews it once). Answers are
parsed into `providers.jamf._models`; a 404 on a collection or record is returned as None so
the provider can fall back or answer "not found".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel

from providers._http import BearerAuth, TokenCache, UpstreamClient, read_model
from providers._records import text
from providers.base import ProviderError
from providers.jamf import _models as m
from providers.jamf._auth import error_code

MOBILE_DETAIL_PATH = "/api/v2/mobile-devices/detail"
COMPUTER_SECTIONS = (
    "GENERAL",
    "HARDWARE",
    "OPERATING_SYSTEM",
    "USER_AND_LOCATION",
    "GROUP_MEMBERSHIPS",
)
MOBILE_SECTIONS = ("GENERAL", "HARDWARE", "USER_AND_LOCATION", "GROUPS")
MAX_PAGES = 10

_Item = TypeVar("_Item", bound=BaseModel)
Params = list[tuple[str, str]]


def computers_path(version: str) -> str:
    """The computers-inventory collection of one API version (v1 ... v4)."""
    return f"/api/{version}/computers-inventory"


class JamfApi:
    """Typed GETs against one Jamf Pro server."""

    def __init__(self, name: str, client: UpstreamClient, tokens: TokenCache) -> None:
        self._name = name
        self._client = client
        self._auth = BearerAuth(name, tokens, error_code=error_code)

    async def get(
        self, path: str, params: Params | None, deadline: float, *, route: str | None = None
    ) -> httpx.Response:
        """GET with the bearer token; a second 401 after a fresh token is an error."""
        response = await self._client.request(
            "GET", path, route=route or path, params=params, deadline=deadline, auth=self._auth
        )
        if response.status_code == 401:
            raise ProviderError(self._name, f"Jamf refused a fresh token on {path} (HTTP 401)")
        return response

    def parse(
        self, response: httpx.Response, path: str, model: type[_Item], *, privilege: str
    ) -> _Item:
        """A 200 answer as `model`; a 403 says which privilege (or which firewall) refused it."""

        def refusal(answer: httpx.Response) -> str:
            if answer.status_code == 403:
                if "html" in answer.headers.get("content-type", ""):
                    return (
                        f"{path}: an HTML 403 (a proxy or web firewall in front of Jamf refused it)"
                    )
                return f"{path}: HTTP 403; the API role needs the {privilege!r} privilege"
            return f"{path}: unexpected HTTP {answer.status_code}"

        return read_model(self._name, response, model, where=path, refusal=refusal)

    async def probe(self, version: str, deadline: float) -> bool:
        """Whether this computers-inventory version exists (a 404 says it does not)."""
        path = computers_path(version)
        params = [("section", "GENERAL"), ("page", "0"), ("page-size", "1")]
        response = await self.get(path, params, deadline)
        if response.status_code == 404:
            return False
        self.parse(response, path, m.ComputerResults, privilege="Read Computers")
        return True

    async def search(
        self,
        path: str,
        model: type[m.SearchResults[_Item]],
        sections: Sequence[str],
        rsql: str,
        deadline: float,
        *,
        privilege: str,
        page_size: int,
    ) -> list[_Item] | None:
        """All pages of one filtered search; None when the collection itself is missing.

        Every match is read or the search fails: the newest of them decides, and it may be on
        any page (Jamf sorts by name). Past `MAX_PAGES` pages, or when the matches change
        while they are paged (`totalCount` changes, or a page comes back empty before it is
        reached: the pages shifted), the newest may have been missed.
        """
        items: list[_Item] = []
        total: int | None = None
        for page in range(MAX_PAGES):
            params = [("section", s) for s in sections]
            params += [("page", str(page)), ("page-size", str(page_size)), ("filter", rsql)]
            response = await self.get(path, params, deadline)
            if response.status_code == 404 and page == 0:
                return None
            parsed = self.parse(response, path, model, privilege=privilege)
            total = parsed.totalCount if total is None else total
            items.extend(parsed.results)
            if parsed.totalCount == total and len(items) >= total:
                return items
            if not parsed.results or parsed.totalCount != total:
                raise ProviderError(
                    self._name,
                    f"{path}: the matches changed while they were read "
                    f"({len(items)} of {parsed.totalCount}); try again",
                )
        raise ProviderError(
            self._name, f"{path}: more than {MAX_PAGES * page_size} devices match one identifier"
        )

    async def page(
        self,
        path: str,
        model: type[m.SearchResults[_Item]],
        sections: Sequence[str],
        number: int,
        deadline: float,
        *,
        privilege: str,
        page_size: int,
    ) -> list[_Item]:
        """One unfiltered page of a collection (for listing every device)."""
        params = [("page", str(number)), ("page-size", str(page_size))]
        params += [("section", s) for s in sections]
        response = await self.get(path, params, deadline)
        return self.parse(response, path, model, privilege=privilege).results

    async def department(self, department_id: str, deadline: float) -> str | None:
        """A department's name; None when Jamf has no such department (404)."""
        path = f"/api/v1/departments/{department_id}"
        response = await self.get(path, None, deadline, route="/api/v1/departments/{id}")
        if response.status_code == 404:
            return None
        department = self.parse(response, path, m.Department, privilege="Read Departments")
        return text(department.name)

    async def classic_computer(
        self, by: str, value: str, deadline: float
    ) -> m.ClassicComputerBody | None:
        """``/JSSResource/computers/{by}/{value}``; None when Jamf does not know it."""
        path = f"/JSSResource/computers/{by}/{value}"
        response = await self.get(path, None, deadline, route=f"/JSSResource/computers/{by}/{{id}}")
        if response.status_code == 404:
            return None
        return self.parse(response, path, m.ClassicComputer, privilege="Read Computers").computer

    async def classic_mobile(
        self, by: str, value: str, deadline: float
    ) -> m.ClassicMobileBody | None:
        """``/JSSResource/mobiledevices/{by}/{value}``; None when Jamf does not know it."""
        path = f"/JSSResource/mobiledevices/{by}/{value}"
        route = f"/JSSResource/mobiledevices/{by}/{{id}}"
        response = await self.get(path, None, deadline, route=route)
        if response.status_code == 404:
            return None
        parsed = self.parse(response, path, m.ClassicMobileDevice, privilege="Read Mobile Devices")
        return parsed.mobile_device
