"""Fleet JSON to `DeviceRecord`: pure functions, tested without HTTP.

Fleet groups hosts by team and labels; both become groups. Policy results become groups too,
so the policy package needs no Fleet rule: ``groups.none_of`` expresses "passes":

    fleet-policy-failing:NAME          the host fails policy NAME
    fleet-policy-pending:NAME          NAME has no result for the host yet
    fleet-policies-not-passing         some policy fails or has no result
    fleet-critical-policies-not-passing  some critical policy (Fleet Premium) fails or has no
                                       result, or the answer carried no policy results at all

"Managed" is Fleet's MDM enrollment status ``On (…)``, whichever MDM the host is enrolled in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from providers._records import iso_time, text
from providers.base import DeviceRecord, GroupRef, UserRecord
from providers.fleet._models import EndUser, Host, HostPolicy
from providers.identifiers import DeviceIdentifier, IdentifierKind, ascii_upper

FAILING = "fleet-policy-failing:"
PENDING = "fleet-policy-pending:"
NOT_PASSING = "fleet-policies-not-passing"
CRITICAL_NOT_PASSING = "fleet-critical-policies-not-passing"

_APPLE = {"darwin": "macOS", "ios": "iOS", "ipados": "iPadOS"}
_OTHER = {"windows": "Windows", "chrome": "ChromeOS", "android": "Android"}
_LINUX = frozenset(
    {
        "linux",
        "ubuntu",
        "debian",
        "rhel",
        "centos",
        "fedora",
        "amzn",
        "arch",
        "manjaro",
        "gentoo",
        "nixos",
        "sles",
        "opensuse-leap",
        "opensuse-tumbleweed",
        "kali",
        "pop",
        "linuxmint",
    }
)
_APPLE_OS_NAME = re.compile(r"^(macOS|Mac OS X|iOS|iPadOS)\s+")
_NEVER = datetime(2001, 1, 1, tzinfo=UTC)  # Fleet writes placeholder dates for "never"


def platform(value: str | None) -> str | None:
    """The `providers.vocabulary` spelling of Fleet's ``platform``; Fleet's own for one the
    vocabulary lacks (a Linux distribution not listed here is still not an Apple device)."""
    key = (value or "").strip().lower()
    if key in _APPLE:
        return _APPLE[key]
    if key in _OTHER:
        return _OTHER[key]
    return "Linux" if key in _LINUX else text(value)


def os_version(host: Host) -> str | None:
    """Fleet writes ``macOS 14.1``; Apple versions lose the OS name so version rules compare."""
    version = text(host.os_version)
    if version is None or platform(host.platform) not in _APPLE.values():
        return version
    return text(_APPLE_OS_NAME.sub("", version))


def managed(host: Host) -> bool | None:
    """Enrollment ``On (manual|automatic|personal…)``: managed; ``Off``, ``Pending``: not."""
    status = text(host.mdm.enrollment_status) if host.mdm is not None else None
    if status is None:
        return None
    return status.casefold().startswith("on")


def owner_type(host: Host) -> str | None:
    """Personal (BYOD) and automatic (ADE, company) enrollments say who owns the device."""
    status = (host.mdm.enrollment_status or "").casefold() if host.mdm is not None else ""
    if "personal" in status:
        return "personal"
    if "automatic" in status or "company" in status:
        return "company"
    return None


def last_contact(host: Host) -> datetime | None:
    """The newer of ``seen_time`` (osquery check-in) and ``detail_updated_at`` (MDM refetch).

    Fleet keeps no seen time for iPhones and iPads and answers their creation time instead,
    so the detail refetch is what shows they are still in contact.
    """
    times = [iso_time(host.seen_time), iso_time(host.detail_updated_at)]
    real = [t for t in times if t is not None and t >= _NEVER]
    return max(real) if real else None


def matches(host: Host, identifier: DeviceIdentifier) -> bool:
    """Whether the host really is the attested device.

    Fleet resolves an identifier against hostname, osquery id, node key, UUID and serial and
    answers the first hit, so a host that named itself after another device's serial can come
    back: only the serial (or, for a UDID, the UUID) counts.
    """
    wanted = identifier.value.upper()
    field = host.uuid if identifier.kind is IdentifierKind.UDID else host.hardware_serial
    return ascii_upper((field or "").strip()) == wanted


def policy_groups(policies: list[HostPolicy] | None) -> list[GroupRef]:
    """Failing and pending policies by name, and the two aggregates (see the module docstring)."""
    if policies is None:
        return [GroupRef(name=NOT_PASSING), GroupRef(name=CRITICAL_NOT_PASSING)]
    refs: list[GroupRef] = []
    not_passing = critical = False
    for policy in policies:
        response = (policy.response or "").strip().lower()
        if response == "pass":
            continue
        not_passing = True
        critical = critical or bool(policy.critical)
        name = text(policy.name) or policy.id or "?"
        prefix = FAILING if response == "fail" else PENDING
        refs.append(GroupRef(name=prefix + name))
    if not_passing:
        refs.append(GroupRef(name=NOT_PASSING))
    if critical:
        refs.append(GroupRef(name=CRITICAL_NOT_PASSING))
    return refs


def groups(host: Host, *, policies: bool, idp: bool) -> tuple[GroupRef, ...]:
    """The team, labels (with ids), the end user's IdP groups, then policy results."""
    refs: list[GroupRef] = []
    team = text(host.team_name)
    if team is not None:
        refs.append(GroupRef(name=team))
    for label in host.labels or ():
        name = text(label.name)
        if name is not None:
            dynamic = label.label_membership_type
            smart = None if dynamic is None else dynamic.lower() == "dynamic"
            refs.append(GroupRef(name=name, id=text(label.id), smart=smart))
    if idp:
        refs += [GroupRef(name=g, directory=True) for g in _idp_groups(host.end_users or ())]
    if policies:
        refs += policy_groups(host.policies)
    return tuple(_unique(refs))


