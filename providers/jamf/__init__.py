"""Jamf Pro: look attested Macs, iPhones and iPads up by serial or UDID.

Flow of one lookup (bounded by `budget`, retries and token fetch included)::

    token (OAuth client credentials or user bearer, cached, one fetch for all callers)
    ├── GET /api/{v}/computers-inventory?filter=hardware.serialNumber=="X"   (or udid=="X")
    │     └── GET /api/v1/departments/{id}          (cached, concurrent asks share one call)
    └── GET /api/v2/mobile-devices/detail?filter=serialNumber=="X"           (or udid=="X")

Both device classes are searched concurrently, unless the UDID's form names the platform (the
UUID form: a Mac; 40 hex digits: an older iPhone or iPad). A 401 drops the token and retries
once with a fresh one. When a Pro API collection is missing (404) and `classic_fallback` is on,
that device class switches to the Classic API (``/JSSResource``) for the life of the provider.
Every failure becomes `ProviderError`, which the chain turns into a fail-closed deny.

Sync mode lists every device page by page, sorted by id, with all departments read once per
sync (`list_page`, resumable from the saved cursor; see `_listing`).

Modules: `_settings` (the config table), `_auth` (tokens), `_api` (typed requests), `_models`
(the JSON read), `_mapping` (JSON to `DeviceRecord`, pure), `_listing` (the paged listing),
`provider` (`JamfProvider`).
"""

from __future__ import annotations

from providers.jamf._settings import JamfSettings
from providers.jamf.provider import JamfProvider

__all__ = ["JamfProvider", "JamfSettings"]
