"""The admin's policy: pure rules over a `DeviceRecord`, each failure a stable reason code.

`evaluate` never does I/O, never reads the clock (``now`` is passed in) and never raises on
missing data: a rule on a field the provider does not report (`None`) fails closed with
``attribute-unreported`` unless the rule is listed in ``allow_unreported``.

Rules run in a fixed order (cheap identity checks first, groups last); ``report = "first"``
puts the first failure in step-ca's ``error`` object, ``report = "all"`` joins every failure's
message under the first failure's code. Every outcome stays on the `PolicyResult` for the
decision log and for ``posture-connector lookup``.

Contradictions that make a rule deny every device (an empty ``any_of``, a group in both
``all_of`` and ``none_of``, a version that does not parse) are refused by the validators, so
the service never starts with them; `check_policy` reports the softer, meaningless parts
(dead entries, typos of known values) for ``check-config``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from connector.versions import OsVersion, parse_version
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier, IdentifierKind
from providers.vocabulary import COMPLIANCE_STATES, OWNER_TYPES, PLATFORMS

# Rules that read a field a provider may leave unreported; they may be listed in allow_unreported.
UnreportableRule = Literal[
    "managed",
    "supervised",
    "compliance",
    "platform",
    "owner_type",
    "min_os_version",
    "max_last_contact_age",
]

# Values the bundled providers report, folded, used by `check_policy` to catch typos.
KNOWN_COMPLIANCE = frozenset(s.casefold() for s in COMPLIANCE_STATES)
KNOWN_OWNER_TYPES = frozenset(s.casefold() for s in OWNER_TYPES)
KNOWN_PLATFORMS = frozenset(p.casefold() for p in PLATFORMS)

# How many group names an `observed` value or a message lists before eliding the rest.
_LIST_LIMIT = 20
_DURATION = re.compile(r"(\d{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_AGE = timedelta(days=3650)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
NameList = tuple[Name, ...]


def parse_duration(value: object) -> timedelta:
    """Read ``"14d"``, ``"1d12h"``, ``"90m"``, ``"3600"`` or int seconds as a positive span."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds is None:
        raise ValueError(
            f"{value!r} is not a duration: use digits with s, m, h, d or w"
            ' ("14d", "1d12h") or a number of seconds'
        )
    if seconds <= 0:
        raise ValueError("the duration must be positive")
    if seconds > _MAX_AGE.total_seconds():
        raise ValueError("the duration must be at most 3650 days")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _fold(value: str) -> str:
    return value.strip().casefold()


def _non_empty(value: tuple[object, ...] | None) -> tuple[object, ...] | None:
    if value is not None and not value:
        raise ValueError("must list at least one value; remove the key to turn the rule off")
    return value


