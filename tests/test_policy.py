"""Policy rules, reason codes, explanations and config checks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from connector.policy import (
    RULES,
    PolicyError,
    PolicySettings,
    UnreportableRule,
    check_policy,
    evaluate,
    format_span,
    parse_duration,
)
from connector.policy._rule import MAX_MESSAGE
from connector.policy._settings import fold
from connector.versions import OsVersion, parse_version
from providers.base import DeviceRecord, GroupRef
from providers.identifiers import DeviceIdentifier, classify
from tests.conftest import AppClient
from tests.helpers import AUTH_ID, ENRICH_ID, authorize, config, enrich, signed, webhook

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
SERIAL = classify("C02TESTSERIAL")
UDID = classify("00008030-001A2B3C4D5E6F70")

# A device that reports everything and passes every rule of STRICT.
GOOD = DeviceRecord(
    provider="jamf",
    serial="C02TESTSERIAL",
    managed=True,
    supervised=True,
    compliance="compliant",
    platform="macOS",
    os_version="15.3",
    owner_type="company",
    last_contact=NOW - timedelta(days=1),
    groups=(GroupRef("Engineering", id="10"), GroupRef("VPN Users", id="11")),
)

STRICT: dict[str, Any] = {
    "identifier_kind": ["serial", "udid"],
    "provider": ["jamf"],
    "managed": True,
    "supervised": True,
    "compliance": ["compliant", "inGracePeriod"],
    "platform": ["macOS", "iOS"],
    "owner_type": ["company"],
    "min_os_version": {"macOS": "15.0.1", "iOS": "18.3"},
    "max_last_contact_age": "14d",
    "groups": {"all_of": ["engineering"], "any_of": ["vpn users", "Admins"], "none_of": ["Lost"]},
}


def dev(**changes: Any) -> DeviceRecord:
    return dataclasses.replace(GOOD, **changes)


def check(policy: dict[str, Any], device: DeviceRecord, ident: DeviceIdentifier = SERIAL) -> Any:
    return evaluate(PolicySettings.model_validate(policy), device, ident, now=NOW)


# (policy, device, identifier, failing codes in order)
RULE_CASES: list[tuple[str, dict[str, Any], DeviceRecord, DeviceIdentifier, tuple[str, ...]]] = [
    ("strict-all-pass", STRICT, GOOD, SERIAL, ()),
    ("default-managed-pass", {}, dev(), SERIAL, ()),
    ("managed-false", {}, dev(managed=False), SERIAL, ("device-unmanaged",)),
    ("managed-unreported", {}, dev(managed=None), SERIAL, ("attribute-unreported",)),
    ("managed-off-unmanaged-passes", {"managed": False}, dev(managed=False), SERIAL, ()),
    (
        "managed-unreported-allowed",
        {"allow_unreported": ["managed"]},
        dev(managed=None),
        SERIAL,
        (),
    ),
    ("supervised-pass", {"supervised": True}, dev(), SERIAL, ()),
    (
        "supervised-false",
        {"supervised": True},
        dev(supervised=False),
        SERIAL,
        ("device-unsupervised",),
    ),
    (
        "supervised-unreported",
        {"supervised": True},
        dev(supervised=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    ("supervised-off-by-default", {}, dev(supervised=False), SERIAL, ()),
    ("compliance-pass", {"compliance": ["compliant"]}, dev(), SERIAL, ()),
    (
        "compliance-case-insensitive",
        {"compliance": ["INGRACEPERIOD"]},
        dev(compliance="inGracePeriod"),
        SERIAL,
        (),
    ),
    (
        "compliance-fail",
        {"compliance": ["compliant"]},
        dev(compliance="noncompliant"),
        SERIAL,
        ("compliance-not-allowed",),
    ),
    (
        "compliance-unreported",
        {"compliance": ["compliant"]},
        dev(compliance=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    (
        "compliance-unreported-allowed",
        {"compliance": ["compliant"], "allow_unreported": ["compliance"]},
        dev(compliance=None),
        SERIAL,
        (),
    ),
    ("platform-pass", {"platform": ["macos"]}, dev(), SERIAL, ()),
    ("platform-fail", {"platform": ["iOS"]}, dev(), SERIAL, ("platform-not-allowed",)),
    (
        "platform-unreported",
        {"platform": ["iOS"]},
        dev(platform=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    ("owner-pass", {"owner_type": ["company"]}, dev(), SERIAL, ()),
    (
        "owner-fail",
        {"owner_type": ["company"]},
        dev(owner_type="personal"),
        SERIAL,
        ("owner-type-not-allowed",),
    ),
    (
        "owner-unreported",
        {"owner_type": ["company"]},
        dev(owner_type=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    ("minos-equal-passes", {"min_os_version": {"macOS": "15.3.0"}}, dev(), SERIAL, ()),
    (
        "minos-newer-minor",
        {"min_os_version": {"iOS": "17.9"}},
        dev(platform="iOS", os_version="17.10"),
        SERIAL,
        (),
    ),
    (
        "minos-older-minor",
        {"min_os_version": {"iOS": "17.10"}},
        dev(platform="iOS", os_version="17.9"),
        SERIAL,
        ("os-version-too-old",),
    ),
    (
        "minos-patch-needed",
        {"min_os_version": {"macOS": "15.0.1"}},
        dev(os_version="15"),
        SERIAL,
        ("os-version-too-old",),
    ),
    (
        "minos-build-suffix-ignored",
        {"min_os_version": {"macOS": "14.4.1"}},
        dev(os_version="14.4.1 (23E224)"),
        SERIAL,
        (),
    ),
    ("minos-other-platform-no-minimum", {"min_os_version": {"iOS": "99"}}, dev(), SERIAL, ()),
    (
        "minos-platform-case",
        {"min_os_version": {"MACOS": "16"}},
        dev(),
        SERIAL,
        ("os-version-too-old",),
    ),
    (
        "minos-version-unreported",
        {"min_os_version": {"macOS": "15"}},
        dev(os_version=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    (
        "minos-platform-unreported",
        {"min_os_version": {"macOS": "15"}},
        dev(platform=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    (
        "minos-unparsable",
        {"min_os_version": {"macOS": "15"}},
        dev(os_version="fifteen"),
        SERIAL,
        ("os-version-unparsable",),
    ),
    (
        "minos-unparsable-not-excused",
        {"min_os_version": {"macOS": "15"}, "allow_unreported": ["min_os_version"]},
        dev(os_version="15b2"),
        SERIAL,
        ("os-version-unparsable",),
    ),
    ("contact-recent", {"max_last_contact_age": "14d"}, dev(), SERIAL, ()),
    ("contact-exactly-at-limit", {"max_last_contact_age": 86400}, dev(), SERIAL, ()),
    ("contact-stale", {"max_last_contact_age": "23h"}, dev(), SERIAL, ("last-contact-too-old",)),
    (
        "contact-in-future-skew",
        {"max_last_contact_age": "1h"},
        dev(last_contact=NOW + timedelta(minutes=5)),
        SERIAL,
        (),
    ),
    (
        "contact-a-day-ahead-passes",
        {"max_last_contact_age": "1h"},
        dev(last_contact=NOW + timedelta(days=1)),
        SERIAL,
        (),
    ),
    (
        "contact-far-in-future",
        {"max_last_contact_age": "1d"},
        dev(last_contact=datetime(2999, 1, 1, tzinfo=UTC)),
        SERIAL,
        ("last-contact-in-future",),
    ),
    (
        "contact-unreported",
        {"max_last_contact_age": "1d"},
        dev(last_contact=None),
        SERIAL,
        ("attribute-unreported",),
    ),
    (
        "contact-unreported-allowed",
        {"max_last_contact_age": "1d", "allow_unreported": ["max_last_contact_age"]},
        dev(last_contact=None),
        SERIAL,
        (),
    ),
    ("provider-pass", {"provider": ["intune", "jamf"]}, dev(), SERIAL, ()),
    ("provider-fail", {"provider": ["intune"]}, dev(), SERIAL, ("provider-not-allowed",)),
    (
        "kind-serial-only-with-udid",
        {"identifier_kind": ["serial"]},
        dev(),
        UDID,
        ("identifier-kind-not-allowed",),
    ),
    ("kind-udid-pass", {"identifier_kind": ["udid"]}, dev(), UDID, ()),
    ("any-of-by-name", {"groups": {"any_of": ["vpn users"]}}, dev(), SERIAL, ()),
    ("any-of-by-id", {"groups": {"any_of": ["11"]}}, dev(), SERIAL, ()),
    ("any-of-miss", {"groups": {"any_of": ["Admins"]}}, dev(), SERIAL, ("group-required",)),
    (
        "any-of-no-groups",
        {"groups": {"any_of": ["Admins"]}},
        dev(groups=()),
        SERIAL,
        ("group-required",),
    ),
    ("all-of-pass", {"groups": {"all_of": ["ENGINEERING", "11"]}}, dev(), SERIAL, ()),
    (
        "all-of-one-missing",
        {"groups": {"all_of": ["Engineering", "Admins"]}},
        dev(),
        SERIAL,
        ("group-required",),
    ),
    (
        "none-of-hit-by-name",
        {"groups": {"none_of": [" vpn USERS "]}},
        dev(),
        SERIAL,
        ("group-forbidden",),
    ),
    ("none-of-hit-by-id", {"groups": {"none_of": ["10"]}}, dev(), SERIAL, ("group-forbidden",)),
    ("none-of-miss", {"groups": {"none_of": ["Lost"]}}, dev(), SERIAL, ()),
    (
        "strict-unmanaged-and-stale",
        STRICT,
        dev(managed=False, last_contact=NOW - timedelta(days=30)),
        SERIAL,
        ("device-unmanaged", "last-contact-too-old"),
    ),
    (
        "strict-everything-fails",
        STRICT,
        DeviceRecord(
            provider="csv",
            managed=False,
            supervised=False,
            compliance="noncompliant",
            platform="Windows",
            os_version="10.0",
            owner_type="personal",
            last_contact=NOW - timedelta(days=99),
            groups=(GroupRef("Lost"),),
        ),
        UDID,
        (
            "provider-not-allowed",
            "device-unmanaged",
            "device-unsupervised",
            "compliance-not-allowed",
            "platform-not-allowed",
            "owner-type-not-allowed",
            "last-contact-too-old",
            "group-required",
            "group-required",
            "group-forbidden",
        ),
    ),
    (
        "strict-nothing-reported",
        STRICT,
        DeviceRecord(provider="jamf"),
        SERIAL,
        ("attribute-unreported",) * 7 + ("group-required", "group-required"),
    ),
]


@pytest.mark.parametrize(
    ("policy", "device", "ident", "codes"),
    [c[1:] for c in RULE_CASES],
    ids=[c[0] for c in RULE_CASES],
)
def test_rule_table(
    policy: dict[str, Any], device: DeviceRecord, ident: DeviceIdentifier, codes: tuple[str, ...]
) -> None:
    """Each rule allows or denies with its documented code, in evaluation order."""
    result = check(policy, device, ident)
    assert tuple(o.code for o in result.failures) == codes
    assert result.allow is (not codes)
    assert all(o.code is None for o in result.outcomes if o.passed)


def test_default_policy_checks_only_managed() -> None:
    """An empty [webhooks.policy] runs exactly one rule: managed."""
    result = check({}, GOOD)
    assert [o.rule for o in result.outcomes] == ["managed"]


def test_strict_policy_lists_every_rule_in_order() -> None:
    """Every configured rule yields one outcome, in the documented order."""
    result = check(STRICT, GOOD)
    assert [o.rule for o in result.outcomes] == [
        "identifier_kind",
        "provider",
        "managed",
        "supervised",
        "compliance",
        "platform",
        "owner_type",
        "min_os_version",
        "max_last_contact_age",
        "groups.all_of",
        "groups.any_of",
        "groups.none_of",
    ]


def test_rule_table_agrees_with_the_settings() -> None:
    """Each rule key is unique, and allow_unreported accepts exactly the rules that can report
    attribute-unreported, so a new rule cannot be left out of either."""
    keys = [rule.key for rule in RULES]
    assert len(keys) == len(set(keys))
    assert {r.key for r in RULES if r.unreportable} == set(get_args(UnreportableRule))


OBSERVED_CASES = [
    ("kind", {"identifier_kind": ["serial"]}, GOOD, "identifier_kind", "udid"),
    ("provider", {"provider": ["intune"]}, GOOD, "provider", "jamf"),
    ("managed", {}, dev(managed=False), "managed", "false"),
    ("compliance", {"compliance": ["compliant"]}, GOOD, "compliance", "compliant"),
    ("os", {"min_os_version": {"macOS": "16"}}, GOOD, "min_os_version", "macOS 15.3"),
    (
        "contact",
        {"max_last_contact_age": "1h"},
        GOOD,
        "max_last_contact_age",
        "2025-03-19T12:00:00+00:00 (1d ago)",
    ),
    ("groups", {"groups": {"any_of": ["x"]}}, GOOD, "groups.any_of", "Engineering, VPN Users"),
    ("unreported", {"owner_type": ["company"]}, dev(owner_type=None), "owner_type", None),
]


@pytest.mark.parametrize(
    ("policy", "device", "rule", "observed"),
    [c[1:] for c in OBSERVED_CASES],
    ids=[c[0] for c in OBSERVED_CASES],
)
def test_outcome_records_the_value_it_saw(
    policy: dict[str, Any], device: DeviceRecord, rule: str, observed: str | None
) -> None:
    """Each outcome's `observed` is the device value the rule judged (None when unreported)."""
    result = check(policy, device, UDID)
    (outcome,) = [o for o in result.outcomes if o.rule == rule]
    assert outcome.observed == observed


