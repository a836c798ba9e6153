"""Workspace ONE UEM (Omnissa): look attested Apple devices up by serial or UDID.

One lookup, bounded by `budget` (retries and token fetch included)::

    token (OAuth client credentials at the region's token URL, cached; or Basic + aw-tenant-code)
    ├── GET /API/mdm/devices?searchby=Serialnumber&id=X          (or searchby=Udid)
    └── GET /API/mdm/devices/{id}/smartgroups                     (when smart_groups is on)

Enrollment status becomes `managed`, compliance status `compliance`, ownership `owner_type`;
the organisation group and the smart groups become `groups`. A 401 renews an OAuth token once;
every failure becomes `ProviderError`, which the chain turns into a fail-closed deny.

Modules: `_settings` (the config table), `_auth` (tokens), `_api` (typed requests), `_models`
(the JSON read), `_mapping` (JSON to `DeviceRecord`, pure), `provider`.
"""

from __future__ import annotations

from providers.workspaceone._settings import WorkspaceOneSettings
from providers.workspaceone.provider import WorkspaceOneProvider

__all__ = ["WorkspaceOneProvider", "WorkspaceOneSettings"]
