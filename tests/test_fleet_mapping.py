"""Fleet JSON to DeviceRecord without HTTP: the pure functions of providers.fleet._mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.fleet import _mapping as mapping
from providers.fleet._models import Host, HostAnswer, HostPolicy
from providers.identifiers import classify

MAC: dict[str, Any] = {
    "id": 11,
    "uuid": "A1B2C3D4-0000-4000-8000-00000000F001",
    "hostname": "mbp-asharma.local",
    "display_name": "Anika's MacBook Pro",
    "hardware_serial": "C02FLT0MAC01",
    "hardware_model": "MacBookPro18,3",
    "platform": "darwin",
    "os_version": "macOS 15.3.2",
    "seen_time": "2025-03-14T09:26:41Z",
    "detail_updated_at": "2025-03-14T08:59:03Z",
    "team_id": 1,
    "team_name": "Engineering",
    "mdm": {"enrollment_status": "On (automatic)", "name": "Fleet"},
    "labels": [
        {"id": 6, "name": "All Hosts", "label_membership_type": "dynamic"},
        {"id": 42, "name": "MDA Pilot", "label_membership_type": "manual"},
    ],
    "policies": [
        {"id": 1, "name": "FileVault enabled", "critical": True, "response": "pass"},
        {"id": 3, "name": "Screen lock", "critical": False, "response": "fail"},
    ],
    "end_users": [
        {
            "idp_id": "u-1001",
            "idp_username": "anika.sharma@example.com",
            "idp_full_name": "Anika Sharma",
            "idp_department": "Platform Engineering",
            "idp_groups": ["mda-pilot-users"],
        }
    ],
}


def host(**overrides: Any) -> Host:
    return Host.model_validate({**MAC, **overrides})


def policies(*specs: tuple[str, bool, str]) -> list[HostPolicy]:
    return [HostPolicy(name=n, critical=c, response=r) for n, c, r in specs]


def test_mac_maps_every_field() -> None:
    """A Mac carries team, labels, IdP groups and failing policies as groups, and its IdP user."""
    record = mapping.device_record("fleet", host(), policies=True, idp=True)
    assert record == DeviceRecord(
        provider="fleet",
        record_id="11",
        serial="C02FLT0MAC01",
        udid="A1B2C3D4-0000-4000-8000-00000000F001",
        name="Anika's MacBook Pro",
        model="MacBookPro18,3",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        owner_type="company",
        last_contact=datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC),
        user=UserRecord(
            username="anika.sharma@example.com",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            department="Platform Engineering",
            id="u-1001",
        ),
        groups=(
            GroupRef(name="Engineering"),
            GroupRef(name="All Hosts", id="6", smart=True),
            GroupRef(name="MDA Pilot", id="42", smart=False),
            GroupRef(name="mda-pilot-users", directory=True),
            GroupRef(name="fleet-policy-failing:Screen lock"),
            GroupRef(name="fleet-policies-not-passing"),
        ),
    )


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([("FileVault", True, "pass")], []),
        (
            [("FileVault", True, "pass"), ("Screen lock", False, "fail")],
            ["fleet-policy-failing:Screen lock", "fleet-policies-not-passing"],
        ),
        (
            [("FileVault", True, "fail")],
            [
                "fleet-policy-failing:FileVault",
                "fleet-policies-not-passing",
                "fleet-critical-policies-not-passing",
            ],
        ),
        (
            [("FileVault", True, "")],
            [
                "fleet-policy-pending:FileVault",
                "fleet-policies-not-passing",
                "fleet-critical-policies-not-passing",
            ],
        ),
        ([], []),
    ],
    ids=["all-pass", "one-fails", "critical-fails", "critical-pending", "no-policies"],
)
def test_policy_results_become_groups(specs: list[Any], expected: list[str]) -> None:
    """Failing and pending policies, and the aggregates a none_of rule can forbid."""
    assert [g.name for g in mapping.policy_groups(policies(*specs))] == expected


def test_missing_policy_results_count_as_not_passing() -> None:
    """An answer without policy results cannot show they pass: both aggregates are set."""
    names = [g.name for g in mapping.groups(host(policies=None), policies=True, idp=False)]
    assert names[-2:] == ["fleet-policies-not-passing", "fleet-critical-policies-not-passing"]


def test_group_sources_can_be_switched_off() -> None:
    """Without policy and IdP groups only the team and labels remain."""
    names = [g.name for g in mapping.groups(host(), policies=False, idp=False)]
    assert names == ["Engineering", "All Hosts", "MDA Pilot"]


def test_a_label_named_like_the_team_keeps_its_id() -> None:
    """A team and a label of the same name are two groups: the label's id stays, so a rule that
    names it (none_of = ["17"]) still sees it."""
    quarantine = {"id": 17, "name": "Quarantine", "label_membership_type": "manual"}
    groups = mapping.groups(
        host(team_name="Quarantine", labels=[quarantine]), policies=False, idp=False
    )
    assert [(g.name, g.id) for g in groups] == [("Quarantine", None), ("Quarantine", "17")]


@pytest.mark.parametrize(
    ("mdm", "managed", "owner"),
    [
        ({"enrollment_status": "On (manual)"}, True, None),
        ({"enrollment_status": "On (automatic)"}, True, "company"),
        ({"enrollment_status": "On (personal)"}, True, "personal"),
        ({"enrollment_status": "Pending"}, False, None),
        ({"enrollment_status": "Off"}, False, None),
        ({"enrollment_status": ""}, None, None),
        (None, None, None),
    ],
)
def test_enrollment_status_says_managed_and_owner(
    mdm: dict[str, Any] | None, managed: bool | None, owner: str | None
) -> None:
    """``On (…)`` is managed, ``Off`` and ``Pending`` are not; no MDM data is unreported."""
    found = host(mdm=mdm)
    assert (mapping.managed(found), mapping.owner_type(found)) == (managed, owner)


@pytest.mark.parametrize(
    ("platform", "raw", "expected"),
    [
        ("darwin", "macOS 14.1", "14.1"),
        ("darwin", "macOS 13.4.1 (a)", "13.4.1 (a)"),
        ("ios", "iOS 18.3.1", "18.3.1"),
        ("ipados", "iPadOS 17.2", "17.2"),
        ("ubuntu", "Ubuntu 22.04.4 LTS", "Ubuntu 22.04.4 LTS"),
        ("darwin", "", None),
    ],
)
def test_apple_versions_lose_the_os_name(platform: str, raw: str, expected: str | None) -> None:
    """``macOS 14.1`` becomes ``14.1`` so min_os_version compares; other systems stay as is."""
    assert mapping.os_version(host(platform=platform, os_version=raw)) == expected


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ("darwin", "macOS"),
        ("ios", "iOS"),
        ("ipados", "iPadOS"),
        ("windows", "Windows"),
        ("ubuntu", "Linux"),
        ("rhel", "Linux"),
        ("chrome", "ChromeOS"),
        ("android", "Android"),
        ("solaris", "solaris"),
        ("", None),
    ],
)
def test_platforms_use_the_vocabulary(fleet: str, expected: str | None) -> None:
    """Fleet's platform names become the vocabulary's; an unknown one keeps Fleet's spelling
    (it is still not an Apple device), and an empty one is unreported."""
    assert mapping.platform(fleet) == expected


def test_ios_last_contact_comes_from_the_detail_refetch() -> None:
    """Fleet answers an iPhone's creation time as seen_time; the newer detail refetch counts."""
    found = host(
        platform="ios", seen_time="2024-11-02T16:41:07Z", detail_updated_at="2025-03-14T07:12:09Z"
    )
    assert mapping.last_contact(found) == datetime(2025, 3, 14, 7, 12, 9, tzinfo=UTC)


