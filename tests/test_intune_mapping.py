"""Graph JSON to DeviceRecord without HTTP: the pure functions of providers.intune._mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.intune import _mapping as mapping
from providers.intune._models import DirectoryGroup, GraphUser, ManagedDevice

DEVICE: dict[str, Any] = {
    "id": "3c9b7f0e-52d4-4e8a-9b1f-0d6a2e4c8f11",
    "userId": "7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b",
    "deviceName": "Anika's iPhone",
    "managedDeviceOwnerType": "company",
    "lastSyncDateTime": "2025-03-14T09:20:55Z",
    "operatingSystem": "iOS",
    "osVersion": "18.3.1",
    "complianceState": "compliant",
    "jailBroken": "False",
    "managementAgent": "easMdm",
    "azureADDeviceId": "b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087",
    "isSupervised": True,
    "userPrincipalName": "anika.sharma@example.com",
    "emailAddress": "anika.sharma@example.com",
    "userDisplayName": "Anika Sharma",
    "model": "iPhone 15 Pro",
    "serialNumber": "F17ZK8XJN72Q",
}
USER = GraphUser(
    id="7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b",
    display_name="Anika Sharma",
    user_principal_name="anika.sharma@example.com",
    mail=None,
    department="Platform Engineering",
    job_title="SRE",
)


def device(**changes: Any) -> ManagedDevice:
    return ManagedDevice.model_validate({**DEVICE, **changes})


def test_device_user_and_groups_map_into_one_record() -> None:
    """Device fields, the Entra user (mail from the device when unset) and deduplicated groups."""
    groups = [
        DirectoryGroup(id="g1", display_name="MDA-Pilot-Users"),
        DirectoryGroup(id="g2", display_name=None),
        DirectoryGroup(id="g1", display_name="MDA-Pilot-Users"),
    ]
    record = mapping.device_record("intune", device(), udid=" ", user=USER, groups=groups)
    assert record == DeviceRecord(
        provider="intune",
        record_id=DEVICE["id"],
        serial="F17ZK8XJN72Q",
        udid=None,
        name="Anika's iPhone",
        model="iPhone 15 Pro",
        platform="iOS",
        os_version="18.3.1",
        managed=True,
        supervised=True,
        compliance="compliant",
        owner_type="company",
        jailbroken=False,
        last_contact=datetime(2025, 3, 14, 9, 20, 55, tzinfo=UTC),
        user=UserRecord(
            username="anika.sharma@example.com",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            department="Platform Engineering",
            title="SRE",
            id=USER.id,
        ),
        groups=(GroupRef(name="MDA-Pilot-Users", id="g1"), GroupRef(name="g2", id="g2")),
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"managementAgent": "eas"}, "managed", False),
        ({"managementAgent": None}, "managed", None),
        ({"managedDeviceOwnerType": "unknown"}, "owner_type", None),
        ({"jailBroken": "Unknown"}, "jailbroken", None),
        ({"jailBroken": "True"}, "jailbroken", True),
        ({"lastSyncDateTime": "0001-01-01T00:00:00Z"}, "last_contact", None),
        ({"complianceState": "  "}, "compliance", None),
    ],
    ids=[
        "eas",
        "no-agent",
        "owner-unknown",
        "jailbreak-unknown",
        "jailbroken",
        "unset-date",
        "blank",
    ],
)
def test_unreported_values_become_none(changes: dict[str, Any], field: str, expected: Any) -> None:
    """Graph's "unknown" spellings are unreported (None), never a guess."""
    record = mapping.device_record("intune", device(**changes), udid=None, user=None, groups=[])
    assert getattr(record, field) == expected


def test_user_graph_lost_falls_back_to_the_device_row() -> None:
    """Without the Entra user, the device's own UPN, e-mail and name stand in."""
    assert mapping.user_record(device(), None) == UserRecord(
        username="anika.sharma@example.com",
        email="anika.sharma@example.com",
        full_name="Anika Sharma",
        id=DEVICE["userId"],
    )
    assert mapping.user_record(device(userPrincipalName=""), None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087", "b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087"),
        ("00000000-0000-0000-0000-000000000000", None),
        ("", None),
        ("not-a-guid", None),
    ],
    ids=["guid", "nil", "empty", "garbage"],
)
def test_only_real_entra_device_ids_are_queried(value: str, expected: str | None) -> None:
    """A nil or malformed azureADDeviceId means "not registered in Entra"."""
    assert mapping.entra_device_id(device(azureADDeviceId=value)) == expected


def test_serial_match_ignores_case_only() -> None:
    """A filter Graph ignored cannot pick another device: the serial must really match."""
    assert mapping.serial_matches(device(), "f17zk8xjn72q")
    assert not mapping.serial_matches(device(), "F17ZK8XJN72")
    assert not mapping.serial_matches(device(serialNumber=None), "F17ZK8XJN72Q")
