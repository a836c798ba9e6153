"""Mosyle Manager: look attested Macs, iPhones, iPads, Apple TVs and Vision Pros up by serial.

Flow of one lookup (bounded by `budget`, retries and login included)::

    POST /v2/login {accessToken, email, password}     JWT in the Authorization response header
    POST /v2/listdevices {os: F, serial_numbers: [X]}  one request per family F, all at once
    └── POST /v2/listdevicegroupsdevices {os: F}       device groups and their member UDIDs
                                                       (cached `group_ttl`, shared by callers)

Mosyle answers "nothing found" as HTTP 200 with a ``DEVICES_NOTFOUND`` status in the body. Tags
and device groups stand in for groups. Mosyle cannot search by UDID, so a UDID is answered
"not in this inventory" (logged once as ``provider.udid_not_searchable``). The listing for sync
mode pages through each family (`list_page`, resumable).

Modules: `_settings` (the config table), `_auth` (the JWT), `_api` (typed requests), `_models`
(the JSON read and its envelope), `_mapping` (JSON to `DeviceRecord`, pure), `provider`.
"""

from __future__ import annotations

from providers.mosyle._settings import MosyleSettings
from providers.mosyle.provider import MosyleProvider

__all__ = ["MosyleProvider", "MosyleSettings"]
