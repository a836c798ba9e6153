"""Kandji JSON to DeviceRecord without HTTP: the pure functions of providers.kandji._mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.kandji import _mapping as mapping
from providers.kandji._models import DeviceDetails, DeviceList, KandjiDevice

MAC: dict[str, Any] = {
    "device_id": "2b7c1e9a-4f0d-4a55-9b1e-6f3c2d8a1e01",
    "device_name": "MBA-ASHARMA",
    "model": "MacBook Air (M1, 2020)",
    "serial_number": "FVHHFKF7Q6L4",
    "platform": "Mac",
    "os_version": "15.3.2",
    "last_check_in": "2025-03-14T09:26:41.166267Z",
    "user": {
        "email": "anika@example.com",
        "name": "Anika Sharma",
        "id": "u-1",
        "is_archived": False,
    },
    "blueprint_id": "bp-42",
    "blueprint_name": "MDA Pilot",
    "mdm_enabled": True,
    "is_missing": False,
    "is_removed": False,
    "tags": ["engineering", "mda", "engineering"],
}
MAC_DETAILS: dict[str, Any] = {
    "hardware_overview": {"udid": "3c976d96-08a0-5014-89e4-66259ab79fe6"},
    "mdm": {
        "mdm_enabled": "True",
        "supervised": "True",
        "last_check_in": "2025-03-14 09:20:15+00:00",
    },
}


def device(**overrides: Any) -> KandjiDevice:
    return KandjiDevice.model_validate({**MAC, **overrides})


def test_mac_with_details_maps_every_field() -> None:
    """A Mac carries its blueprint and tags as groups, the user, and the details' UDID."""
    record = mapping.device_record("kandji", device(), DeviceDetails.model_validate(MAC_DETAILS))
    assert record == DeviceRecord(
        provider="kandji",
        record_id="2b7c1e9a-4f0d-4a55-9b1e-6f3c2d8a1e01",
        serial="FVHHFKF7Q6L4",
        udid="3c976d96-08a0-5014-89e4-66259ab79fe6",
        name="MBA-ASHARMA",
        model="MacBook Air (M1, 2020)",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, 166267, tzinfo=UTC),
        user=UserRecord(email="anika@example.com", full_name="Anika Sharma", id="u-1"),
        groups=(
            GroupRef(name="MDA Pilot", id="bp-42"),
            GroupRef(name="engineering"),
            GroupRef(name="mda"),
        ),
    )


def test_without_details_udid_and_supervision_are_unreported() -> None:
    """Without the details call Kandji reports no UDID and no supervision: both stay None."""
    record = mapping.device_record("kandji", device(), None)
    assert (record.udid, record.supervised, record.managed) == (None, None, True)


def test_removed_device_is_unmanaged_whatever_mdm_enabled_says() -> None:
    """``is_removed`` wins over ``mdm_enabled``: a removed device is never managed."""
    assert mapping.managed(device(is_removed=True, mdm_enabled=True), None) is False


def test_managed_falls_back_to_the_details_flag() -> None:
    """A list item without ``mdm_enabled`` takes the details' "True"/"False" string."""
    details = DeviceDetails.model_validate({"mdm": {"mdm_enabled": "False"}})
    assert mapping.managed(device(mdm_enabled=None), details) is False
    assert mapping.managed(device(mdm_enabled=None), None) is None


def test_ios_details_name_the_udid_uuid() -> None:
    """iPhones, iPads and Apple TVs carry the UDID as ``hardware_overview.uuid``."""
    details = DeviceDetails.model_validate(
        {"hardware_overview": {"uuid": "00008020-0015308c11a1402e"}, "mdm": {}}
    )
    record = mapping.device_record("kandji", device(platform="iPad"), details)
    assert (record.udid, record.platform, record.supervised) == (
        "00008020-0015308c11a1402e",
        "iPadOS",
        None,
    )


@pytest.mark.parametrize(
    ("kandji", "expected"),
    [
        ("Mac", "macOS"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("AppleTV", "tvOS"),
        ("Apple TV", "tvOS"),
        ("Vision", "visionOS"),
        ("Watch", None),
        (None, None),
    ],
)
def test_platforms_use_the_vocabulary(kandji: str | None, expected: str | None) -> None:
    """Kandji's platform names become the vocabulary's; an unknown one is unreported."""
    assert mapping.platform(kandji) == expected


def test_empty_user_string_and_blank_fields_become_none() -> None:
    """Kandji writes ``"user": ""`` for a userless device and "" for unset text."""
    record = mapping.device_record(
        "kandji",
        device(user="", device_name="", blueprint_name="", tags=None, last_check_in=""),
        None,
    )
    assert (record.user, record.name, record.groups, record.last_contact) == (None, None, (), None)


def test_last_contact_is_the_newer_of_list_and_mdm_check_in() -> None:
    """The details' MDM check-in counts when it is newer than the list's ``last_check_in``."""
    details = DeviceDetails.model_validate({"mdm": {"last_check_in": "2025-03-15 08:00:00+00:00"}})
    record = mapping.device_record("kandji", device(), details)
    assert record.last_contact == datetime(2025, 3, 15, 8, 0, tzinfo=UTC)


def test_serial_filter_matches_substrings_so_only_the_exact_serial_counts() -> None:
    """``FVHHFKF7Q6L4X`` contains ``FVHHFKF7Q6L4`` but is not that device."""
    assert mapping.serial_matches(device(), "fvhhfkf7q6l4")
    assert not mapping.serial_matches(device(serial_number="FVHHFKF7Q6L4X"), "FVHHFKF7Q6L4")


def test_tags_given_as_objects_keep_their_names() -> None:
    """A tag written as ``{"id", "name"}`` counts by its name."""
    found = device(tags=[{"id": "t1", "name": "lobby"}, 7, "mda"])
    assert [g.name for g in mapping.groups(found)] == ["MDA Pilot", "lobby", "mda"]


def test_device_list_is_a_bare_array() -> None:
    """``GET /api/v1/devices`` answers an array; numbers and unknown keys are tolerated."""
    parsed = DeviceList.model_validate([{**MAC, "device_id": 17, "new_field": {"x": 1}}])
    assert parsed.root[0].device_id == "17"


def test_missing_device_gets_the_missing_group() -> None:
    """``is_missing`` shows as the group kandji-missing, which groups.none_of can refuse."""
    assert [g.name for g in mapping.groups(device(is_missing=True, tags=[]))] == [
        "MDA Pilot",
        "kandji-missing",
    ]
    assert "kandji-missing" not in [g.name for g in mapping.groups(device())]
