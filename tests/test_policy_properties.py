"""Property-based checks of the policy against independent reference rules.

Each property states something `evaluate` could get wrong: rules influencing each other, the
wrong rules running or running out of order, ``report`` joining the wrong messages, an
unreported field slipping through, group, set and version comparisons disagreeing with the
documented semantics. Strategies use small fixed vocabularies (no `st.text`, whose first use
builds Hypothesis's Unicode table, seconds under coverage) so policies and devices collide.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any, get_args

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.policy import PolicyResult, PolicySettings, UnreportableRule, evaluate
from connector.versions import OsVersion
from providers.base import DeviceRecord, GroupRef
from providers.identifiers import DeviceIdentifier, IdentifierKind

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
SERIAL = DeviceIdentifier("C02TESTSERIAL", IdentifierKind.SERIAL)
IDENTIFIERS = st.sampled_from(
    [SERIAL, DeviceIdentifier("00008030-001A2B3C4D5E6F70", IdentifierKind.UDID)]
)
# The documented evaluation order (docs/policy.md, "Rules"; tests/test_docs.py checks the page).
ORDER = [
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
UNREPORTABLE = list(get_args(UnreportableRule))
# Where each unreportable rule reads the device (min_os_version needs the platform first).
FIELD = {
    "managed": "managed",
    "supervised": "supervised",
    "compliance": "compliance",
    "platform": "platform",
    "owner_type": "owner_type",
    "min_os_version": "platform",
    "max_last_contact_age": "last_contact",
}
# Small vocabularies so policies and devices collide often; "Straße" folds to "strasse",
# which lower() alone would miss.
GROUP_NAMES = ["Engineering", "VPN Users", "Lost", "Straße", "Équipe"]
GROUP_IDS = ["10", "11", "12", "ab-CD"]
PLATFORMS = ["macOS", "iOS", "iPadOS", "Windows"]
VERSIONS = ["14", "14.7.1", "15", "15.0.1", "17.9", "17.10", "18.3", "junk"]
COMPLIANCE = ["compliant", "noncompliant", "inGracePeriod", "unknown"]
OWNERS = ["company", "personal"]
PROVIDERS = ["jamf", "intune", "csv"]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The value three times in four, else None (unreported)."""
    return st.one_of(st.none(), strategy, strategy, strategy)


def fold(text: str) -> str:
    """Reference comparison form: trimmed, Unicode case-folded."""
    return text.strip().casefold()


# Names outside the vocabulary, from a few letters: they should match nothing listed.
other_names = st.lists(st.sampled_from("xyzXYZ "), min_size=1, max_size=6).map("".join)
groups_strategy = st.lists(
    st.builds(
        GroupRef,
        name=st.sampled_from(GROUP_NAMES) | other_names.filter(str.strip),
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


def variants(names: list[str]) -> list[str]:
    """Each name as an admin might type it: any case, stray spaces."""
    return [v for n in names for v in (n, n.upper(), n.lower(), n.swapcase(), f"  {n} ")]


def listed(names: list[str], size: int = 2) -> st.SearchStrategy[list[str]]:
    """A non-empty list of distinct vocabulary entries, each typed in any case."""
    return st.lists(st.sampled_from(variants(names)), min_size=1, max_size=size, unique_by=fold)


# A value for every rule; a policy sets any subset of these keys.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "identifier_kind": st.lists(
        st.sampled_from(["serial", "udid"]), min_size=1, max_size=2, unique=True
    ),
    "provider": st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=2, unique=True),
    "managed": st.just(True),
    "supervised": st.just(True),
    "compliance": listed(COMPLIANCE),
    "platform": listed(PLATFORMS),
    "owner_type": listed(OWNERS, 1),
    "min_os_version": st.dictionaries(
        st.sampled_from(variants(PLATFORMS)),
        st.sampled_from(VERSIONS[:-1]),
        min_size=1,
        max_size=2,
        dict_class=dict,
    ),
    "max_last_contact_age": st.integers(60, 30 * 86400),
    "groups.all_of": listed(GROUP_NAMES + GROUP_IDS, 3),
    "groups.any_of": listed(GROUP_NAMES + GROUP_IDS, 3),
    "groups.none_of": listed(GROUP_NAMES + GROUP_IDS, 3),
}
unreported_lists = st.lists(st.sampled_from(UNREPORTABLE), unique=True)


