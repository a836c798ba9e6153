"""Enrichment mapping: which inventory fields reach step-ca's template data, and how much."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector.enrichment import DEFAULT_FIELDS, EnrichmentSettings, build_data
from connector.stepca import go_json
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.identifiers import classify
from tests.conftest import AppClient
from tests.helpers import config, enrich, signed, webhook

SERIAL = classify("C02TESTSERIAL")
TEMPLATES = Path(__file__).resolve().parent.parent / "posture_lab" / "templates"

DEVICE = DeviceRecord(
    provider="jamf",
    record_id="42",
    serial="C02TESTSERIAL",
    udid="0000FE00-5FAF2E5BCC2A2F4A",
    name="MBP-ASHARMA",
    model="MacBook Pro",
    platform="macOS",
    os_version="15.3.2",
    managed=True,
    supervised=False,
    compliance="compliant",
    owner_type="company",
    last_contact=datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC),
    user=UserRecord(
        username="asharma",
        email="anika@example.com",
        full_name="Anika Sharma",
        department="Platform Engineering",
        title="SRE",
        id="u-7",
    ),
    groups=(GroupRef("VPN Users", "11"), GroupRef("all managed", "10"), GroupRef("Engineering")),
)


def settings(**values: Any) -> EnrichmentSettings:
    return EnrichmentSettings.model_validate(values)


def test_default_mapping_is_the_documented_schema_without_personal_data() -> None:
    """By default data has device, user (minus e-mail and full name), sorted groups, provider."""
    assert build_data(settings(), DEVICE, SERIAL) == {
        "device": {
            "serial": "C02TESTSERIAL",
            "udid": "0000FE00-5FAF2E5BCC2A2F4A",
            "name": "MBP-ASHARMA",
            "model": "MacBook Pro",
            "platform": "macOS",
            "os_version": "15.3.2",
        },
        "user": {"username": "asharma", "department": "Platform Engineering", "title": "SRE"},
        "groups": ["all managed", "Engineering", "VPN Users"],
        "provider": "jamf",
    }


def test_personal_data_switch_adds_email_and_full_name() -> None:
    """personal_data = true adds exactly the e-mail and full name."""
    data = build_data(settings(personal_data=True), DEVICE, SERIAL)
    assert data["user"] == {
        "username": "asharma",
        "email": "anika@example.com",
        "full_name": "Anika Sharma",
        "department": "Platform Engineering",
        "title": "SRE",
    }


def test_absent_values_are_omitted_not_invented() -> None:
    """A device without a user or groups gets no user object and an empty group list."""
    data = build_data(settings(), DeviceRecord(provider="csv", serial="C02X"), SERIAL)
    assert data == {"device": {"serial": "C02X"}, "groups": [], "provider": "csv"}


def test_custom_fields_replace_the_default_mapping() -> None:
    """`fields` maps output names to sources; only those (plus provider) are sent."""
    chosen = settings(
        personal_data=True,
        fields={
            "user": "user.username",
            "mail": "user.email",
            "cert.ids": "group_ids",
            "cert.seen": "device.last_contact",
            "cert.supervised": "device.supervised",
            "attested": "identifier",
            "attested_kind": "identifier_kind",
        },
    )
    assert build_data(chosen, DEVICE, SERIAL) == {
        "user": "asharma",
        "mail": "anika@example.com",
        "cert": {"ids": ["10", "11"], "seen": "2025-03-14T09:26:41Z", "supervised": False},
        "attested": "C02TESTSERIAL",
        "attested_kind": "serial",
        "provider": "jamf",
    }


def test_exclude_drops_a_path_and_everything_under_it() -> None:
    """exclude = ["user", "device.name"] removes the user object and the device name."""
    data = build_data(settings(exclude=["user", "device.name"]), DEVICE, SERIAL)
    assert "user" not in data
    assert "name" not in data["device"]
    assert data["device"]["serial"] == "C02TESTSERIAL"


def test_constants_are_added_at_their_paths() -> None:
    """Constants land in data as configured, nested by dotted path."""
    data = build_data(
        settings(constants={"tenant": "acme", "policy.tier": 2, "policy.tags": ["a", "b"]}),
        DEVICE,
        SERIAL,
    )
    assert data["tenant"] == "acme"
    assert data["policy"] == {"tier": 2, "tags": ["a", "b"]}


def test_group_list_is_capped_deterministically_and_logged() -> None:
    """Over max_list_items, the first names in case-insensitive order are kept and it is logged."""
    device = DeviceRecord(
        provider="jamf", groups=tuple(GroupRef(f"G{i:02d}") for i in (5, 3, 9, 1))
    )
    with capture_logs() as logs:
        data = build_data(settings(max_list_items=2), device, SERIAL)
    assert data["groups"] == ["G01", "G03"]
    assert logs == [
        {
            "event": "enrichment.truncated",
            "log_level": "warning",
            "field": "groups",
            "reason": "list_too_long",
            "kept": 2,
            "dropped": 2,
            "limit": 2,
            "provider": "jamf",
        }
    ]


def test_overlong_value_is_dropped_not_cut_and_not_logged_verbatim() -> None:
    """A string over max_value_bytes is left out whole, and the log names only its length."""
    long_department = "D" * 200
    device = DeviceRecord(
        provider="jamf", user=UserRecord(username="a", department=long_department)
    )
    with capture_logs() as logs:
        data = build_data(settings(), device, SERIAL)
    assert data["user"] == {"username": "a"}
    assert logs[0]["field"] == "user.department"
    assert logs[0]["length"] == 200
    assert long_department not in repr(logs)


def test_overlong_group_names_are_dropped_from_the_list() -> None:
    """A group name over max_value_bytes is skipped; the other groups stay."""
    device = DeviceRecord(provider="jamf", groups=(GroupRef("ok"), GroupRef("x" * 300)))
    with capture_logs() as logs:
        data = build_data(settings(), device, SERIAL)
    assert data["groups"] == ["ok"]
    assert logs[0]["reason"] == "value_too_long"


def test_duplicate_group_names_appear_once() -> None:
    """A name reported twice (device and user group) is sent once."""
    device = DeviceRecord(provider="jamf", groups=(GroupRef("Eng", "1"), GroupRef("Eng", "2")))
    assert build_data(settings(), device, SERIAL)["groups"] == ["Eng"]


BAD = [
    ("personal-without-switch", {"fields": {"mail": "user.email"}}, "personal_data = true"),
    ("unknown-source", {"fields": {"x": "device.colour"}}, "Input should be"),
    ("dash-in-output", {"fields": {"user-name": "user.username"}}, "not an output path"),
    ("digit-start", {"constants": {"1x": "a"}}, "not an output path"),
    ("too-deep", {"constants": {"a.b.c.d.e": "a"}}, "not an output path"),
    (
        "overlap-fields",
        {"fields": {"user": "user.username", "user.dept": "user.department"}},
        "overlap",
    ),
    ("constant-hides-field", {"constants": {"device": "x"}}, "overlap"),
    ("constant-provider", {"constants": {"provider": "x"}}, "overlap"),
    ("constant-nan", {"constants": {"tier": float("nan")}}, "tier: nan and inf are not JSON"),
    ("constant-inf", {"constants": {"a.b": float("-inf")}}, "a.b: nan and inf are not JSON"),
    ("provider-reserved", {"fields": {"provider": "user.username"}}, "reserved"),
    ("exclude-unknown", {"exclude": ["device.colour"]}, "matches no field"),
    ("exclude-provider", {"exclude": ["provider"]}, "always included"),
    ("empty-fields", {"fields": {}}, "fields is empty"),
    ("oversize", {"max_list_items": 1000, "max_value_bytes": 1024}, "more than max_bytes"),
    ("unknown-key", {"personal": True}, "Extra inputs"),
]


@pytest.mark.parametrize(("values", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_meaningless_mappings_are_refused(values: dict[str, Any], message: str) -> None:
    """Mappings that would hide, leak or overflow data are config errors."""
    with pytest.raises(ValidationError, match=message):
        EnrichmentSettings.model_validate(values)


def test_default_limits_fit_the_default_byte_budget() -> None:
    """The default mapping, even with personal data, fits max_bytes in the worst case."""
    assert settings(personal_data=True).worst_case_bytes <= settings().max_bytes


# Any code point but surrogates, drawn as integers: `st.characters` would first build
# Hypothesis's Unicode category table, which costs seconds on a cold run under coverage.
any_character = st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF).map(
    chr
) | st.sampled_from("<>&\x00\u2028😀")
unicode_text = st.text(any_character, max_size=40)


@given(
    strings=st.lists(unicode_text, min_size=12, max_size=12),
    groups=st.lists(unicode_text.filter(bool), max_size=12),
    personal=st.booleans(),
)
def test_worst_case_bound_holds_for_any_device(
    strings: list[str], groups: list[str], personal: bool
) -> None:
    """No device's data, encoded as Go or as ASCII-only JSON, exceeds worst_case_bytes."""
    limits = settings(personal_data=personal, max_list_items=8, max_value_bytes=24, max_bytes=4096)
    device = DeviceRecord(
        provider="jamf",
        serial=strings[0],
        udid=strings[1],
        name=strings[2],
        model=strings[3],
        platform=strings[4],
        os_version=strings[5],
        user=UserRecord(*strings[6:11]),
        groups=tuple(GroupRef(g) for g in groups),
    )
    with capture_logs():
        data = build_data(limits, device, SERIAL)
    assert len(go_json(data)) <= limits.worst_case_bytes
    assert len(json.dumps(data, separators=(",", ":")).encode()) <= limits.worst_case_bytes


