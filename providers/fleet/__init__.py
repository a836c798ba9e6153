"""Fleet (fleetdm): look attested Macs, iPhones and iPads up by serial number or UUID.

Flow of one lookup (bounded by `budget`, retries included)::

    GET /api/v1/fleet/hosts/identifier/{serial or UUID}?exclude_software=true

Fleet resolves the identifier against hostname, osquery id, node key, UUID and serial and
answers its first hit, so the provider accepts the host only when its ``hardware_serial`` (or,
for a UDID, its ``uuid``) is the identifier; any other host fails closed. Team, labels and the
end user's IdP groups become groups, and so do policy results (``fleet-policy-failing:NAME``;
see `providers.fleet._mapping`). Authentication is an API token as a bearer header. The listing
for sync mode pages through ``GET /api/v1/fleet/hosts`` and reads each host (`list_page`).

Modules: `_settings` (the config table), `_api` (typed requests), `_models` (the JSON read),
`_mapping` (JSON to `DeviceRecord`, pure), `provider` (`FleetProvider`).
"""

from __future__ import annotations

from providers.fleet._settings import FleetSettings
from providers.fleet.provider import FleetProvider

__all__ = ["FleetProvider", "FleetSettings"]