def test_observed_group_list_is_elided_after_twenty() -> None:
    """A device in many groups shows the first 20 names and a count, keeping lookup readable."""
    groups = tuple(GroupRef(f"g{i:02d}") for i in range(25))
    result = check({"groups": {"none_of": ["x"]}}, dev(groups=groups))
    observed = result.outcomes[-1].observed
    assert observed is not None
    assert observed.startswith("g00, g01")
    assert observed.endswith("g19, … (+5 more)")


def test_report_first_puts_only_the_first_failure_in_the_error() -> None:
    """report = "first" answers with the first failing rule's code and message."""
    result = check(
        {"compliance": ["compliant"], "groups": {"none_of": ["Engineering"]}},
        dev(compliance="noncompliant"),
    )
    assert result.error == PolicyError(
        "compliance-not-allowed",
        "compliance state noncompliant is not allowed (allowed: compliant)",
    )


def test_report_all_joins_messages_under_the_first_code() -> None:
    """report = "all" joins every failure's message, with the first failure's code."""
    result = check(
        {"report": "all", "compliance": ["compliant"], "groups": {"none_of": ["Engineering"]}},
        dev(compliance="noncompliant"),
    )
    assert result.error == PolicyError(
        "compliance-not-allowed",
        "compliance state noncompliant is not allowed (allowed: compliant);"
        " device is in forbidden groups: Engineering",
    )
    assert len(result.failures) == 2


