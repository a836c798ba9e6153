"""Apple Business Manager devices to DeviceRecord, without HTTP: ownership, service, platform."""

from __future__ import annotations

from typing import Any

import pytest

from providers import vocabulary
from providers.abm import _mapping as mapping
from providers.abm import _models as m
from providers.base import GroupRef
from tests.fakes.abm import JAMF_SERVER, MAC, RELEASED, _server, default_devices


def device(serial: str = MAC, **attributes: Any) -> m.OrgDevice:
    """A device of the fake organisation with `attributes` replaced."""
    raw = default_devices()[serial]
    return m.OrgDevice.model_validate({**raw, "attributes": raw["attributes"] | attributes})


JAMF = m.MdmServer.model_validate(_server(JAMF_SERVER))


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("Mac", "macOS"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("AppleTV", "tvOS"),
        ("Watch", "watchOS"),
        ("Vision", "visionOS"),
        ("Newton", None),
        (None, None),
    ],
)
def test_product_family_becomes_the_platform(family: str | None, expected: str | None) -> None:
    """Apple's product families map onto the vocabulary; an unknown one is unreported."""
    assert mapping.platform(family) == expected
    assert expected is None or expected in vocabulary.PLATFORMS


@pytest.mark.parametrize(
    ("mdm_servers", "server", "expected"),
    [
        (("Jamf Pro Production",), JAMF, True),
        (("jamf pro production",), JAMF, True),
        ((JAMF_SERVER[0],), JAMF, True),
        (("Legacy MDM",), JAMF, False),
        (("Jamf Pro Production",), None, False),
        ((), JAMF, None),
        ((), None, None),
    ],
    ids=[
        "by-name",
        "name-ignores-case",
        "by-id",
        "other-service",
        "unassigned",
        "none-named",
        "none-at-all",
    ],
)
def test_managed_means_assigned_to_a_named_service(
    mdm_servers: tuple[str, ...], server: m.MdmServer | None, expected: bool | None
) -> None:
    """Managed is "assigned to one of mdm_servers"; without any named it is unreported."""
    assert mapping.managed(server, mdm_servers) is expected


def test_id_must_match_exactly() -> None:
    """A server id is compared exactly: a lower-cased id is not the same service."""
    assert not mapping.is_ours(JAMF, (JAMF_SERVER[0].lower(),))


def test_assigned_device_maps_to_an_ownership_record() -> None:
    """Company-owned, managed by our service, the service as a prefixed group; no MDM data."""
    record = mapping.device_record("abm", device(), JAMF, ("Jamf Pro Production",))
    assert (record.serial, record.record_id) == (MAC, MAC)
    assert (record.platform, record.model) == ("macOS", "MacBook Pro (14-inch, M3, 2023)")
    assert (record.owner_type, record.managed) == ("company", True)
    assert record.groups == (
        GroupRef(name="abm-server:Jamf Pro Production", id=f"abm-server:{JAMF_SERVER[0]}"),
    )
    assert (record.udid, record.os_version, record.user, record.last_contact) == (
        None,
        None,
        None,
        None,
    )


def test_unassigned_device_has_no_group() -> None:
    """An unassigned device is company-owned, unmanaged and in no group."""
    record = mapping.device_record(
        "abm", device(status="UNASSIGNED"), None, ("Jamf Pro Production",)
    )
    assert (record.managed, record.groups) == (False, ())


def test_released_device_is_recognised() -> None:
    """A release date means the organisation gave the device up."""
    assert device(RELEASED).released
    assert not device(MAC).released


def test_serial_falls_back_to_the_id() -> None:
    """Without a serialNumber attribute the resource id (the serial) is used."""
    assert device(serialNumber=None).serial == MAC


def test_server_without_name_is_named_by_id() -> None:
    """A service Apple answers without a name is still a group, named by its id."""
    nameless = m.MdmServer.model_validate({"type": "mdmServers", "id": "ABC"})
    assert mapping.server_group(nameless) == GroupRef(name="abm-server:ABC", id="abm-server:ABC")
