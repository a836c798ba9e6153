"""Google mobile devices to DeviceRecord, without HTTP: managed, platform, version, user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers import vocabulary
from providers.google import _mapping as mapping
from providers.google import _models as m
from tests.fakes.google import IPHONE, default_devices

MANAGED_TYPES = ("IOS_SYNC", "ANDROID")


def device(**fields: Any) -> m.MobileDevice:
    """The fake's approved iPhone with `fields` replaced."""
    return m.MobileDevice.model_validate({**default_devices()[0], **fields})


@pytest.mark.parametrize(
    ("status", "device_type", "expected"),
    [
        ("APPROVED", "IOS_SYNC", True),
        ("approved", "ANDROID", True),
        ("APPROVED", "GOOGLE_SYNC", False),
        ("BLOCKED", "IOS_SYNC", False),
        ("PENDING", "IOS_SYNC", False),
        ("WIPED", "IOS_SYNC", False),
        (None, "IOS_SYNC", None),
    ],
    ids=[
        "approved-ios",
        "approved-android",
        "exchange-only",
        "blocked",
        "pending",
        "wiped",
        "none",
    ],
)
def test_only_approved_managed_types_are_managed(
    status: str | None, device_type: str, expected: bool | None
) -> None:
    """Approved counts only on a managed device type; other statuses are unmanaged."""
    assert mapping.managed(device(status=status, type=device_type), MANAGED_TYPES) is expected


@pytest.mark.parametrize(
    ("device_type", "os", "model", "expected"),
    [
        ("IOS_SYNC", "iOS 18.3.1", "iPhone 15 Pro", "iOS"),
        ("IOS_SYNC", "iOS 18.2", "iPad Air (5th generation)", "iPadOS"),
        ("GOOGLE_SYNC", "iOS 17.6", "iPhone", "iOS"),
        ("ANDROID", "Android 14", "Pixel 8", "Android"),
        ("WINDOWS", "Windows 11", "Surface", "Windows"),
        ("GOOGLE_SYNC", "BlackBerry 10", "Q10", None),
        ("ANDROID", "iOS 17.0", "Pixel 8", "Android"),  # the type decides, not what it reports
        ("CHROME_OS", "ChromeOS 120", "Chromebook", "ChromeOS"),
        ("LINUX", "Ubuntu 24.04", "PC", "Linux"),
    ],
)
def test_platform_comes_from_type_os_and_model(
    device_type: str, os: str, model: str, expected: str | None
) -> None:
    """iOS devices split into iOS and iPadOS by model; unknown systems are unreported."""
    found = mapping.platform(device(type=device_type, os=os, model=model))
    assert found == expected
    assert found is None or found in vocabulary.PLATFORMS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("iOS 18.3.1", "18.3.1"), ("IOS 4.3", "4.3"), ("Android 14", "14"), ("", None), (None, None)],
)
def test_os_version_is_the_number_in_os(raw: str | None, expected: str | None) -> None:
    """The dotted number is taken out of Google's "iOS 18.3.1"."""
    assert mapping.os_version(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Compromised", True),
        ("No compromise detected", False),
        ("Uncompromised", False),
        ("Undetected", None),
        (None, None),
    ],
)
def test_compromised_status_becomes_jailbroken(raw: str | None, expected: bool | None) -> None:
    """A compromised device is jailbroken; an undetected state is unreported."""
    assert mapping.jailbroken(raw) is expected


def test_full_device_maps_every_reported_field() -> None:
    """Serial, model, platform, version, managed, owner and last sync; no UDID or groups."""
    record = mapping.device_record("google", device(), managed_types=MANAGED_TYPES)
    assert (record.record_id, record.serial, record.udid) == ("AFiQxQ80001", IPHONE, None)
    assert (record.platform, record.os_version, record.model) == ("iOS", "18.3.1", "iPhone 15 Pro")
    assert (record.managed, record.jailbroken) == (True, False)
    assert (record.compliance, record.owner_type, record.groups) == (None, None, ())
    assert record.last_contact == datetime(2026, 11, 21, 7, 12, 9, 123000, tzinfo=UTC)
    assert record.user is not None
    assert (record.user.email, record.user.full_name) == (
        "anika.sharma@example.com",
        "Anika Sharma",
    )


def test_device_without_owner_has_no_user() -> None:
    """A device with no owner e-mail or name has no user record."""
    assert mapping.user(device(email=[], name=[])) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-21T07:12:09.123Z", datetime(2026, 11, 21, 7, 12, 9, 123000, tzinfo=UTC)),
        ("1970-01-01T00:00:00.000Z", None),
        ("soon", None),
        (None, None),
    ],
)
def test_last_sync_epoch_means_never(raw: str | None, expected: datetime | None) -> None:
    """The Unix epoch stands for "never synced" and becomes None."""
    assert m.parse_time(raw) == expected


def test_serial_match_is_exact_not_prefix() -> None:
    """Google's loose search may return a longer serial; only the exact one matches."""
    assert mapping.matches(device(), IPHONE.lower())
    assert not mapping.matches(device(serialNumber=IPHONE + "2"), IPHONE)