def test_allowed_device_has_no_error() -> None:
    """A device that passes every rule has no error object."""
    assert check(STRICT, GOOD).error is None


def test_unreported_message_names_the_inventory() -> None:
    """An unreported field's message says which inventory lacks it, so admins know where to look."""
    result = check({"supervised": True}, dev(supervised=None, provider="intune-prod"))
    assert result.failures[0].message == (
        "inventory intune-prod does not report the device's supervised state"
    )


def test_now_is_injected_not_read() -> None:
    """The last-contact rule ages the device against the `now` it is given."""
    policy = PolicySettings.model_validate({"max_last_contact_age": "2d"})
    device = dev(last_contact=datetime(2020, 1, 1, tzinfo=UTC))
    early = evaluate(policy, device, SERIAL, now=datetime(2020, 1, 2, tzinfo=UTC))
    late = evaluate(policy, device, SERIAL, now=datetime(2020, 1, 4, tzinfo=UTC))
    assert early.allow
    assert [o.code for o in late.failures] == ["last-contact-too-old"]


def test_naive_last_contact_is_read_as_utc() -> None:
    """A provider's naive timestamp is taken as UTC rather than crashing the comparison."""
    naive = (NOW - timedelta(hours=2)).replace(tzinfo=None)
    assert check({"max_last_contact_age": "3h"}, dev(last_contact=naive)).allow
    assert not check({"max_last_contact_age": "1h"}, dev(last_contact=naive)).allow