def rule_maps(keys: list[str] = ORDER, min_size: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Some of ``keys``, each with a value: the rules of one policy."""
    chosen = st.sets(st.sampled_from(keys), min_size=min_size)
    return chosen.flatmap(lambda ks: st.fixed_dictionaries({k: VALUES[k] for k in sorted(ks)}))


def build(
    rules: dict[str, Any], allow_unreported: list[str] | None = None, report: str = "first"
) -> PolicySettings:
    """A policy with exactly these rules (managed off unless listed)."""
    policy: dict[str, Any] = {
        "managed": False,
        "allow_unreported": allow_unreported or [],
        "report": report,
    }
    groups: dict[str, Any] = {}
    for key, value in rules.items():
        if key.startswith("groups."):
            groups[key.removeprefix("groups.")] = value
        else:
            policy[key] = value
    policy["groups"] = groups
    return PolicySettings.model_validate(policy)


def build_or_skip(rules: dict[str, Any], *args: Any) -> PolicySettings:
    """As `build`, discarding the example when the validators refuse the policy."""
    try:
        return build(rules, *args)
    except ValidationError:
        assume(False)
        raise  # pragma: no cover - assume(False) raises


def outcome(result: PolicyResult, rule: str) -> Any:
    (found,) = [o for o in result.outcomes if o.rule == rule]
    return found


@given(
    rules=rule_maps(min_size=8),
    device=devices,
    ident=IDENTIFIERS,
    allow_unreported=unreported_lists,
)
def test_each_rule_judges_as_if_it_were_the_only_rule(
    rules: dict[str, Any],
    device: DeviceRecord,
    ident: DeviceIdentifier,
    allow_unreported: list[str],
) -> None:
    """A rule's outcome does not depend on the other rules set beside it, so a policy allows
    exactly when each of its rules alone would, and adding a rule never turns a deny into an
    allow."""
    result = evaluate(build_or_skip(rules, allow_unreported), device, ident, now=NOW)
    alone = [
        evaluate(build({key: value}, allow_unreported), device, ident, now=NOW)
        for key, value in rules.items()
    ]
    assert sorted(result.outcomes, key=lambda o: o.rule) == sorted(
        (o for single in alone for o in single.outcomes), key=lambda o: o.rule
    )
    assert result.allow is all(single.allow for single in alone)


@given(rules=rule_maps(), device=devices, ident=IDENTIFIERS)
def test_exactly_the_configured_rules_run_in_documented_order(
    rules: dict[str, Any], device: DeviceRecord, ident: DeviceIdentifier
) -> None:
    """Every rule set in the policy yields one outcome, no other rule does, in the documented order."""
    result = evaluate(build_or_skip(rules), device, ident, now=NOW)
    assert [o.rule for o in result.outcomes] == [k for k in ORDER if k in rules]


@given(
    rules=rule_maps(),
    device=devices,
    ident=IDENTIFIERS,
    report=st.sampled_from(["first", "all"]),
)
def test_error_reports_the_failing_rules_messages_in_order(
    rules: dict[str, Any], device: DeviceRecord, ident: DeviceIdentifier, report: str
) -> None:
    """The error carries the first failure's code; its message is that failure's ("first") or
    every failing rule's message in table order joined by "; " ("all"); a pass has none."""
    result = evaluate(build_or_skip(rules, [], report), device, ident, now=NOW)
    failing = [o for o in result.outcomes if not o.passed]
    assert all(o.code is None for o in result.outcomes if o.passed)
    assert all(o.code for o in failing)
    if not failing:
        assert result.allow
        assert result.error is None
        return
    assert not result.allow
    assert result.error is not None
    assert result.error.code == failing[0].code
    messages = [o.message for o in failing] if report == "all" else [failing[0].message]
    assert result.error.message == "; ".join(messages)


@given(
    rules=rule_maps(),
    rule=st.sampled_from(UNREPORTABLE),
    data=st.data(),
    device=devices,
    allow_unreported=unreported_lists,
)
def test_an_unreported_field_fails_closed_unless_allowed(
    rules: dict[str, Any],
    rule: str,
    data: st.DataObject,
    device: DeviceRecord,
    allow_unreported: list[str],
) -> None:
    """A configured rule whose device field is None fails with attribute-unreported and no
    observed value, and passes only when allow_unreported lists that rule."""
    if rule not in rules:
        rules = {**rules, rule: data.draw(VALUES[rule])}
    policy = build_or_skip(rules, allow_unreported)
    bare = dataclasses.replace(device, **{FIELD[rule]: None})  # type: ignore[arg-type]
    result = evaluate(policy, bare, SERIAL, now=NOW)
    seen = outcome(result, rule)
    assert seen.observed is None
    if rule in allow_unreported:
        assert (seen.passed, seen.code) == (True, None)
    else:
        assert (seen.passed, seen.code) == (False, "attribute-unreported")
        assert not result.allow


SET_RULES = ["compliance", "platform", "owner_type"]


@given(rules=rule_maps(SET_RULES, min_size=1), device=devices)
def test_set_rules_compare_case_insensitively(rules: dict[str, Any], device: DeviceRecord) -> None:
    """compliance, platform and owner_type pass exactly when the folded device value is
    among the folded listed values, however the admin cased or padded them."""
    result = evaluate(build(rules), device, SERIAL, now=NOW)
    for key, listed_values in rules.items():
        value = getattr(device, key)
        if value is not None:
            allowed = {fold(v) for v in listed_values}
            assert outcome(result, key).passed is (fold(value) in allowed)


@given(rules=rule_maps(ORDER[-3:], min_size=1), device=devices)
def test_group_rules_match_names_and_ids_case_insensitively(
    rules: dict[str, Any], device: DeviceRecord
) -> None:
    """An entry matches a device group by name or id after trimming and Unicode case folding:
    all_of needs every entry matched, any_of one, none_of none."""
    result = evaluate(build_or_skip(rules), device, SERIAL, now=NOW)
    handles = {fold(g.name) for g in device.groups} | {fold(g.id) for g in device.groups if g.id}
    hits = {key: [fold(e) in handles for e in entries] for key, entries in rules.items()}
    expected = {
        "groups.all_of": all(hits.get("groups.all_of", ())),
        "groups.any_of": any(hits.get("groups.any_of", ())),
        "groups.none_of": not any(hits.get("groups.none_of", ())),
    }
    for key in rules:
        seen = outcome(result, key)
        assert seen.passed is expected[key]
        if not seen.passed:
            assert seen.code == ("group-forbidden" if key == "groups.none_of" else "group-required")


version_parts = st.lists(st.integers(0, 40), min_size=1, max_size=6)


def text_of(parts: list[int]) -> str:
    return ".".join(map(str, parts))


def numeric_key(parts: list[int]) -> tuple[int, ...]:
    """Reference order: the numeric parts as a tuple, trailing zeros dropped."""
    key = list(parts)
    while key and key[-1] == 0:
        key.pop()
    return tuple(key)


def padded_cmp(a: list[int], b: list[int]) -> int:
    """Reference order: compare component-wise with missing components as zero."""
    for x, y in zip_longest(a, b, fillvalue=0):
        if x != y:
            return (x > y) - (x < y)
    return 0


@given(a=version_parts, b=version_parts)
def test_version_order_matches_zero_padded_comparison(a: list[int], b: list[int]) -> None:
    """Versions order as their zero-padded numeric parts do, and as those tuples without
    trailing zeros compare."""
    va, vb = OsVersion.parse(text_of(a)), OsVersion.parse(text_of(b))
    sign = padded_cmp(a, b)
    assert ((va > vb) - (va < vb)) == sign
    assert (va == vb) is (sign == 0)
    assert ((numeric_key(a) > numeric_key(b)) - (numeric_key(a) < numeric_key(b))) == sign


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


@given(
    device_parts=version_parts,
    minimum_parts=version_parts,
    platform=st.sampled_from(PLATFORMS),
    key=st.sampled_from(variants(PLATFORMS)),
    suffix=st.sampled_from(["", " (23E224)", " (a)"]),
)
def test_min_os_version_passes_exactly_when_the_version_is_not_below(
    device_parts: list[int], minimum_parts: list[int], platform: str, key: str, suffix: str
) -> None:
    """On the platform its key names (any case) the rule passes iff the device's numeric
    parts compare at least the minimum's; on other platforms it passes; suffixes are ignored."""
    policy = PolicySettings.model_validate(
        {"min_os_version": {key: text_of(minimum_parts)}, "managed": False}
    )
    device = DeviceRecord(
        provider="jamf", platform=platform, os_version=text_of(device_parts) + suffix
    )
    (seen,) = evaluate(policy, device, SERIAL, now=NOW).outcomes
    if fold(key) != fold(platform):
        assert seen.passed
    else:
        assert seen.passed is (numeric_key(device_parts) >= numeric_key(minimum_parts))
        assert seen.code in (None, "os-version-too-old")


@given(
    age=st.integers(-3600, 40 * 86400),
    limit=st.integers(1, 30 * 86400),
    naive=st.booleans(),
)
def test_last_contact_passes_exactly_within_the_limit(age: int, limit: int, naive: bool) -> None:
    """max_last_contact_age passes iff the request time minus the last check-in is at most
    the limit; a naive check-in time counts as UTC."""
    seen_at = NOW - timedelta(seconds=age)
    device = DeviceRecord(
        provider="jamf", last_contact=seen_at.replace(tzinfo=None) if naive else seen_at
    )
    policy = PolicySettings.model_validate({"max_last_contact_age": limit, "managed": False})
    (seen,) = evaluate(policy, device, SERIAL, now=NOW).outcomes
    assert seen.passed is (age <= limit)
    assert seen.code in (None, "last-contact-too-old")
