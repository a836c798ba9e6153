"""Apple Business Manager devices to `DeviceRecord`: pure functions, tested without HTTP.

An ownership record, not an MDM record: ``owner_type`` is "company" (the device is held for the
organisation), `managed` says whether Apple Business Manager assigns it to one of the device
management services the admin named in ``mdm_servers`` (None when none are named), and the
assigned service is a group ``abm-server:<name>`` (id ``abm-server:<id>``). Everything an MDM
would report (OS version, user, last check-in, UDID) stays None.
"""

from __future__ import annotations

from collections.abc import Sequence

from providers._records import text
from providers.abm import _models as m
from providers.base import DeviceRecord, GroupRef

GROUP_PREFIX = "abm-server:"
PRODUCT_FAMILIES = {
    "mac": "macOS",
    "iphone": "iOS",
    "ipod": "iOS",
    "ipad": "iPadOS",
    "appletv": "tvOS",
    "watch": "watchOS",
    "vision": "visionOS",
}


def platform(product_family: str | None) -> str | None:
    """Apple's product family as the vocabulary's platform (Mac is macOS, iPad iPadOS, ...)."""
    return PRODUCT_FAMILIES.get((product_family or "").casefold().replace(" ", ""))


def is_ours(server: m.MdmServer, mdm_servers: Sequence[str]) -> bool:
    """Whether the service is one the admin named (by id exactly, or by name ignoring case)."""
    name = (text(server.attributes.serverName) or "").casefold()
    return any(entry == server.id or entry.casefold() == name for entry in mdm_servers)


def managed(server: m.MdmServer | None, mdm_servers: Sequence[str]) -> bool | None:
    """Assigned to one of `mdm_servers`; unreported when the admin named none."""
    if not mdm_servers:
        return None
    return server is not None and is_ours(server, mdm_servers)


def server_group(server: m.MdmServer) -> GroupRef:
    """The assigned device management service as a prefixed group."""
    name = text(server.attributes.serverName) or server.id
    return GroupRef(name=GROUP_PREFIX + name, id=GROUP_PREFIX + server.id)


def device_record(
    provider: str, device: m.OrgDevice, server: m.MdmServer | None, mdm_servers: Sequence[str]
) -> DeviceRecord:
    """A device the organisation holds, with the service Apple Business Manager assigns it to."""
    attributes = device.attributes
    return DeviceRecord(
        provider=provider,
        record_id=device.id,
        serial=device.serial,
        model=text(attributes.deviceModel),
        platform=platform(attributes.productFamily),
        managed=managed(server, mdm_servers),
        owner_type="company",
        groups=(server_group(server),) if server is not None else (),
    )
