"""Kandji: look attested Macs, iPhones, iPads and Apple TVs up by serial number.

Flow of one lookup (bounded by `budget`, retries included)::

    GET /api/v1/devices?serial_number=X&limit=300      substring match: keep the exact serial
    └── GET /api/v1/devices/{device_id}/details         UDID and supervision (`fetch_details`)

Authentication is the tenant's API token as a bearer header; a 401 makes the provider not
ready, a 403 names the endpoint permission the token lacks. Kandji cannot search by UDID, so a
UDID is answered "not in this inventory" (logged once as ``provider.udid_not_searchable``).
The listing for sync mode pages with ``limit``/``offset`` (`list_page`, resumable).

Modules: `_settings` (the config table), `_api` (typed requests), `_models` (the JSON read),
`_mapping` (JSON to `DeviceRecord`, pure), `provider` (`KandjiProvider`).
"""

from __future__ import annotations

from providers.kandji._settings import KandjiSettings
from providers.kandji.provider import KandjiProvider

__all__ = ["KandjiProvider", "KandjiSettings"]