VERSION_ORDER = [
    ("17.10>17.9", "17.10", "17.9", 1),
    ("15.0.1>15", "15.0.1", "15", 1),
    ("15==15.0", "15", "15.0", 0),
    ("15==15.0.0", "15.0.0", "15", 0),
    ("14.7<15", "14.7", "15", -1),
    ("10.15.7<11", "10.15.7", "11.0", -1),
    ("18.3.1>18.3", "18.3.1", "18.3", 1),
    ("rsr-suffix==base", "16.5.1 (a)", "16.5.1", 0),
    ("build-suffix", "14.4.1 (23E224)", "14.4", 1),
    ("windows-build", "10.0.22631.4317", "10.0.19045", 1),
    ("zero==0.0", "0", "0.0", 0),
]


@pytest.mark.parametrize(
    ("a", "b", "sign"), [c[1:] for c in VERSION_ORDER], ids=[c[0] for c in VERSION_ORDER]
)
def test_version_ordering_examples(a: str, b: str, sign: int) -> None:
    """Versions compare numerically per component, missing components read as zero."""
    va, vb = OsVersion.parse(a), OsVersion.parse(b)
    assert ((va > vb) - (va < vb)) == sign
    assert (va == vb) is (sign == 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fifteen",
        "15.",
        ".15",
        "15..1",
        "15.0b3",
        "v15",
        "1.2.3.4.5.6.7",
        "1" * 10,
        "15 " + "x" * 70,
        "\u0661\u0667.\u0660",  # 17.0 in Arabic-Indic digits: `int` would read them
        "17.\u00b2",  # a superscript two: a digit to `str.isdigit`
    ],
    ids=[
        "empty",
        "word",
        "trailing-dot",
        "leading-dot",
        "double-dot",
        "beta",
        "prefix-v",
        "seven-parts",
        "ten-digits",
        "too-long",
        "arabic-indic-digits",
        "superscript",
    ],
)
def test_version_shapes_that_do_not_parse(text: str) -> None:
    """Anything but 1-6 dotted numbers (plus a spaced suffix) is not a version."""
    assert parse_version(text) is None


