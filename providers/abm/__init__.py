"""Apple Business Manager: whether the organisation holds a serial, and which MDM it is assigned to.

An ownership check independent of the MDM. One lookup, bounded by `budget`::

    token (client_credentials with an ES256 client assertion from the API account's key; cached)
    ├── GET /v1/orgDevices/{serial}                    404: not the organisation's device
    └── GET /v1/orgDevices/{serial}/assignedServer     unless the device is UNASSIGNED

A device released from the organisation is answered as unknown. The record says
``owner_type = "company"``, ``managed`` = assigned to one of the configured ``mdm_servers``, and
carries the assigned service as group ``abm-server:<name>``. Apple knows no UDIDs.

Because the chain takes the first provider's match, put this provider alone behind its own
AUTHORIZING webhook (step-ca asks every webhook), next to the MDM's webhook: docs/providers/abm.md.

Modules: `_settings` (the config table), `_auth` (client assertion tokens), `_api` (requests),
`_models` (the JSON read), `_mapping` (JSON to `DeviceRecord`, pure), `provider`.
"""

from __future__ import annotations

from providers.abm._settings import AbmSettings
from providers.abm.provider import AbmProvider

__all__ = ["AbmProvider", "AbmSettings"]
