"""Microsoft Intune through Microsoft Graph: app-only token, managed-device lookup, mapping.

One lookup is, in order (all inside one time budget, `UpstreamSettings.budget`):

1. a client-credentials token from Entra (cached, shared by concurrent lookups, refreshed
   `TOKEN_MARGIN` seconds before expiry; a 401 from Graph drops it and retries once);
2. ``GET deviceManagement/managedDevices?$filter=serialNumber eq '...'&$select=...`` (every
   ``@odata.nextLink`` followed, bounded, same host only);
3. concurrently: the Entra user (``/users/{id}`` with department and job title), the user's groups
   (``transitiveMemberOf/microsoft.graph.group``, every ``@odata.nextLink`` followed), and, when
   ``device_groups`` is on, the Entra device's groups; plus the UDID by device id when asked.

UDIDs: Graph blanks ``udid`` in list answers and does not document filtering on it, so a UDID
identifier is answered "not in this inventory" unless ``udid_lookup = "filter"``, which tries the
undocumented filter and trusts only devices whose ``udid`` (fetched by id) matches.

Sync mode lists every managed device page by page (`list_page`, resumable from the saved
``@odata.nextLink``), with users listed once per sync and group memberships and UDIDs asked for
20 to a JSON ``$batch``: see `_listing` for the requests and why these.

Modules: `_settings` (the config table), `_auth` (Entra tokens, certificate assertions), `_api`
(Graph requests and paging), `_models` (the JSON read), `_mapping` (JSON to `DeviceRecord`,
pure), `_batch` (JSON batching, throttled requests sent again), `_listing` (the paged listing),
`provider` (`IntuneProvider`), `_scep` (`IntuneScepClient`: Intune's SCEP request
validation service, with the same app registration).
"""

from __future__ import annotations

from providers.intune._api import odata_string
from providers.intune._scep import IntuneScepClient, IssuedCertificate, ScepVerdict
from providers.intune._settings import IntuneSettings
from providers.intune.provider import IntuneProvider

__all__ = [
    "IntuneProvider",
    "IntuneScepClient",
    "IntuneSettings",
    "IssuedCertificate",
    "ScepVerdict",
    "odata_string",
]
