"""Workspace ONE JSON to DeviceRecord, without HTTP: vocabulary, groups, users, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers import vocabulary
from providers.base import GroupRef
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.workspaceone import _mapping as mapping
from providers.workspaceone import _models as m
from tests.fakes.workspaceone import IPHONE_UDID, MAC, MAC_UDID, default_devices


def device(**fields: Any) -> m.Device:
    """The fake's managed Mac with `fields` replaced."""
    return m.Device.model_validate({**default_devices()[0], **fields})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Compliant", "compliant"),
        ("NonCompliant", "noncompliant"),
        ("PendingComplianceCheck", "unknown"),
        ("NotAvailable", "unknown"),
        ("Quarantined", None),
        ("", None),
        (None, None),
    ],
    ids=["compliant", "noncompliant", "pending", "not-available", "unlisted", "blank", "absent"],
)
def test_compliance_uses_the_vocabulary_or_none(raw: str | None, expected: str | None) -> None:
    """Listed compliance states map onto the vocabulary; anything else is unreported."""
    assert mapping.compliance(raw) == expected
    assert expected is None or expected in vocabulary.COMPLIANCE_STATES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C", "company"),
        ("S", "company"),
        ("CorporateDedicated", "company"),
        ("CorporateShared", "company"),
        ("E", "personal"),
        ("EmployeeOwned", "personal"),
        ("Undefined", None),
        (None, None),
    ],
)
def test_ownership_codes_become_owner_types(raw: str | None, expected: str | None) -> None:
    """Corporate and shared devices are company-owned, employee-owned ones personal."""
    assert mapping.owner_type(raw) == expected


@pytest.mark.parametrize(
    ("raw", "model", "expected"),
    [
        ("AppleOsX", "MacBook Air", "macOS"),
        ("Apple", "iPhone 15 Pro", "iOS"),
        ("Apple", "iPad Pro with Wi-Fi (10.5-inch)", "iPadOS"),
        ("AppleTv", "Apple TV 4K", "tvOS"),
        ("Android", "Pixel 8", "Android"),
        ("WinRT", "Surface", "Windows"),
        ("BlackBerry", "Bold", None),
        (None, None, None),
    ],
)
def test_platform_names_become_vocabulary_platforms(
    raw: str | None, model: str | None, expected: str | None
) -> None:
    """ "Apple" is split into iOS and iPadOS by model; unknown platforms are unreported."""
    assert mapping.platform(raw, model) == expected
    assert expected is None or expected in vocabulary.PLATFORMS


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Enrolled", True),
        ("enrolled", True),
        ("Unenrolled", False),
        ("EnrollmentInProgress", False),
        ("EnterpriseWipePending", False),
        (None, None),
    ],
)
def test_only_enrolled_counts_as_managed(status: str | None, expected: bool | None) -> None:
    """Any enrollment status but Enrolled is unmanaged; an absent one is unreported."""
    assert mapping.managed(status) is expected


def test_full_device_maps_every_field() -> None:
    """A device, its user, organisation group and smart groups are all normalised."""
    smart = [
        m.SmartGroupRef.model_validate({"SmartGroupId": {"Value": 42}, "SmartGroupName": "Pilot"}),
        m.SmartGroupRef.model_validate({"SmartGroupId": {"Value": 42}, "SmartGroupName": "Pilot"}),
    ]
    record = mapping.device_record("ws1", device(), smart)
    assert record.record_id == "362501"
    assert (record.serial, record.udid) == (MAC, MAC_UDID)
    assert (record.platform, record.os_version, record.model) == (
        "macOS",
        "15.3.2",
        "MacBook Pro (14-inch, 2023)",
    )
    assert (record.managed, record.compliance, record.owner_type) == (True, "compliant", "company")
    assert (record.supervised, record.jailbroken) == (True, False)
    assert record.last_contact == datetime(2026, 11, 21, 8, 8, 9, 460000, tzinfo=UTC)
    assert record.user is not None
    assert (record.user.username, record.user.email, record.user.full_name) == (
        "asharma",
        "anika.sharma@example.com",
        "Anika Sharma",
    )
    assert record.groups == (
        GroupRef(name="og:Engineering", id="og:2661", smart=False),
        GroupRef(name="Pilot", id="42", smart=True),
    )


def test_organisation_group_can_be_left_out() -> None:
    """With organization_group off, only smart groups are groups."""
    record = mapping.device_record("ws1", device(), (), organization_group=False)
    assert record.groups == ()


def test_device_without_user_has_no_user() -> None:
    """A staged or shared device (empty user fields) has no user record."""
    record = mapping.device_record("ws1", device(UserName="", UserEmailAddress="", UserId={}), ())
    assert record.user is None


def test_blank_compromised_status_is_unreported() -> None:
    """An empty CompromisedStatus (as event notifications send it) is None, not False."""
    assert mapping.device_record("ws1", device(CompromisedStatus=""), ()).jailbroken is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2018-03-15T08:08:09.460", datetime(2018, 3, 15, 8, 8, 9, 460000, tzinfo=UTC)),
        ("2024-09-11T13:23:29.9817843+02:00", datetime(2024, 9, 11, 11, 23, 29, 981784, UTC)),
        ("2022-01-16T09:14:00.1020757Z", datetime(2022, 1, 16, 9, 14, 0, 102075, tzinfo=UTC)),
        ("0001-01-01T00:00:00.000", None),
        ("yesterday", None),
        (None, None),
    ],
    ids=["no-zone", "offset", "z-seven-digits", "unset", "garbage", "absent"],
)
def test_timestamps_parse_with_or_without_zone(raw: str | None, expected: datetime | None) -> None:
    """Zone-less times are UTC, seven fraction digits are accepted, year 1 means unset."""
    assert m.parse_time(raw) == expected


@pytest.mark.parametrize(
    ("stored", "attested", "kind", "expected"),
    [
        (MAC_UDID, "4A0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812", IdentifierKind.UDID, True),
        (IPHONE_UDID, IPHONE_UDID.lower(), IdentifierKind.UDID, True),
        (MAC_UDID, "00008110-000A1C2E3F40801E", IdentifierKind.UDID, False),
    ],
    ids=["dashes-dropped", "lower-case", "other-device"],
)
def test_udid_match_ignores_dashes_and_case(
    stored: str, attested: str, kind: IdentifierKind, expected: bool
) -> None:
    """A UDID stored without dashes still matches the attested dashed form, and only it."""
    identifier = DeviceIdentifier(value=attested, kind=kind)
    assert mapping.matches(device(Udid=stored), identifier) is expected


def test_serial_match_is_case_insensitive_and_exact() -> None:
    """A serial matches regardless of case, a prefix does not."""
    mac = device()
    assert mapping.matches(mac, DeviceIdentifier(MAC.lower(), IdentifierKind.SERIAL))
    assert not mapping.matches(mac, DeviceIdentifier(MAC[:-1], IdentifierKind.SERIAL))