DURATIONS = [
    ("days", "14d", timedelta(days=14)),
    ("compound", "1d12h", timedelta(hours=36)),
    ("minutes", "90m", timedelta(minutes=90)),
    ("weeks", "2w", timedelta(days=14)),
    ("seconds-int", 3600, timedelta(hours=1)),
    ("seconds-text", "3600", timedelta(hours=1)),
    ("seconds-unit", "45s", timedelta(seconds=45)),
]


@pytest.mark.parametrize(("raw", "span"), [c[1:] for c in DURATIONS], ids=[c[0] for c in DURATIONS])
def test_duration_forms(raw: object, span: timedelta) -> None:
    """max_last_contact_age accepts s/m/h/d/w units, compounds and plain seconds."""
    assert parse_duration(raw) == span
    assert PolicySettings.model_validate({"max_last_contact_age": raw}).max_last_contact_age == span


@pytest.mark.parametrize(
    "raw",
    ["14 days", "d", "", "1.5d", -5, 0, True, 1.5, "99999w", "\u0661\u0664d", "\u00b2"],
    ids=[
        "word",
        "unit-only",
        "empty",
        "fraction",
        "negative",
        "zero",
        "bool",
        "float",
        "too-long",
        "arabic-indic-digits",
        "superscript",
    ],
)
def test_bad_durations_are_refused(raw: object) -> None:
    """A duration that is not a positive span of at most ten years is a config error."""
    with pytest.raises(ValidationError, match="max_last_contact_age"):
        PolicySettings.model_validate({"max_last_contact_age": raw})


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(days=3, hours=4, minutes=5), "3d 4h"),
        (timedelta(minutes=12), "12m"),
        (timedelta(seconds=0), "0s"),
        (timedelta(seconds=-30), "0s"),
        (timedelta(hours=1, seconds=5), "1h"),
    ],
    ids=["days-hours", "minutes", "zero", "negative", "hour"],
)
def test_spans_render_compactly(span: timedelta, text: str) -> None:
    """Ages in messages show the two largest units."""
    assert format_span(span) == text


BAD_POLICIES = [
    ("empty-any-of", {"groups": {"any_of": []}}, "at least one value"),
    ("empty-all-of", {"groups": {"all_of": []}}, "at least one value"),
    ("empty-none-of", {"groups": {"none_of": []}}, "at least one value"),
    ("empty-compliance", {"compliance": []}, "at least one value"),
    ("empty-platform", {"platform": []}, "at least one value"),
    ("empty-provider", {"provider": []}, "at least one value"),
    ("blank-group", {"groups": {"any_of": ["  "]}}, "at least 1 character"),
    (
        "all-and-none",
        {"groups": {"all_of": ["Eng"], "none_of": ["eng"]}},
        "both all_of and none_of",
    ),
    (
        "any-inside-none",
        {"groups": {"any_of": ["A", "b"], "none_of": ["a", "B", "c"]}},
        "every any_of group",
    ),
    ("bad-min-version", {"min_os_version": {"macOS": "fifteen"}}, "not a version"),
    ("empty-min-version", {"min_os_version": {}}, "at least one platform"),
    ("duplicate-platform", {"min_os_version": {"iOS": "17", "ios": "18"}}, "same platform"),
    ("unknown-kind", {"identifier_kind": ["imei"]}, "identifier_kind"),
    ("unknown-unreported-rule", {"allow_unreported": ["groups"]}, "allow_unreported"),
    ("unknown-rule", {"jailbroken": False}, "Extra inputs"),
    ("bad-report", {"report": "some"}, "report"),
]


@pytest.mark.parametrize(
    ("policy", "message"), [c[1:] for c in BAD_POLICIES], ids=[c[0] for c in BAD_POLICIES]
)
def test_contradictory_or_malformed_policies_are_refused(
    policy: dict[str, Any], message: str
) -> None:
    """Policies that deny everyone or do not parse fail validation with a clear message."""
    with pytest.raises(ValidationError, match=message):
        PolicySettings.model_validate(policy)


