"""The group rules: ``groups.all_of``, ``groups.any_of`` and ``groups.none_of``.

A device group matches an entry by its name or its id, both normalised, trimmed and case-folded;
the outcome's ``observed`` value is the device's group names (the first twenty). For the rules
that grant (all_of, any_of), a group that has an id and a *name* shaped like an id of any
inventory (a GUID: Entra, Kandji; digits: Jamf, Fleet, Workspace ONE, Mosyle; ``og:`` and
digits; ``abm-server:`` and 32 hex digits) counts by its id only, unless that name is its own
id: in Entra anyone who may create a group may name it after another group's id (an Entra
group named ``10`` must not meet an entry for the Jamf group with id 10). none_of, which
refuses, counts both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from connector.policy._result import RuleOutcome
from connector.policy._rule import Subject, duplicates, elide, verdict
from connector.policy._settings import PolicySettings, fold
from providers.base import DeviceRecord

_ID_SHAPED = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Entra, Kandji
    r"|[0-9]+"  # Jamf, Fleet, Workspace ONE smart groups, Mosyle
    r"|og:[0-9]+"  # Workspace ONE organisation groups
    r"|abm-server:[0-9a-f]{32}"  # Apple Business Manager services
)
"""Folded names shaped like a group id of one of the inventories (ASCII digits only)."""


def _group_keys(device: DeviceRecord) -> frozenset[str]:
    """Every folded name and id of the device's groups (what none_of refuses on)."""
    names = frozenset(fold(g.name) for g in device.groups)
    return names | frozenset(fold(g.id) for g in device.groups if g.id)


def _granting_keys(device: DeviceRecord) -> frozenset[str]:
    """The folded names and ids all_of and any_of accept: a name shaped like an id only when it
    is the group's own id (Graph names a group it may not read by its id) or the group has no
    id at all (inventory files and tags know groups by name only) and is not a directory's,
    whose users name groups as they like (Fleet's IdP groups)."""
    keys: set[str] = set()
    for group in device.groups:
        name, ident = fold(group.name), fold(group.id) if group.id else None
        if ident is not None:
            keys.add(ident)
        known_by_name = ident is None and not group.directory
        if known_by_name or name == ident or not _ID_SHAPED.fullmatch(name):
            keys.add(name)
    return frozenset(keys)


def _group_names(device: DeviceRecord) -> str:
    """The device's group names for `observed`: sorted, the first twenty."""
    return elide(sorted({g.name for g in device.groups}, key=str.casefold))


class AllOfRule:
    """``groups.all_of``: the device must be in every listed group."""

    key = "groups.all_of"
    code = "group-required"
    unreportable = False

    def configured(self, policy: PolicySettings) -> bool:
        return policy.groups.all_of is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        keys = _granting_keys(subject.device)
        missing = [g for g, k in policy.groups.all_of_keys if k not in keys]
        return verdict(
            self,
            not missing,
            f"device is missing required groups: {elide(missing)}"
            if missing
            else "device is in every required group",
            _group_names(subject.device),
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return duplicates(self.key, policy.groups.all_of or ())


class AnyOfRule:
    """``groups.any_of``: the device must be in at least one listed group."""

    key = "groups.any_of"
    code = "group-required"
    unreportable = False

    def configured(self, policy: PolicySettings) -> bool:
        return policy.groups.any_of is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        groups = policy.groups
        ok = not groups.any_of_keys.isdisjoint(_granting_keys(subject.device))
        return verdict(
            self,
            ok,
            "device is in a required group"
            if ok
            else f"device is in none of the required groups: {elide(groups.any_of or ())}",
            _group_names(subject.device),
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        groups = policy.groups
        yield from duplicates(self.key, groups.any_of or ())
        overlap = [g for g in groups.any_of or () if fold(g) in groups.none_of_keys]
        if overlap:
            yield (
                f"groups: {', '.join(overlap)} in both any_of and none_of; a device in them is"
                " always refused, so listing them in any_of has no effect"
            )
        required = {k for _, k in groups.all_of_keys}
        redundant = [g for g in groups.any_of or () if fold(g) in required]
        if redundant:
            yield (
                f"groups: {', '.join(redundant)} in both any_of and all_of; all_of already"
                " requires them, so any_of always passes"
            )


class NoneOfRule:
    """``groups.none_of``: the device must be in none of the listed groups."""

    key = "groups.none_of"
    code = "group-forbidden"
    unreportable = False

    def configured(self, policy: PolicySettings) -> bool:
        return policy.groups.none_of is not None

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        keys = _group_keys(subject.device)
        hits = [g for g in policy.groups.none_of or () if fold(g) in keys]
        return verdict(
            self,
            not hits,
            f"device is in forbidden groups: {elide(hits)}"
            if hits
            else "device is in no forbidden group",
            _group_names(subject.device),
        )

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        return duplicates(self.key, policy.groups.none_of or ())
