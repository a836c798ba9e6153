"""The Kandji API as the provider uses it: typed GETs and readable refusals.

Every request carries the configured API token (`StaticBearerAuth`). A 401 is a refused token,
a 403 names the endpoint permission the token lacks; both are `ProviderError`s. A device that
vanished between the search and its details (404) is answered as None.
"""

from __future__ import annotations

import re

import httpx

from providers._http._static import StaticTokenApi
from providers.base import ProviderError
from providers.kandji._models import DeviceDetails, DeviceList, KandjiDevice

DEVICES = "/api/v1/devices"
DETAILS = "/api/v1/devices/{id}/details"
PERMISSIONS = {DEVICES: "Device list", DETAILS: "Device details"}
"""The names Kandji's API token settings give each endpoint permission."""

_DEVICE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class KandjiApi(StaticTokenApi):
    """Typed GETs against one Kandji tenant."""

    def refusal(self, response: httpx.Response, route: str) -> str:
        """The vendor's reading of a 401, a 403 and other statuses."""
        status = response.status_code
        if status == 401:
            return f"Kandji refused the API token on {route} (HTTP 401)"
        if status == 403:
            return f"{route}: HTTP 403; the API token needs the {PERMISSIONS[route]!r} permission"
        return super().refusal(response, route)

    async def devices(
        self, deadline: float, *, limit: int, offset: int = 0, serial: str | None = None
    ) -> list[KandjiDevice]:
        """One page of ``GET /api/v1/devices`` (filtered by a serial substring when given)."""
        params = {"limit": str(limit), "offset": str(offset)}
        if serial is not None:
            params["serial_number"] = serial
        found = await self.get(DEVICES, DEVICES, DeviceList, deadline, params=params)
        return found.root if found is not None else []

    async def details(self, device_id: str, deadline: float) -> DeviceDetails | None:
        """``GET /api/v1/devices/{id}/details``; None when Kandji no longer has the device."""
        if not _DEVICE_ID.fullmatch(device_id):
            raise ProviderError(self._name, "Kandji answered a device id of unexpected shape")
        return await self.get(
            f"{DEVICES}/{device_id}/details", DETAILS, DeviceDetails, deadline, missing_ok=True
        )
