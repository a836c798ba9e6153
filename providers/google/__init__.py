"""Google endpoint management: look attested iPhones and iPads up by serial in the Admin SDK.

One lookup, bounded by `budget` (retries and token fetch included)::

    token (a JWT signed with the service account's key, acting as `subject`; cached)
    └── GET /admin/directory/v1/customer/{customer_id}/devices/mobile
            ?query=serial:X&projection=FULL      (pages followed up to max_pages)

Google's search matches loosely, so only devices whose ``serialNumber`` equals the attested
serial count; several (re-registered devices) resolve to the latest sync. ``status`` and the
device type give `managed`, the owner's e-mail and name the user. Google has no UDIDs, no
compliance state and no groups for mobile devices. Throttling (429, or 403 with a rate-limit
reason) is retried inside the budget; every failure becomes `ProviderError`.

Modules: `_settings` (the config table), `_auth` (service-account tokens), `_api` (requests),
`_models` (the JSON read), `_mapping` (JSON to `DeviceRecord`, pure), `provider`.
"""

from __future__ import annotations

from providers.google._settings import GoogleSettings
from providers.google.provider import GoogleProvider

__all__ = ["GoogleProvider", "GoogleSettings"]
