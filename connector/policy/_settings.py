"""``[webhooks.policy]``: the admin's rules as validated settings.

Contradictions that would make a rule deny every device (an empty list, a group in both
``all_of`` and ``none_of``, a version that does not parse) are refused here, so the service
never starts with them. Folded lookups are computed once per settings object.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from connector.policy._durations import Duration
from connector.versions import OsVersion
from providers.identifiers import IdentifierKind

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

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
NameList = tuple[Name, ...]


def fold(value: str) -> str:
    """The form values are compared in: Unicode's compatibility caseless form (NFKD of the case
    folding of NFKD of the case folding of NFD) of the value's case folding after NFD, trimmed.
    So an inventory's ``Quarantäne`` with a combining diaeresis (as macOS writes it), with its
    marks in another order, or in full-width letters is the plain one, and any two values that
    case-folded alike still compare equal."""
    if value.isascii():  # nothing to normalise: the common case
        return value.strip().casefold()
    case = unicodedata.normalize("NFD", value).casefold()
    canonical = unicodedata.normalize("NFD", case).casefold()
    compatible = unicodedata.normalize("NFKD", canonical).casefold()
    return unicodedata.normalize("NFKD", compatible).strip()


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
        both = [g for g in self.all_of or () if fold(g) in forbidden]
        if both:
            raise ValueError(
                f"{', '.join(both)} in both all_of and none_of: no device could ever pass"
            )
        if self.any_of and all(fold(g) in forbidden for g in self.any_of):
            raise ValueError("every any_of group is also in none_of: no device could ever pass")
        return self

    @cached_property
    def any_of_keys(self) -> frozenset[str]:
        """Folded any_of entries, computed once per settings object."""
        return frozenset(fold(g) for g in self.any_of or ())

    @cached_property
    def all_of_keys(self) -> tuple[tuple[str, str], ...]:
        """(entry as written, folded) for all_of, to name the missing ones."""
        return tuple((g, fold(g)) for g in self.all_of or ())

    @cached_property
    def none_of_keys(self) -> frozenset[str]:
        """Folded none_of entries."""
        return frozenset(fold(g) for g in self.none_of or ())


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
            if fold(platform) in seen:
                raise ValueError(f"{seen[fold(platform)]} and {platform} name the same platform")
            seen[fold(platform)] = platform
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
        return {fold(p): OsVersion.parse(v) for p, v in (self.min_os_version or {}).items()}

    @cached_property
    def folded(self) -> Mapping[str, frozenset[str]]:
        """Folded allowed values of the set rules compared case-insensitively."""
        return {
            "compliance": frozenset(fold(v) for v in self.compliance or ()),
            "platform": frozenset(fold(v) for v in self.platform or ()),
            "owner_type": frozenset(fold(v) for v in self.owner_type or ()),
        }