def _idp_groups(users: Iterable[EndUser]) -> list[str]:
    return [n for u in users for g in u.idp_groups or () if (n := text(g)) is not None]


def _unique(refs: Iterable[GroupRef]) -> list[GroupRef]:
    """Each group once: the same name with another id (a team and a label both called
    "Quarantine") is another group, whose id a rule may name."""
    seen: set[tuple[str, str | None]] = set()
    kept: list[GroupRef] = []
    for ref in refs:
        if (ref.name, ref.id) not in seen:
            seen.add((ref.name, ref.id))
            kept.append(ref)
    return kept


def user(host: Host) -> UserRecord | None:
    """The first end user Fleet knows from the identity provider (SCIM, ABM, IdP login)."""
    if not host.end_users:
        return None
    first = host.end_users[0]
    username = text(first.idp_username)
    emails = [text(e.email) for e in first.other_emails or ()]
    email = (
        username
        if username is not None and "@" in username
        else next((e for e in emails if e is not None), None)
    )
    found = UserRecord(
        username=username,
        email=email,
        full_name=text(first.idp_full_name),
        department=text(first.idp_department),
        id=text(first.idp_id),
    )
    return found if found != UserRecord() else None


def device_record(provider: str, host: Host, *, policies: bool, idp: bool) -> DeviceRecord:
    """Normalise one Fleet host (supervision and compliance are not in Fleet's host answer)."""
    return DeviceRecord(
        provider=provider,
        record_id=host.id,
        serial=text(host.hardware_serial),
        udid=text(host.uuid),
        name=text(host.display_name) or text(host.computer_name) or text(host.hostname),
        model=text(host.hardware_model),
        platform=platform(host.platform),
        os_version=os_version(host),
        managed=managed(host),
        owner_type=owner_type(host),
        last_contact=last_contact(host),
        user=user(host),
        groups=groups(host, policies=policies, idp=idp),
    )
