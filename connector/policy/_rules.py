"""The rule table: every policy rule as one unit, in evaluation order.

Cheap identity checks come first, groups last; the order is also the order of the outcomes,
of ``report = "all"`` messages and of ``lookup``'s explanation. Adding a rule means adding its
key to `PolicySettings` and one unit to `RULES` (and to `UnreportableRule` when it reads a
field a provider may leave unreported).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta

from connector.policy._durations import format_span
from connector.policy._groups import AllOfRule, AnyOfRule, NoneOfRule
from connector.policy._result import PolicyError, RuleOutcome
from connector.policy._rule import Rule, Subject, duplicates, unknown, unreported, verdict
from connector.policy._settings import NameList, PolicySettings, fold
from connector.versions import parse_version
from providers.base import DeviceRecord
from providers.identifiers import IdentifierKind
from providers.vocabulary import COMPLIANCE_STATES, OWNER_TYPES, PLATFORMS

KIND_NOT_ALLOWED = "identifier-kind-not-allowed"


def identifier_kind_refusal(
    kind: IdentifierKind, allowed: Collection[IdentifierKind]
) -> PolicyError:
    """The denial of an identifier whose kind is not in ``allowed``.

    The one place for its code and message: the webhook's ``identifier_kinds`` check and the
    policy's ``identifier_kind`` rule both answer with it. Allowed kinds are named in
    `IdentifierKind` order, however they were configured.
    """
    names = ", ".join(k.value for k in IdentifierKind if k in allowed)
    return PolicyError(
        KIND_NOT_ALLOWED, f"identifier kind {kind.value} is not allowed (allowed: {names})"
    )


class IdentifierKindRule:
    """``identifier_kind``: the attested identifier's shape must be one of the listed kinds."""

    key = "identifier_kind"
    code = KIND_NOT_ALLOWED
    unreportable = False

    def configured(self, policy: PolicySettings) -> bool:
        return policy.identifier_kind is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        kind = subject.identifier.kind
        allowed = policy.identifier_kind or ()
        if kind in allowed:
            return verdict(self, True, f"identifier kind {kind.value} is allowed", kind.value)
        return verdict(self, False, identifier_kind_refusal(kind, allowed).message, kind.value)

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return iter(())