def test_placeholder_dates_are_no_contact() -> None:
    """Fleet's "never" placeholders are not a last contact."""
    found = host(seen_time="2000-01-01T00:00:00Z", detail_updated_at="0001-01-01T00:00:00Z")
    assert mapping.last_contact(found) is None


def test_a_host_named_after_the_serial_is_not_that_device() -> None:
    """Only the serial (or, for a UDID, the UUID) proves the host is the attested device."""
    impostor = host(hostname="C02FLT0VICT1", hardware_serial="C02FLTIMPOST")
    assert not mapping.matches(impostor, classify("C02FLT0VICT1"))
    assert mapping.matches(host(), classify("C02FLT0MAC01"))
    assert mapping.matches(host(), classify("a1b2c3d4-0000-4000-8000-00000000f001"))
    assert not mapping.matches(host(), classify("A1B2C3D4-0000-4000-8000-00000000F0FF"))


def test_user_email_falls_back_to_other_emails() -> None:
    """An IdP username that is no e-mail leaves the e-mail to Fleet's other known addresses."""
    users = [{"idp_username": "asharma", "other_emails": [{"email": "anika@example.org"}]}]
    assert mapping.user(host(end_users=users)) == UserRecord(
        username="asharma", email="anika@example.org"
    )
    assert mapping.user(host(end_users=[])) is None


def test_host_envelope_tolerates_unknown_and_null_fields() -> None:
    """``{"host": ...}`` with null labels, numbers as ids and new keys still parses."""
    parsed = HostAnswer.model_validate({"host": {"id": 5, "labels": None, "new": {"x": 1}}})
    assert (parsed.host.id, parsed.host.labels) == ("5", None)
