"""Property-based checks of the policy: monotone rules, forbidden groups, version order."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.policy import PolicyResult, PolicySettings, evaluate
from connector.versions import OsVersion
from providers.base import DeviceRecord, GroupRef
from providers.identifiers import DeviceIdentifier, IdentifierKind

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
IDENTIFIERS = st.sampled_from(
    [
        DeviceIdentifier("C02TESTSERIAL", IdentifierKind.SERIAL),
        DeviceIdentifier("00008030-001A2B3C4D5E6F70", IdentifierKind.UDID),
    ]
)
# A small vocabulary so policies and devices collide often.
GROUP_NAMES = ["Engineering", "VPN Users", "Lost", "Admins", "Staff"]
GROUP_IDS = ["10", "11", "12", "13"]
PLATFORMS = ["macOS", "iOS", "iPadOS", "Windows"]
VERSIONS = ["14", "14.7.1", "15", "15.0.1", "17.9", "17.10", "18.3", "junk"]
COMPLIANCE = ["compliant", "noncompliant", "inGracePeriod", "unknown"]
OWNERS = ["company", "personal"]
PROVIDERS = ["jamf", "intune", "csv"]
UNREPORTABLE = [
    "managed",
    "supervised",
    "compliance",
    "platform",
    "owner_type",
    "min_os_version",
    "max_last_contact_age",
]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def cased(text: str) -> st.SearchStrategy[str]:
    """The same name as an admin might type it: any case, stray spaces."""
    return st.sampled_from([text, text.upper(), text.lower(), text.swapcase(), f"  {text} "])


groups_strategy = st.lists(
    st.builds(
        GroupRef,
        name=st.sampled_from(GROUP_NAMES)
        | st.text(string.ascii_letters + " ", min_size=1, max_size=8).filter(str.strip),
        id=maybe(st.sampled_from(GROUP_IDS)),
    ),
    max_size=5,
).map(tuple)

devices = st.builds(
    DeviceRecord,
    provider=st.sampled_from(PROVIDERS),
    managed=maybe(st.booleans()),
    supervised=maybe(st.booleans()),
    compliance=maybe(st.sampled_from(COMPLIANCE)),
    platform=maybe(st.sampled_from(PLATFORMS)),
    os_version=maybe(st.sampled_from(VERSIONS)),
    owner_type=maybe(st.sampled_from(OWNERS)),
    last_contact=maybe(st.integers(-3600, 40 * 86400).map(lambda s: NOW - timedelta(seconds=s))),
    groups=groups_strategy,
)

group_list = st.lists(st.sampled_from(GROUP_NAMES + GROUP_IDS), min_size=1, max_size=3, unique=True)

# Every rule with a value; a policy is any subset of these keys.
rule_values = st.fixed_dictionaries(
    {
        "identifier_kind": st.lists(
            st.sampled_from(["serial", "udid"]), min_size=1, max_size=2, unique=True
        ),
        "provider": st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=2, unique=True),
        "managed": st.just(True),
        "supervised": st.just(True),
        "compliance": st.lists(st.sampled_from(COMPLIANCE), min_size=1, max_size=2, unique=True),
        "platform": st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=2, unique=True),
        "owner_type": st.lists(st.sampled_from(OWNERS), min_size=1, max_size=1),
        "min_os_version": st.dictionaries(
            st.sampled_from(PLATFORMS), st.sampled_from(VERSIONS[:-1]), min_size=1, max_size=2
        ),
        "max_last_contact_age": st.integers(60, 30 * 86400),
        "groups.any_of": group_list,
        "groups.all_of": group_list,
        "groups.none_of": group_list,
    }
)


def build(rules: dict[str, Any], keys: set[str], allow_unreported: list[str]) -> PolicySettings:
    """A policy with exactly the rules in `keys` (managed off unless listed)."""
    policy: dict[str, Any] = {"managed": False, "allow_unreported": allow_unreported}
    groups: dict[str, Any] = {}
    for key in keys:
        if key.startswith("groups."):
            groups[key.removeprefix("groups.")] = rules[key]
        else:
            policy[key] = rules[key]
    policy["groups"] = groups
    return PolicySettings.model_validate(policy)


def failing_rules(result: PolicyResult) -> set[str]:
    return {o.rule for o in result.failures}


@given(
    rules=rule_values,
    data=st.data(),
    device=devices,
    ident=IDENTIFIERS,
    allow_unreported=st.lists(st.sampled_from(UNREPORTABLE), unique=True),
)
def test_adding_rules_never_turns_a_deny_into_an_allow(
    rules: dict[str, Any],
    data: st.DataObject,
    device: DeviceRecord,
    ident: DeviceIdentifier,
    allow_unreported: list[str],
) -> None:
    """A policy with more rules fails at least every rule the smaller policy fails."""
    larger = data.draw(st.sets(st.sampled_from(sorted(rules))))
    smaller = data.draw(st.sets(st.sampled_from(sorted(larger)))) if larger else set()
    try:
        big = build(rules, larger, allow_unreported)
    except ValidationError:
        assume(False)
    small = build(rules, smaller, allow_unreported)
    small_result = evaluate(small, device, ident, now=NOW)
    big_result = evaluate(big, device, ident, now=NOW)
    assert failing_rules(small_result) <= failing_rules(big_result)
    if not small_result.allow:
        assert not big_result.allow


@given(
    rules=rule_values,
    keys=st.sets(st.sampled_from(["compliance", "platform", "managed", "groups.any_of"])),
    device=devices,
    ident=IDENTIFIERS,
    data=st.data(),
)
def test_none_of_with_a_group_the_device_has_always_denies(
    rules: dict[str, Any],
    keys: set[str],
    device: DeviceRecord,
    ident: DeviceIdentifier,
    data: st.DataObject,
) -> None:
    """Listing any of the device's groups (by name or id, any case) in none_of denies it."""
    assume(device.groups)
    group = data.draw(st.sampled_from(device.groups))
    handle = data.draw(st.sampled_from([group.name] + ([group.id] if group.id else [])))
    entry = data.draw(cased(handle))
    rules = {**rules, "groups.none_of": [*rules["groups.none_of"], entry]}
    try:
        policy = build(rules, keys | {"groups.none_of"}, [])
    except ValidationError:
        return  # a policy the validators refuse cannot allow anyone either
    result = evaluate(policy, device, ident, now=NOW)
    assert not result.allow
    assert "group-forbidden" in {o.code for o in result.failures}


