"""Mosyle JSON to DeviceRecord without HTTP: providers.mosyle._mapping and the envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.mosyle import MosyleSettings
from providers.mosyle import _mapping as mapping
from providers.mosyle._auth import jwt_expiry, secret_free
from providers.mosyle._models import (
    DeviceGroup,
    DevicesPayload,
    Envelope,
    MosyleDevice,
    MosyleRefusal,
    payload,
)

MAC: dict[str, Any] = {
    "deviceudid": "9F2E4C11-0000-5000-8000-00000000A001",
    "serial_number": "C02MSY0MAC01",
    "device_name": "MBP-ASHARMA",
    "device_model": "MacBookPro18,3",
    "device_model_name": "MacBook Pro (14-inch, 2021)",
    "osversion": "15.3.2",
    "status": "IN",
    "is_deleted": "0",
    "is_supervised": "true",
    "date_last_beat": "1741944401",
    "userid": "asharma",
    "useremail": "anika.sharma@example.com",
    "username": "Anika Sharma",
    "tags": "engineering, mda,engineering",
}
ENROLLED = frozenset({"IN"})


def device(**overrides: Any) -> MosyleDevice:
    return MosyleDevice.model_validate({**MAC, **overrides})


def test_mac_maps_every_field_with_tags_and_device_groups() -> None:
    """A Mac carries its tags, then its device groups by UDID, and its Mosyle user."""
    index = mapping.group_index(
        [
            DeviceGroup(id="210", name="MDA Pilot", deviceudids=[MAC["deviceudid"].lower()]),
            DeviceGroup(id="211", name="Quarantine", deviceudids=["OTHER"]),
        ]
    )
    record = mapping.device_record("mosyle", device(), "mac", enrolled=ENROLLED, index=index)
    assert record == DeviceRecord(
        provider="mosyle",
        record_id="9F2E4C11-0000-5000-8000-00000000A001",
        serial="C02MSY0MAC01",
        udid="9F2E4C11-0000-5000-8000-00000000A001",
        name="MBP-ASHARMA",
        model="MacBook Pro (14-inch, 2021)",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC),
        user=UserRecord(
            username="asharma",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            id="asharma",
        ),
        groups=(
            GroupRef(name="engineering"),
            GroupRef(name="mda"),
            GroupRef(name="MDA Pilot", id="210"),
        ),
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"status": "LIMBO"}, False),
        ({"status": "in"}, True),
        ({"is_deleted": "1"}, False),
        ({"status": ""}, None),
        ({"status": None}, None),
    ],
    ids=["enrolled", "limbo", "lower-case", "deleted", "blank", "absent"],
)
def test_managed_follows_the_enrolled_statuses(
    overrides: dict[str, Any], expected: bool | None
) -> None:
    """Only an enrolled status counts; deleted devices never; no status is unreported."""
    assert mapping.managed(device(**overrides), ENROLLED) is expected


@pytest.mark.parametrize(
    ("family", "model", "expected"),
    [
        ("mac", "MacBookPro18,3", "macOS"),
        ("ios", "iPhone16,1", "iOS"),
        ("ios", "iPad13,18", "iPadOS"),
        ("tvos", "AppleTV11,1", "tvOS"),
        ("visionos", "RealityDevice14,1", "visionOS"),
        ("watchos", "Watch7,1", None),
    ],
)
def test_platform_comes_from_the_family_asked(
    family: str, model: str, expected: str | None
) -> None:
    """The family a device was listed under names its platform; iPads come out of ``ios``."""
    found = device(device_model=model, device_model_name=None, model_name=None)
    assert mapping.platform(found, family) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1741944401", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("0", None),
        ("", None),
        (None, None),
        ("yesterday", None),
        ("99999999999999999999", None),
        ("\u00b2", None),  # a digit to `str.isdigit`, refused by `int`
        ("\u0661\u0662", None),  # Arabic-Indic digits, which `int` reads
        ("9" * 5000, None),  # past 4,300 digits `int` raises
    ],
)
def test_dates_are_unix_seconds(raw: str | None, expected: datetime | None) -> None:
    """Mosyle's dates are Unix seconds as strings; blanks, zero and junk are unreported."""
    assert mapping.epoch(raw) == expected


def test_last_contact_falls_back_to_the_info_date() -> None:
    """Without a heartbeat the last device-info update is the last contact."""
    found = device(date_last_beat="", date_info="1741940000")
    assert mapping.last_contact(found) == datetime(2025, 3, 14, 8, 13, 20, tzinfo=UTC)


def test_tags_as_list_and_userless_devices() -> None:
    """Tags may come as a list; a device without user fields has no user."""
    found = device(tags=["cart-a", None, {"name": "lobby"}], userid="", useremail="", username="")
    assert [g.name for g in mapping.groups(found, None)] == ["cart-a", "lobby"]
    assert mapping.user(found) is None


@pytest.mark.parametrize(
    "response",
    [
        {"devices": [MAC], "rows": "1", "page_size": 100, "page": 1},
        [{"devices": [MAC], "rows": 1, "page_size": "100", "page": 1}],
    ],
    ids=["object", "one-element-list"],
)
def test_envelope_reads_object_and_list_responses(response: Any) -> None:
    """Mosyle's examples show ``response`` as an object and as a one-element list."""
    body = payload(Envelope(status="OK", response=response))
    assert body is not None
    parsed = DevicesPayload.model_validate(body)
    assert (len(parsed.devices), parsed.rows, parsed.page_size) == (1, 1, 100)


@pytest.mark.parametrize(
    "response",
    [
        {"status": "DEVICES_NOTFOUND", "info": "No devices found."},
        [{"status": "DEVICES_NOTFOUND"}],
    ],
)
def test_not_found_marker_is_an_answer(response: Any) -> None:
    """``DEVICES_NOTFOUND`` inside a 200 answer means "nothing matched", not an error."""
    assert payload(Envelope(status="OK", response=response)) is None


@pytest.mark.parametrize(
    ("status", "response", "code"),
    [
        ("OK", [{"status": "MISSING_DATA", "info": "Missing key: os"}], "MISSING_DATA"),
        ("OK", {"status": "UNKNOWN_COLUMNS"}, "UNKNOWN_COLUMNS"),
        ("ERROR", None, "ERROR"),
        (None, {"devices": []}, "no status"),
        ("OK", "devices", "no response object"),
    ],
)
def test_envelope_errors_raise_with_mosyle_code(
    status: str | None, response: Any, code: str
) -> None:
    """Any other status, top-level or inside the response, is a refusal carrying its code."""
    with pytest.raises(MosyleRefusal) as refusal:
        payload(Envelope(status=status, response=response))
    assert refusal.value.code == code


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    """The JWT's ``exp`` claim sets the lifetime; anything unreadable gives None."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NDE5NDQ0MDF9.sig"
    assert jwt_expiry(token) == 1741944401.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.bm90IGpzb24.c") is None


def test_error_texts_repeating_a_secret_are_dropped() -> None:
    """Mosyle's error text reaches logs only when it repeats no token, e-mail or password."""
    settings = MosyleSettings.model_validate(
        {
            "kind": "mosyle",
            "access_token": "tok-123",
            "email": "api@example.com",
            "password": "pw-9",
        }
    )
    assert secret_free("Invalid accessToken", settings) == "Invalid accessToken"
    assert secret_free("Invalid accessToken tok-123", settings) is None
    assert secret_free("wrong password pw-9", settings) is None
    assert secret_free("unknown user api@example.com", settings) is None