class GroupRules(BaseModel):
    """``[webhooks.policy.groups]``: group gates on names or ids, compared case-insensitively.

    A device group matches an entry when the entry equals the group's name or its id after
    trimming and Unicode case folding (``"Engineering"`` matches ``engineering``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    any_of: NameList | None = None
    all_of: NameList | None = None
    none_of: NameList | None = None

    _check_lists = field_validator("any_of", "all_of", "none_of")(_non_empty)

    @model_validator(mode="after")
    def _refuse_contradictions(self) -> GroupRules:
        forbidden = self.none_of_keys
        both = [g for g in self.all_of or () if _fold(g) in forbidden]
        if both:
            raise ValueError(
                f"{', '.join(both)} in both all_of and none_of: no device could ever pass"
            )
        if self.any_of and all(_fold(g) in forbidden for g in self.any_of):
            raise ValueError("every any_of group is also in none_of: no device could ever pass")
        return self

    @cached_property
    def any_of_keys(self) -> frozenset[str]:
        """Folded any_of entries, computed once per settings object."""
        return frozenset(_fold(g) for g in self.any_of or ())

    @cached_property
    def all_of_keys(self) -> tuple[tuple[str, str], ...]:
        """(entry as written, folded) for all_of, to name the missing ones."""
        return tuple((g, _fold(g)) for g in self.all_of or ())

    @cached_property
    def none_of_keys(self) -> frozenset[str]:
        """Folded none_of entries."""
        return frozenset(_fold(g) for g in self.none_of or ())


class PolicySettings(BaseModel):
    """``[webhooks.policy]``: every rule set here must pass; an absent key turns its rule off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report: Literal["first", "all"] = "first"
    allow_unreported: tuple[UnreportableRule, ...] = ()
    identifier_kind: tuple[IdentifierKind, ...] | None = None
    provider: NameList | None = None
    managed: bool = True
    supervised: bool = False
    compliance: NameList | None = None
    platform: NameList | None = None
    owner_type: NameList | None = None
    min_os_version: dict[Name, str] | None = None
    max_last_contact_age: Duration | None = None
    groups: GroupRules = Field(default_factory=GroupRules)

    _check_lists = field_validator(
        "identifier_kind", "provider", "compliance", "platform", "owner_type"
    )(_non_empty)

    @field_validator("min_os_version")
    @classmethod
    def _parse_minimums(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one platform; remove the table to turn it off")
        seen: dict[str, str] = {}
        for platform, version in value.items():
            if _fold(platform) in seen:
                raise ValueError(f"{seen[_fold(platform)]} and {platform} name the same platform")
            seen[_fold(platform)] = platform
            try:
                OsVersion.parse(version)
            except ValueError as exc:
                raise ValueError(f"{platform}: {exc}") from None
        return value

    @cached_property
    def allow_unreported_set(self) -> frozenset[str]:
        """The rules that pass when their field is unreported."""
        return frozenset(self.allow_unreported)

    @cached_property
    def minimums(self) -> Mapping[str, OsVersion]:
        """Folded platform name to parsed minimum version."""
        return {_fold(p): OsVersion.parse(v) for p, v in (self.min_os_version or {}).items()}

    @cached_property
    def folded(self) -> Mapping[str, frozenset[str]]:
        """Folded allowed values of the set rules compared case-insensitively."""
        return {
            "compliance": frozenset(_fold(v) for v in self.compliance or ()),
            "platform": frozenset(_fold(v) for v in self.platform or ()),
            "owner_type": frozenset(_fold(v) for v in self.owner_type or ()),
        }


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One rule's verdict on one device.

    Attributes:
        rule: The rule's config key (``groups.any_of`` for the group rules).
        passed: Whether it passed.
        code: Stable reason code when it failed, None when it passed.
        message: Human explanation, safe to show the device's user.
        observed: The value the rule saw, as text (None when the provider did not report it).
    """

    rule: str
    passed: bool
    code: str | None
    message: str
    observed: str | None

    def line(self) -> str:
        """One line for ``posture-connector lookup``: verdict, rule, value seen, why."""
        verdict = "pass" if self.passed else f"FAIL {self.code}"
        seen = "(unreported)" if self.observed is None else self.observed
        return f"{verdict:<32} {self.rule:<22} {seen}: {self.message}"


@dataclass(frozen=True, slots=True)
class PolicyError:
    """What goes into step-ca's ``error`` object on a denial.

    Attributes:
        code: The first failing rule's code.
        message: Its message, or every failure's message joined when ``report = "all"``.
    """

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """Every configured rule's outcome, in evaluation order.

    Attributes:
        outcomes: One entry per configured rule.
        report: The policy's ``report`` setting, applied by `error`.
    """

    outcomes: tuple[RuleOutcome, ...]
    report: Literal["first", "all"] = "first"

    @property
    def allow(self) -> bool:
        """True when every rule passed."""
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> tuple[RuleOutcome, ...]:
        """The rules that failed."""
        return tuple(o for o in self.outcomes if not o.passed)

    @property
    def codes(self) -> tuple[str, ...]:
        """Every failure's code, for the decision log."""
        return tuple(o.code for o in self.outcomes if o.code is not None)

    @property
    def error(self) -> PolicyError | None:
        """The denial step-ca shows the ACME client, or None when the device passed."""
        failures = self.failures
        if not failures:
            return None
        first = failures[0]
        if self.report == "first" or len(failures) == 1:
            return PolicyError(first.code or "policy-denied", first.message)
        return PolicyError(first.code or "policy-denied", "; ".join(f.message for f in failures))


def evaluate(
    policy: PolicySettings, device: DeviceRecord, identifier: DeviceIdentifier, *, now: datetime
) -> PolicyResult:
    """Apply every configured rule to the device; pure and clock-free (``now`` is injected)."""
    out: list[RuleOutcome] = []
    if policy.identifier_kind is not None:
        kind = identifier.kind
        ok = kind in policy.identifier_kind
        allowed = ", ".join(k.value for k in policy.identifier_kind)
        out.append(
            RuleOutcome(
                "identifier_kind",
                ok,
                None if ok else "identifier-kind-not-allowed",
                f"identifier kind {kind.value} is allowed"
                if ok
                else f"identifier kind {kind.value} is not allowed (allowed: {allowed})",
                kind.value,
            )
        )
    if policy.provider is not None:
        ok = device.provider in policy.provider
        out.append(
            RuleOutcome(
                "provider",
                ok,
                None if ok else "provider-not-allowed",
                f"inventory {device.provider} is trusted"
                if ok
                else f"inventory {device.provider} is not trusted by this webhook"
                f" (allowed: {', '.join(policy.provider)})",
                device.provider,
            )
        )
    if policy.managed:
        out.append(_flag(policy, device, "managed", device.managed, "device-unmanaged"))
    if policy.supervised:
        out.append(_flag(policy, device, "supervised", device.supervised, "device-unsupervised"))
    if policy.compliance is not None:
        out.append(
            _member(policy, device, "compliance", device.compliance, "compliance-not-allowed")
        )
    if policy.platform is not None:
        out.append(_member(policy, device, "platform", device.platform, "platform-not-allowed"))
    if policy.owner_type is not None:
        out.append(
            _member(policy, device, "owner_type", device.owner_type, "owner-type-not-allowed")
        )
    if policy.min_os_version is not None:
        out.append(_min_os(policy, device))
    if policy.max_last_contact_age is not None:
        out.append(_last_contact(policy, policy.max_last_contact_age, device, now))
    groups = policy.groups
    if groups.all_of is not None or groups.any_of is not None or groups.none_of is not None:
        keys = frozenset(_fold(g.name) for g in device.groups) | frozenset(
            _fold(g.id) for g in device.groups if g.id
        )
        seen = _elide(sorted({g.name for g in device.groups}, key=str.casefold))
        if groups.all_of is not None:
            missing = [g for g, k in groups.all_of_keys if k not in keys]
            out.append(
                RuleOutcome(
                    "groups.all_of",
                    not missing,
                    "group-required" if missing else None,
                    f"device is missing required groups: {_elide(missing)}"
                    if missing
                    else "device is in every required group",
                    seen,
                )
            )
        if groups.any_of is not None:
            ok = not groups.any_of_keys.isdisjoint(keys)
            out.append(
                RuleOutcome(
                    "groups.any_of",
                    ok,
                    None if ok else "group-required",
                    "device is in a required group"
                    if ok
                    else f"device is in none of the required groups: {_elide(groups.any_of)}",
                    seen,
                )
            )
        if groups.none_of is not None:
            hits = [g for g in groups.none_of if _fold(g) in keys]
            out.append(
                RuleOutcome(
                    "groups.none_of",
                    not hits,
                    "group-forbidden" if hits else None,
                    f"device is in forbidden groups: {_elide(hits)}"
                    if hits
                    else "device is in no forbidden group",
                    seen,
                )
            )
    return PolicyResult(tuple(out), policy.report)


def _unreported(policy: PolicySettings, device: DeviceRecord, rule: str, what: str) -> RuleOutcome:
    if rule in policy.allow_unreported_set:
        return RuleOutcome(
            rule,
            True,
            None,
            f"inventory {device.provider} does not report the {what}; allowed by allow_unreported",
            None,
        )
    return RuleOutcome(
        rule,
        False,
        "attribute-unreported",
        f"inventory {device.provider} does not report the device's {what}",
        None,
    )


def _flag(
    policy: PolicySettings, device: DeviceRecord, rule: str, value: bool | None, code: str
) -> RuleOutcome:
    if value is None:
        return _unreported(policy, device, rule, f"{rule} state")
    return RuleOutcome(
        rule,
        value,
        None if value else code,
        f"device is {rule}" if value else f"device is not {rule}",
        str(value).lower(),
    )


_WHAT = {"compliance": "compliance state", "platform": "platform", "owner_type": "owner type"}


def _member(
    policy: PolicySettings,
    device: DeviceRecord,
    rule: Literal["compliance", "platform", "owner_type"],
    value: str | None,
    code: str,
) -> RuleOutcome:
    what = _WHAT[rule]
    if value is None:
        return _unreported(policy, device, rule, what)
    ok = _fold(value) in policy.folded[rule]
    allowed: NameList = getattr(policy, rule) or ()
    return RuleOutcome(
        rule,
        ok,
        None if ok else code,
        f"{what} {value} is allowed"
        if ok
        else f"{what} {value} is not allowed (allowed: {', '.join(allowed)})",
        value,
    )


def _min_os(policy: PolicySettings, device: DeviceRecord) -> RuleOutcome:
    rule = "min_os_version"
    if device.platform is None:
        return _unreported(policy, device, rule, "platform")
    minimum = policy.minimums.get(_fold(device.platform))
    if minimum is None:
        return RuleOutcome(
            rule,
            True,
            None,
            f"no minimum version is set for {device.platform}",
            f"{device.platform} {device.os_version or '(version unreported)'}",
        )
    if device.os_version is None:
        return _unreported(policy, device, rule, "OS version")
    observed = f"{device.platform} {device.os_version}"
    version = parse_version(device.os_version)
    if version is None:
        return RuleOutcome(
            rule,
            False,
            "os-version-unparsable",
            f"OS version {device.os_version!r} is not a dotted version",
            observed,
        )
    ok = version >= minimum
    return RuleOutcome(
        rule,
        ok,
        None if ok else "os-version-too-old",
        f"{device.platform} {version} is at least {minimum}"
        if ok
        else f"{device.platform} {version} is older than the required {minimum}",
        observed,
    )


def _last_contact(
    policy: PolicySettings, limit: timedelta, device: DeviceRecord, now: datetime
) -> RuleOutcome:
    rule = "max_last_contact_age"
    seen = device.last_contact
    if seen is None:
        return _unreported(policy, device, rule, "last contact time")
    if seen.tzinfo is None:  # providers promise aware times; read a naive one as UTC
        seen = seen.replace(tzinfo=UTC)
    age = now - seen
    ok = age <= limit
    observed = f"{seen.isoformat()} ({format_span(age)} ago)"
    return RuleOutcome(
        rule,
        ok,
        None if ok else "last-contact-too-old",
        f"device contacted the MDM within {format_span(limit)}"
        if ok
        else f"device last contacted the MDM {format_span(age)} ago,"
        f" more than {format_span(limit)}",
        observed,
    )


def format_span(span: timedelta) -> str:
    """Render a span as its largest unit and the next one (``3d 4h``, ``12m``, ``1h``).

    Negative spans (a device clock ahead of ours) render as ``0s``.
    """
    seconds = max(int(span.total_seconds()), 0)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if seconds >= size or unit == "s":
            text = f"{seconds // size}{unit}"
            if i + 1 < len(units):
                next_unit, next_size = units[i + 1]
                rest = seconds % size // next_size
                if rest:
                    text += f" {rest}{next_unit}"
            return text
    return "0s"  # pragma: no cover  # the loop always returns at "s"


def _elide(values: Iterable[str]) -> str:
    items = list(values)
    if not items:
        return "(none)"
    shown = ", ".join(items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown}, … (+{more} more)" if more > 0 else shown


def check_policy(policy: PolicySettings) -> list[str]:
    """Meaningless but not contradictory parts of a valid policy, as ``key: problem`` lines.

    The validators already refuse policies that deny every device; these are dead entries
    and likely typos that `check-config` rejects so an admin notices them.
    """
    problems: list[str] = []
    set_rules = {
        "managed": policy.managed,
        "supervised": policy.supervised,
        "compliance": policy.compliance is not None,
        "platform": policy.platform is not None,
        "owner_type": policy.owner_type is not None,
        "min_os_version": policy.min_os_version is not None,
        "max_last_contact_age": policy.max_last_contact_age is not None,
    }
    for rule in policy.allow_unreported:
        if not set_rules[rule]:
            problems.append(f"allow_unreported: {rule} is listed but the {rule} rule is off")
    for rule, known, label in (
        ("compliance", KNOWN_COMPLIANCE, "a compliance state"),
        ("owner_type", KNOWN_OWNER_TYPES, "an owner type"),
        ("platform", KNOWN_PLATFORMS, "a platform"),
    ):
        values: NameList = getattr(policy, rule) or ()
        problems.extend(
            f"{rule}: {value!r} is not {label} any provider reports"
            for value in values
            if _fold(value) not in known
        )
        problems.extend(_duplicates(rule, values))
    if policy.min_os_version is not None:
        allowed = policy.folded["platform"]
        for platform in policy.min_os_version:
            if _fold(platform) not in KNOWN_PLATFORMS:
                problems.append(
                    f"min_os_version.{platform}: {platform!r} is not a platform"
                    " any provider reports"
                )
            if policy.platform is not None and _fold(platform) not in allowed:
                problems.append(
                    f"min_os_version.{platform}: platform = [{', '.join(policy.platform)}]"
                    f" refuses {platform}, so this minimum never applies"
                )
    if policy.provider is not None:
        problems.extend(_duplicates("provider", policy.provider))
    groups = policy.groups
    for name in ("any_of", "all_of", "none_of"):
        problems.extend(_duplicates(f"groups.{name}", getattr(groups, name) or ()))
    overlap = [g for g in groups.any_of or () if _fold(g) in groups.none_of_keys]
    if overlap:
        problems.append(
            f"groups: {', '.join(overlap)} in both any_of and none_of; a device in them is always"
            " refused, so listing them in any_of has no effect"
        )
    required = {k for _, k in groups.all_of_keys}
    redundant = [g for g in groups.any_of or () if _fold(g) in required]
    if redundant:
        problems.append(
            f"groups: {', '.join(redundant)} in both any_of and all_of; all_of already requires"
            " them, so any_of always passes"
        )
    return problems


def _duplicates(key: str, values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    problems: list[str] = []
    for value in values:
        folded = _fold(value)
        if folded in seen:
            problems.append(f"{key}: {value!r} is listed twice (compared case-insensitively)")
        seen.add(folded)
    return problems