version_parts = st.lists(st.integers(0, 40), min_size=1, max_size=6)


def text_of(parts: list[int]) -> str:
    return ".".join(map(str, parts))


def padded_cmp(a: list[int], b: list[int]) -> int:
    """Reference order: compare component-wise with missing components as zero."""
    for x, y in zip_longest(a, b, fillvalue=0):
        if x != y:
            return (x > y) - (x < y)
    return 0


@given(a=version_parts, b=version_parts)
def test_version_order_matches_zero_padded_comparison(a: list[int], b: list[int]) -> None:
    """Exactly one of <, ==, > holds, and it agrees with comparing zero-padded components."""
    va, vb = OsVersion.parse(text_of(a)), OsVersion.parse(text_of(b))
    relations = [va < vb, va == vb, va > vb]
    assert relations.count(True) == 1
    assert relations.index(True) - 1 == padded_cmp(a, b)
    assert (va <= vb) == (not va > vb)


@given(a=version_parts, b=version_parts, c=version_parts)
def test_version_order_is_transitive(a: list[int], b: list[int], c: list[int]) -> None:
    """If a <= b and b <= c then a <= c."""
    va, vb, vc = (OsVersion.parse(text_of(p)) for p in (a, b, c))
    if va <= vb <= vc:
        assert va <= vc


@given(parts=version_parts, zeros=st.integers(0, 3), bump=st.integers(1, 5))
def test_trailing_zeros_are_equal_and_bumps_are_greater(
    parts: list[int], zeros: int, bump: int
) -> None:
    """15 == 15.0 == 15.0.0, and raising any component makes the version greater."""
    assume(len(parts) + zeros <= 6)
    base = OsVersion.parse(text_of(parts))
    assert OsVersion.parse(text_of(parts + [0] * zeros)) == base
    assert hash(OsVersion.parse(text_of(parts + [0] * zeros))) == hash(base)
    bumped = [*parts[:-1], parts[-1] + bump]
    assert OsVersion.parse(text_of(bumped)) > base
    if len(parts) < 6:
        assert OsVersion.parse(text_of([*parts, bump])) > base