class ProviderRule:
    """``provider``: the inventory that answered must be one of the listed provider names."""

    key = "provider"
    code = "provider-not-allowed"
    unreportable = False

    def configured(self, policy: PolicySettings) -> bool:
        return policy.provider is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        name = subject.device.provider
        allowed = policy.provider or ()
        ok = name in allowed
        return verdict(
            self,
            ok,
            f"inventory {name} is trusted"
            if ok
            else f"inventory {name} is not trusted by this webhook (allowed: {', '.join(allowed)})",
            name,
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return duplicates(self.key, policy.provider or ())


@dataclass(frozen=True, slots=True)
class Flag:
    """A boolean the device must report as true (``managed``, ``supervised``).

    Attributes:
        key: The config key, a bool setting that turns the rule on.
        code: The code when the device reports false.
        on: Reads the setting.
        value: Reads the device's flag (None when unreported).
    """

    key: str
    code: str
    on: Callable[[PolicySettings], bool]
    value: Callable[[DeviceRecord], bool | None]
    unreportable: bool = True

    def configured(self, policy: PolicySettings) -> bool:
        return self.on(policy)

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        value = self.value(subject.device)
        if value is None:
            return unreported(self, policy, subject.device, f"{self.key} state")
        message = f"device is {self.key}" if value else f"device is not {self.key}"
        return verdict(self, value, message, str(value).lower())

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return iter(())


@dataclass(frozen=True, slots=True)
class Member:
    """A device value that must be one of a list, compared case-insensitively.

    Attributes:
        key: The config key (also the key of `PolicySettings.folded`).
        code: The code when the value is not listed.
        what: The value's name in messages (``compliance state``).
        allowed: Reads the list from the policy.
        value: Reads the device's value (None when unreported).
        known: The providers' vocabulary, for the typo lint.
        label: ``what`` with its article, for the lint (``a compliance state``).
    """

    key: str
    code: str
    what: str
    allowed: Callable[[PolicySettings], NameList | None]
    value: Callable[[DeviceRecord], str | None]
    known: frozenset[str]
    label: str
    unreportable: bool = True

    def configured(self, policy: PolicySettings) -> bool:
        return self.allowed(policy) is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        value = self.value(subject.device)
        if value is None:
            return unreported(self, policy, subject.device, self.what)
        ok = fold(value) in policy.folded[self.key]
        return verdict(
            self,
            ok,
            f"{self.what} {value} is allowed"
            if ok
            else f"{self.what} {value} is not allowed"
            f" (allowed: {', '.join(self.allowed(policy) or ())})",
            value,
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        values = self.allowed(policy) or ()
        yield from unknown(self.key, values, self.known, self.label)
        yield from duplicates(self.key, values)


class MinOsVersionRule:
    """``min_os_version``: per platform, the device's OS version must be at least the minimum."""

    key = "min_os_version"
    code = "os-version-too-old"
    unparsable = "os-version-unparsable"
    unreportable = True

    def configured(self, policy: PolicySettings) -> bool:
        return policy.min_os_version is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        device = subject.device
        if device.platform is None:
            return unreported(self, policy, device, "platform")
        minimum = policy.minimums.get(fold(device.platform))
        if minimum is None:
            return verdict(
                self,
                True,
                f"no minimum version is set for {device.platform}",
                f"{device.platform} {device.os_version or '(version unreported)'}",
            )
        if device.os_version is None:
            return unreported(self, policy, device, "OS version")
        observed = f"{device.platform} {device.os_version}"
        version = parse_version(device.os_version)
        if version is None:  # reported but unreadable: allow_unreported does not excuse it
            message = f"OS version {device.os_version!r} is not a dotted version"
            return verdict(self, False, message, observed, self.unparsable)
        ok = version >= minimum
        return verdict(
            self,
            ok,
            f"{device.platform} {version} is at least {minimum}"
            if ok
            else f"{device.platform} {version} is older than the required {minimum}",
            observed,
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        allowed = policy.folded["platform"]
        for platform in policy.min_os_version or {}:
            yield from unknown(f"{self.key}.{platform}", [platform], PLATFORMS, "a platform")
            if policy.platform is not None and fold(platform) not in allowed:
                yield (
                    f"{self.key}.{platform}: platform = [{', '.join(policy.platform)}]"
                    f" refuses {platform}, so this minimum never applies"
                )


FUTURE_CONTACT = timedelta(days=1)
"""How far in the future a last check-in may lie and still pass as clock skew (or an
inventory that writes local time as UTC); later, it fails as `last-contact-in-future`."""


class LastContactRule:
    """``max_last_contact_age``: the device's last MDM check-in must be recent enough."""

    key = "max_last_contact_age"
    code = "last-contact-too-old"
    unreportable = True

    def configured(self, policy: PolicySettings) -> bool:
        return policy.max_last_contact_age is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        limit = policy.max_last_contact_age
        if limit is None:  # pragma: no cover - a rule is judged only when configured
            raise ValueError("max_last_contact_age is not set")
        seen = subject.device.last_contact
        if seen is None:
            return unreported(self, policy, subject.device, "last contact time")
        if seen.tzinfo is None:  # providers promise aware times; read a naive one as UTC
            seen = seen.replace(tzinfo=UTC)
        age = subject.now - seen
        if -age > FUTURE_CONTACT:  # not clock skew: wrong data, which would never grow old
            return verdict(
                self,
                False,
                f"device's last contact with the MDM is {format_span(-age)} in the future;"
                " the inventory's time is wrong",
                f"{seen.isoformat()} ({format_span(-age)} ahead)",
                code="last-contact-in-future",
            )
        ok = age <= limit
        return verdict(
            self,
            ok,
            f"device contacted the MDM within {format_span(limit)}"
            if ok
            else f"device last contacted the MDM {format_span(age)} ago,"
            f" more than {format_span(limit)}",
            f"{seen.isoformat()} ({format_span(age)} ago)",
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return iter(())


RULES: tuple[Rule, ...] = (
    IdentifierKindRule(),
    ProviderRule(),
    Flag("managed", "device-unmanaged", lambda p: p.managed, lambda d: d.managed),
    Flag("supervised", "device-unsupervised", lambda p: p.supervised, lambda d: d.supervised),
    Member(
        "compliance",
        "compliance-not-allowed",
        "compliance state",
        lambda p: p.compliance,
        lambda d: d.compliance,
        COMPLIANCE_STATES,
        "a compliance state",
    ),
    Member(
        "platform",
        "platform-not-allowed",
        "platform",
        lambda p: p.platform,
        lambda d: d.platform,
        PLATFORMS,
        "a platform",
    ),
    Member(
        "owner_type",
        "owner-type-not-allowed",
        "owner type",
        lambda p: p.owner_type,
        lambda d: d.owner_type,
        OWNER_TYPES,
        "an owner type",
    ),
    MinOsVersionRule(),
    LastContactRule(),
    AllOfRule(),
    AnyOfRule(),
    NoneOfRule(),
)
"""Every rule, in evaluation order."""