CHECKS = [
    ("clean", STRICT, []),
    ("default", {}, []),
    (
        "unreported-rule-off",
        {"allow_unreported": ["supervised"]},
        ["allow_unreported: supervised is listed but the supervised rule is off"],
    ),
    (
        "compliance-typo",
        {"compliance": ["compliant", "complaint"]},
        ["compliance: 'complaint' is not a compliance state any provider reports"],
    ),
    (
        "owner-typo",
        {"owner_type": ["corporate"]},
        ["owner_type: 'corporate' is not an owner type any provider reports"],
    ),
    (
        "platform-typo",
        {"platform": ["OSX"]},
        ["platform: 'OSX' is not a platform any provider reports"],
    ),
    (
        "duplicate-value",
        {"platform": ["iOS", "IOS"]},
        ["platform: 'IOS' is listed twice (compared case-insensitively)"],
    ),
    (
        "dead-minimum",
        {"platform": ["macOS"], "min_os_version": {"macOS": "15", "iOS": "18"}},
        ["min_os_version.iOS: platform = [macOS] refuses iOS, so this minimum never applies"],
    ),
    (
        "unknown-minimum-platform",
        {"min_os_version": {"Solaris": "11"}},
        ["min_os_version.Solaris: 'Solaris' is not a platform any provider reports"],
    ),
    (
        "any-and-none-overlap",
        {"groups": {"any_of": ["A", "B"], "none_of": ["b"]}},
        [
            "groups: B in both any_of and none_of; a device in them is always refused,"
            " so listing them in any_of has no effect"
        ],
    ),
    (
        "any-and-all-overlap",
        {"groups": {"any_of": ["A", "B"], "all_of": ["a"]}},
        [
            "groups: A in both any_of and all_of; all_of already requires them,"
            " so any_of always passes"
        ],
    ),
    (
        "duplicate-group",
        {"groups": {"none_of": ["Lost", "lost"]}},
        ["groups.none_of: 'lost' is listed twice (compared case-insensitively)"],
    ),
]


