"""Jamf JSON to DeviceRecord without HTTP: the pure functions of providers.jamf._mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import classify
from providers.jamf import _mapping as mapping
from providers.jamf import _models as m

COMPUTER: dict[str, Any] = {
    "id": "417",
    "udid": "5F0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812",
    "general": {
        "name": "MBP-ASHARMA",
        "supervised": True,
        "remoteManagement": {"managed": True},
        "lastContact": "2025-03-14T09:26:41.207Z",
    },
    "hardware": {"model": "MacBook Pro", "serialNumber": "C02FK3Q7MD6T"},
    "operatingSystem": {"version": "15.3.2"},
    "userAndLocation": {
        "username": "asharma",
        "realname": "Anika Sharma",
        "email": "anika@example.com",
        "position": "",
        "departmentId": " 7 ",
    },
    "groupMemberships": [
        {"groupId": "1", "groupName": "All Managed Clients", "smartGroup": True},
        {"groupId": "2", "groupName": "", "smartGroup": False},
    ],
}


def test_computer_maps_every_field_and_resolves_the_department() -> None:
    """A Mac gets its department name from the resolved ids; "" fields and nameless groups go."""
    computer = m.Computer.model_validate(COMPUTER)
    assert mapping.department_ids([computer]) == {"7"}
    record = mapping.computer_record("jamf", computer, {"7": "Platform Engineering"})
    assert record == DeviceRecord(
        provider="jamf",
        record_id="417",
        serial="C02FK3Q7MD6T",
        udid="5F0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812",
        name="MBP-ASHARMA",
        model="MacBook Pro",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC),
        user=UserRecord(
            username="asharma",
            email="anika@example.com",
            full_name="Anika Sharma",
            department="Platform Engineering",
        ),
        groups=(GroupRef(name="All Managed Clients", id="1", smart=True),),
    )


def test_computer_with_null_sections_has_unreported_fields() -> None:
    """Unrequested or missing sections leave fields None, never False."""
    record = mapping.computer_record("jamf", m.Computer.model_validate({"id": 5}), {})
    assert record == DeviceRecord(provider="jamf", record_id="5", platform="macOS")


def test_unresolved_department_leaves_the_user_without_one() -> None:
    """A department id Jamf did not resolve is not shown as an id."""
    computer = m.Computer.model_validate(COMPUTER)
    record = mapping.computer_record("jamf", computer, {})
    assert record.user is not None
    assert record.user.department is None


@pytest.mark.parametrize(
    ("device_type", "model", "platform"),
    [
        ("iOS", "iPhone 15 Pro", "iOS"),
        ("ios", "iPad Air (5th generation)", "iPadOS"),
        ("iOS", "iPad13,16", "iPadOS"),
        ("tvOS", "Apple TV 4K", "tvOS"),
        ("visionOS", "Apple Vision Pro", "visionOS"),
        (None, "iPod touch", "iOS"),
        ("watchOS", None, "watchOS"),
        (None, None, None),
        ("Unknown", None, None),
    ],
    ids=[
        "iphone",
        "ipad-name",
        "ipad-identifier",
        "tv",
        "vision",
        "ipod",
        "other",
        "none",
        "unknown",
    ],
)
def test_mobile_platform_comes_from_type_and_model(
    device_type: str | None, model: str | None, platform: str | None
) -> None:
    """Jamf says iOS for iPads too; the model tells them apart."""
    assert mapping.mobile_platform(device_type, model) == platform


def test_mobile_device_maps_user_groups_and_newest_contact_field() -> None:
    """Mobile records read realName/emailAddress, a department name, `smart` and general.udid."""
    device = m.MobileDevice.model_validate(
        {
            "mobileDeviceId": "88",
            "deviceType": "iOS",
            "general": {
                "udid": "00008110-000A1C2E3F40801E",
                "displayName": "Anika's iPhone",
                "managed": True,
                "supervised": False,
                "osVersion": "18.3.1",
                "lastInventoryUpdateDate": "2025-03-14T07:12:09.441Z",
            },
            "hardware": {"serialNumber": "F17ZK8XJN72Q", "model": "iPhone 15 Pro"},
            "userAndLocation": {"realName": "Anika Sharma", "department": "Platform"},
            "groups": [{"groupId": "12", "groupName": "Corporate iPhones", "smart": True}],
        }
    )
    record = mapping.mobile_record("jamf", device)
    assert (record.record_id, record.platform, record.managed, record.supervised) == (
        "88",
        "iOS",
        True,
        False,
    )
    assert record.user == UserRecord(full_name="Anika Sharma", department="Platform")
    assert record.groups == (GroupRef(name="Corporate iPhones", id="12", smart=True),)
    assert record.last_contact == datetime(2025, 3, 14, 7, 12, 9, 441000, tzinfo=UTC)


def test_classic_records_map_like_pro_records() -> None:
    """The Classic API's snake_case bodies give the same record fields."""
    computer = m.ClassicComputer.model_validate(
        {
            "computer": {
                "general": {
                    "id": 417,
                    "serial_number": "C02FK3Q7MD6T",
                    "remote_management": {"managed": True},
                    "last_contact_time_utc": "2025-03-14T09:26:41.207+0000",
                },
                "location": {"username": "asharma", "real_name": "Anika Sharma"},
                "hardware": {"os_version": "15.3.2"},
                "groups_accounts": {"computer_group_memberships": {"group": "MDA Pilot"}},
            }
        }
    )
    record = mapping.classic_computer_record("jamf", computer.computer)
    assert (record.record_id, record.managed, record.os_version) == ("417", True, "15.3.2")
    assert record.user == UserRecord(username="asharma", full_name="Anika Sharma")
    assert record.groups == (GroupRef(name="MDA Pilot"),)
    mobile = m.ClassicMobileDevice.model_validate(
        {
            "mobile_device": {
                "general": {"id": 88, "name": "iPad", "os_type": "iOS", "model": "iPad Pro"},
                "mobile_device_groups": [
                    {"size": 1, "mobile_device_group": {"id": 4, "name": "A"}}
                ],
            }
        }
    )
    record = mapping.classic_mobile_record("jamf", mobile.mobile_device)
    assert (record.record_id, record.name, record.platform, record.user) == (
        "88",
        "iPad",
        "iPadOS",
        None,
    )
    assert record.groups == (GroupRef(name="A", id="4"),)


@pytest.mark.parametrize(
    ("identifier", "record", "expected"),
    [
        ("C02FK3Q7MD6T", DeviceRecord("jamf", serial="c02fk3q7md6t"), True),
        ("00008110-000A1C2E3F40801E", DeviceRecord("jamf", udid="00008110-000a1c2e3f40801e"), True),
        ("C02FK3Q7MD6T", DeviceRecord("jamf", serial="C02OTHER0001"), False),
        ("C02FK3Q7MD6T", DeviceRecord("jamf"), False),
    ],
    ids=["serial", "udid-case", "other-serial", "no-identifiers"],
)
def test_only_records_carrying_the_identifier_match(
    identifier: str, record: DeviceRecord, expected: bool
) -> None:
    """A record another device's filter let through never matches."""
    assert mapping.matches(record, classify(identifier)) is expected