def test_device_identity_template_reads_only_mapped_paths() -> None:
    """Every .Webhooks.people path in device-identity.tpl is produced by the default mapping."""
    template = (TEMPLATES / "device-identity.tpl").read_text(encoding="utf-8")
    used = set(re.findall(r"\.Webhooks\.people\.([A-Za-z_.]+[A-Za-z_])", template))
    produced = set(DEFAULT_FIELDS) | {p.rsplit(".", 1)[0] for p in DEFAULT_FIELDS}
    assert used
    assert used <= produced
    assert {"user.username", "user.email", "groups", "user.department", "device.serial"} <= used


async def test_mapping_and_personal_switch_change_what_step_ca_receives(
    app_client: AppClient, inventory: Path
) -> None:
    """A webhook's [webhooks.enrichment] fields, constants and personal_data shape its data."""
    enrichment = {
        "personal_data": True,
        "fields": {"user": "user.username", "mail": "user.email", "ou": "groups"},
        "constants": {"tenant": "acme"},
    }
    client = await app_client(config(inventory, webhooks=[webhook(enrichment=enrichment)]))
    body = enrich("C02TEST00001")
    response = await client.post(
        "/webhooks/people", data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    answer = await response.json()
    assert answer == {
        "allow": True,
        "data": {
            "user": "asharma",
            "mail": "anika@example.com",
            "ou": ["All Managed", "MDA Pilot"],
            "provider": "inventory",
            "tenant": "acme",
        },
    }