@pytest.mark.parametrize(
    ("policy", "problems"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_check_policy_reports_meaningless_entries(
    policy: dict[str, Any], problems: list[str]
) -> None:
    """check_policy names dead entries and typos of known values, one line each."""
    assert check_policy(PolicySettings.model_validate(policy)) == problems


ENGINEERING_ID = "2dab5a4c-7f3e-4b1a-9c8d-0e1f2a3b4c5d"


@pytest.mark.parametrize("rule", ["all_of", "any_of"])
def test_a_group_named_after_another_groups_id_grants_nothing(rule: str) -> None:
    """In Entra a user may create a group and name it after the Engineering group's id: a rule
    written with that id is met by the id only, never by such a name."""
    policy = {"groups": {rule: [ENGINEERING_ID]}}
    other = "9c1e0f2a-0000-4000-8000-000000000001"
    impostor = dev(groups=(GroupRef(ENGINEERING_ID.upper(), id=other),))
    member = dev(groups=(GroupRef("Engineering", id=ENGINEERING_ID),))
    unreadable = dev(groups=(GroupRef(ENGINEERING_ID, id=ENGINEERING_ID),))  # named by its id
    by_name_only = dev(groups=(GroupRef(ENGINEERING_ID),))  # a file's or a tag's: no id
    assert [o.code for o in check(policy, impostor).failures] == ["group-required"]
    assert check(policy, member).allow
    assert check(policy, unreadable).allow
    assert check(policy, by_name_only).allow


@pytest.mark.parametrize(
    ("entry", "impostor_name"),
    [
        ("10", "10"),  # a Jamf (or Fleet, Mosyle, Workspace ONE smart) group id
        ("og:570", "OG:570"),  # a Workspace ONE organisation group id
        (
            "abm-server:1F97349736CF4614A94F624E705841AD",
            "abm-server:1f97349736cf4614a94f624e705841ad",
        ),
        ("10", "\uff11\uff10"),  # full-width digits normalise to "10"
    ],
    ids=["digits", "og", "abm-server", "full-width-digits"],
)
@pytest.mark.parametrize("rule", ["all_of", "any_of"])
def test_a_group_named_like_another_inventorys_id_grants_nothing(
    rule: str, entry: str, impostor_name: str
) -> None:
    """An entry written as one inventory's group id is not met by a group of another inventory
    (an Entra group anyone may create) that is merely named like it; the group with that id,
    and a group known by its name alone, still meet it."""
    policy = {"groups": {rule: [entry]}}
    impostor = dev(groups=(GroupRef(impostor_name, id="9c1e0f2a-0000-4000-8000-000000000001"),))
    jamf_group = dev(groups=(GroupRef("Engineering", id=entry),))
    by_name_only = dev(groups=(GroupRef(entry),))  # a file's or a tag's: no id
    assert [o.code for o in check(policy, impostor).failures] == ["group-required"]
    assert check(policy, jamf_group).allow
    assert check(policy, by_name_only).allow


@pytest.mark.parametrize("name", ["10", "2dab5a4c-7f3e-4b1a-9c8d-0e1f2a3b4c5d"])
def test_a_directory_group_known_by_name_only_grants_nothing_by_an_id_shaped_name(
    name: str,
) -> None:
    """Fleet's IdP groups come by name only from a directory where users may create groups:
    one named like a group id never meets a rule written with that id (a file's group still
    does), though none_of still refuses on it."""
    idp = dev(groups=(GroupRef(name, directory=True),))
    assert [o.code for o in check({"groups": {"any_of": [name]}}, idp).failures] == [
        "group-required"
    ]
    assert check({"groups": {"any_of": [name]}}, dev(groups=(GroupRef(name),))).allow
    refused = check({"groups": {"none_of": [name]}}, idp).failures
    assert [o.code for o in refused] == ["group-forbidden"]
    assert check({"groups": {"any_of": ["Engineering"]}}, dev(
        groups=(GroupRef("Engineering", directory=True),)
    )).allow  # fmt: skip


def test_group_names_compare_in_one_unicode_form() -> None:
    """A name an inventory writes decomposed (as macOS does) is the composed one: none_of
    refuses it and any_of grants it."""
    composed, decomposed = "Quarant\u00e4ne", "Quaranta\u0308ne"
    device = dev(groups=(GroupRef(decomposed, id="42"),))
    refused = check({"groups": {"none_of": [composed]}}, device).failures
    assert [o.code for o in refused] == ["group-forbidden"]
    assert check({"groups": {"any_of": [composed]}}, device).allow


def test_names_that_case_folded_alike_still_compare_equal() -> None:
    """Normalising never separates two names case folding joined: a precomposed Greek iota
    with dialytika and tonos and its upper-case decomposed spelling still meet in none_of."""
    composed, decomposed = "Karant\u0390na", "KARANT\u0399\u0308\u0301NA"
    assert composed.casefold() == decomposed.casefold()
    device = dev(groups=(GroupRef(decomposed, id="42"),))
    refused = check({"groups": {"none_of": [composed]}}, device).failures
    assert [o.code for o in refused] == ["group-forbidden"]


@pytest.mark.parametrize(
    ("rule", "reported"),
    [
        ("\u1fb4dis", "\u03b1\u0345\u0301dis"),  # the marks in another canonical order
        ("\u00b4x", "\u0301x"),  # a spacing accent first: no space left over
    ],
    ids=["mark-order", "spacing-accent"],
)
def test_canonically_equivalent_spellings_meet_and_folding_is_stable(
    rule: str, reported: str
) -> None:
    """Spellings one normal form apart meet in none_of, and folding a folded value changes it
    no more."""
    device = dev(groups=(GroupRef(reported, id="42"),))
    refused = check({"groups": {"none_of": [rule]}}, device).failures
    assert [o.code for o in refused] == ["group-forbidden"]
    assert fold(fold(rule)) == fold(rule)


def test_none_of_still_refuses_on_a_group_named_like_an_id() -> None:
    """Refusing is the safe side: none_of matches such a name as it always did."""
    impostor = dev(groups=(GroupRef(ENGINEERING_ID, id="9c1e0f2a-0000-4000-8000-000000000001"),))
    failures = check({"groups": {"none_of": [ENGINEERING_ID]}}, impostor).failures
    assert [o.code for o in failures] == ["group-forbidden"]


def test_group_keys_are_computed_once() -> None:
    """Folded group sets are cached on the settings object, not rebuilt per call."""
    policy = PolicySettings.model_validate({"groups": {"none_of": ["Lost"]}})
    assert policy.groups.none_of_keys is policy.groups.none_of_keys
    assert policy.minimums is policy.minimums


# Through the real app: the CSV test inventory (tests/helpers.py) and a fixed clock, FIXED_NOW.
# C02TEST00001 is a managed, supervised, company macOS 15.3.2 Mac last seen two days earlier,
# in "All Managed" and "MDA Pilot"; the CSV has no compliance column.
WEBHOOK_CASES: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("min-os-met", {"min_os_version": {"macOS": "15.3.2"}}, "C02TEST00001", None),
    ("min-os-too-old", {"min_os_version": {"macOS": "15.4"}}, "C02TEST00001", "os-version-too-old"),
    ("contact-fresh", {"max_last_contact_age": "3d"}, "C02TEST00001", None),
    ("contact-stale", {"max_last_contact_age": "1d"}, "C02TEST00001", "last-contact-too-old"),
    (
        "compliance-unreported",
        {"compliance": ["compliant"]},
        "C02TEST00001",
        "attribute-unreported",
    ),
    (
        "compliance-unreported-allowed",
        {"compliance": ["compliant"], "allow_unreported": ["compliance"]},
        "C02TEST00001",
        None,
    ),
    ("platform", {"platform": ["iOS"]}, "C02TEST00001", "platform-not-allowed"),
    ("owner", {"owner_type": ["personal"]}, "C02TEST00001", "owner-type-not-allowed"),
    ("supervised", {"managed": False, "supervised": True}, "C02TEST00002", "device-unsupervised"),
    ("provider", {"provider": ["jamf"]}, "C02TEST00001", "provider-not-allowed"),
    (
        "kind",
        {"identifier_kind": ["serial"]},
        "00008110-000A1C2E3F40801E",
        "identifier-kind-not-allowed",
    ),
    ("all-of-met", {"groups": {"all_of": ["all managed", "MDA PILOT"]}}, "C02TEST00001", None),
    (
        "all-of-missing",
        {"groups": {"all_of": ["MDA Pilot", "Admins"]}},
        "C02TEST00001",
        "group-required",
    ),
    ("none-of", {"groups": {"none_of": ["lost or stolen"]}}, "C02TEST00003", "group-forbidden"),
]


@pytest.mark.parametrize(
    ("policy", "identifier", "code"),
    [c[1:] for c in WEBHOOK_CASES],
    ids=[c[0] for c in WEBHOOK_CASES],
)
async def test_policy_decides_real_webhook_calls(
    app_client: AppClient,
    inventory: Path,
    policy: dict[str, Any],
    identifier: str,
    code: str | None,
) -> None:
    """Each rule, set in [webhooks.policy], decides a signed call with its documented code."""
    client = await app_client(config(inventory, webhooks=[webhook(policy=policy)]))
    body = enrich(identifier)
    response = await client.post(
        "/webhooks/people", data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    answer = await response.json()
    assert response.status == 200
    if code is None:
        assert answer["allow"] is True
    else:
        assert answer["allow"] is False
        assert answer["error"]["code"] == code


async def test_report_all_reaches_step_ca(app_client: AppClient, inventory: Path) -> None:
    """With report = "all" the error step-ca relays lists every failed rule's message."""
    policy = {"report": "all", "platform": ["iOS"], "max_last_contact_age": "1h"}
    client = await app_client(config(inventory, webhooks=[webhook(policy=policy)]))
    body = enrich("C02TEST00001")
    response = await client.post(
        "/webhooks/people", data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    answer = await response.json()
    assert answer["error"] == {
        "code": "platform-not-allowed",
        "message": "platform macOS is not allowed (allowed: iOS);"
        " device last contacted the MDM 2d 2h ago, more than 1h",
    }


async def test_webhook_kinds_and_policy_kinds_refuse_alike(
    app_client: AppClient, inventory: Path
) -> None:
    """The webhook's identifier_kinds and the policy's identifier_kind deny with one code and text."""
    hooks = [
        webhook(identifier_kinds=["serial"]),
        webhook("gate", "AUTHORIZING", policy={"identifier_kind": ["serial"]}),
    ]
    client = await app_client(config(inventory, webhooks=hooks))
    udid = "00008110-000A1C2E3F40801E"
    errors = []
    for path, body, webhook_id in (
        ("/webhooks/people", enrich(udid, common_name=""), ENRICH_ID),
        ("/webhooks/gate", authorize(udid), AUTH_ID),
    ):
        response = await client.post(
            path,
            data=body,
            headers=signed(body, webhook_id=webhook_id),
            skip_auto_headers=["Content-Type"],
        )
        errors.append((await response.json())["error"])
    expected = {
        "code": "identifier-kind-not-allowed",
        "message": "identifier kind udid is not allowed (allowed: serial)",
    }
    assert errors == [expected, expected]


def test_a_rule_message_quoting_a_huge_inventory_value_is_cut() -> None:
    """A message quotes the device's value; an inventory may report one of any length, and the
    message goes into step-ca's answer, the log line and the audit row."""
    result = check({"min_os_version": {"macOS": "15"}}, dev(os_version="x" * 100_000))
    (failed,) = [o for o in result.outcomes if not o.passed]
    assert failed.code == "os-version-unparsable"
    assert len(failed.message) == MAX_MESSAGE
    assert failed.message.endswith("…")
