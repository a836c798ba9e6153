"""Start-up checks beyond the schema: files that must exist and load, policies that make sense.

`serve` refuses to start on any of these; `check-config` lists them all.

`check-config --online` adds `online_checks`: it starts every provider (credentials, permissions,
an inventory file loaded row by row) and reads the TLS files, as `serve` would at start.

Warnings (`config_warnings`) stop neither: `check-config` prints them and still exits 0, `serve`
logs each once as `config.warning`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509

from connector.policy import check_policy
from connector.scep import SCEP_KINDS
from connector.settings import Settings, is_loopback, split_listen
from providers import (
    IdentifierKind,
    ProviderError,
    ProviderSettings,
    build_provider,
    classify,
    preflight_problems,
)


def preflight(settings: Settings) -> list[str]:
    """Every problem found, each prefixed with the config file and key path."""
    src = settings.source
    problems: list[str] = []
    server = settings.server
    if server.tls_cert is not None and server.tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                server.tls_cert, server.tls_key
            )
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{src}: server.tls_cert/tls_key: cannot load the pair: {_why(exc)}")
    if server.client_ca is not None:
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(server.client_ca))
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{src}: server.client_ca: cannot load: {_why(exc)}")
    for name, provider in settings.providers.items():
        problems.extend(f"{src}: providers.{name}.{p}" for p in preflight_problems(provider))
    for index, hook in enumerate(settings.webhooks):
        where = f"{src}: webhooks[{index}].policy"
        problems.extend(f"{where}.{problem}" for problem in check_policy(hook.policy))
        unknown = [p for p in hook.policy.provider or () if p not in hook.providers]
        if unknown:
            problems.append(
                f"{where}.provider: {', '.join(unknown)} not in this webhook's providers, "
                "so a device from it can never match"
            )
    return problems


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# step-ca writes a webhook id as a lowercase canonical UUID (admin API: random UUIDv4).
_STEP_CA_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def config_warnings(settings: Settings) -> list[str]:
    """Things that work but are probably not what the admin wants; `serve` starts anyway.

    Each is prefixed with the config file and key path and never quotes a secret.
    """
    src = settings.source
    warnings: list[str] = []
    for index, hook in enumerate(settings.webhooks):
        for id_key, webhook_id in zip(("id", "next_id"), hook.ids, strict=False):
            if not _STEP_CA_ID.fullmatch(webhook_id):
                warnings.append(
                    f"{src}: webhooks[{index}].{id_key}: not a UUID as step-ca writes it "
                    "(lowercase, 8-4-4-4-12 hex); step-ca sends the id that `step ca provisioner "
                    "webhook add` printed, so a call with this id can only come from a "
                    "hand-written ca.json"
                )
    first_with: dict[bytes, tuple[int, str]] = {}
    for index, hook in enumerate(settings.webhooks):
        for label, key in hook.hmac_keys:
            if not key:  # ca.json webhooks all sign with the empty key; mTLS guards them
                continue
            name = "secret" if label == "current" else "next_secret"
            if key not in first_with:
                first_with[key] = (index, name)
                continue
            other, other_name = first_with[key]
            if other == index:
                warnings.append(
                    f"{src}: webhooks[{index}].next_secret: the same as its secret, so nothing "
                    "rotates; give it the secret step-ca printed for the new webhook"
                )
                continue
            warnings.append(
                f"{src}: webhooks[{index}].{name}: the same secret as webhooks[{other}]"
                + ("" if other_name == "secret" else f".{other_name}")
                + f" ({settings.webhooks[other].name}); step-ca signs only the body, so a body "
                "signed for one is accepted by the other (an ENRICHING body replayed to the "
                "AUTHORIZING path with the other id passes); give each webhook the secret "
                "step-ca generated for it"
            )
    warnings.extend(
        f"{src}: webhooks[{index}].next_secret: a secret rotation is open, calls signed with "
        "either secret are accepted; once step-ca signs with the new one (decisions log "
        "secret=next), move next_id and next_secret to id and secret and remove them"
        for index, hook in enumerate(settings.webhooks)
        if hook.next_secret is not None
    )
    warnings.extend(unpinned_client_warnings(settings))
    warnings.extend(mac_udid_warnings(settings))
    warnings.extend(unread_group_warnings(settings))
    warnings.extend(budget_warnings(settings))
    warnings.extend(shadow_warnings(settings))
    warnings.extend(exposed_admin_warnings(settings))
    return warnings


def unpinned_client_warnings(settings: Settings) -> list[str]:
    """Webhooks with the empty key (ca.json-only) while no client certificate name is pinned:
    their only guard is the client certificate, and `server.client_ca` (step-ca's root) also
    issued every device's certificate."""
    if settings.server.client_dns_names:
        return []
    return [
        f"{settings.source}: webhooks[{index}].secret: empty (a ca.json webhook) while "
        "server.client_dns_names is not set, so any certificate server.client_ca issued is taken "
        "for step-ca's, a device's own included; set client_dns_names to a name in step-ca's "
        "client certificate"
        for index, hook in enumerate(settings.webhooks)
        if not hook.secret.get_secret_value()
    ]


def budget_warnings(settings: Settings) -> list[str]:
    """Provider budgets that cannot fit into one call's `server.decision_budget`.

    Providers of a chain are asked one after another and share that one deadline: when their
    own budgets add up to more, a slow first provider leaves the next one less than it needs
    (its lookup then fails closed as `inventory-unavailable`).
    """
    limit = settings.server.decision_budget
    warnings: list[str] = []
    for index, hook in enumerate(settings.webhooks):
        budgets = {
            name: budget
            for name in hook.providers
            if isinstance(budget := getattr(settings.providers[name], "budget", None), float | int)
        }
        total = sum(budgets.values())
        if total > limit:
            parts = " + ".join(f"{name} {budget:g}s" for name, budget in budgets.items())
            warnings.append(
                f"{settings.source}: webhooks[{index}].providers: budgets {parts} = {total:g}s "
                f"exceed server.decision_budget ({limit:g}s): when the first providers are slow, "
                "the later ones get what is left and may answer inventory-unavailable"
            )
    return warnings


def shadow_warnings(settings: Settings) -> list[str]:
    """Webhooks in shadow mode: they allow every device, whatever their policy says."""
    return [
        f"{settings.source}: webhooks[{index}].mode: shadow: this webhook answers allow to every "
        'device and only records what its policy would have decided; set mode = "enforce" '
        "once the audit shows no unexpected would-be denials"
        for index, hook in enumerate(settings.webhooks)
        if hook.mode == "shadow"
    ]


def exposed_admin_warnings(settings: Settings) -> list[str]:
    """The admin page is plain HTTP: listening beyond loopback sends its token in the clear."""
    admin = settings.admin
    if not admin.enabled or is_loopback(split_listen(admin.listen)[0]):
        return []
    return [
        f"{settings.source}: admin.listen: {admin.listen} is reachable from other machines, "
        "and the admin page is plain HTTP (its token and session cookie travel unencrypted); "
        "keep it on 127.0.0.1 and reach it through an SSH tunnel or kubectl port-forward, or "
        "put a TLS proxy in front"
    ]


def unread_group_warnings(settings: Settings) -> list[str]:
    """Webhooks that forbid groups (``groups.none_of``) through a provider told not to read a
    source of groups: a device in such a group is never refused for it, since a group never
    read looks the same as none. A provider kind names its switches in the class attribute
    ``group_switches`` of its settings model (key: what it reads)."""
    src = settings.source
    warnings: list[str] = []
    for index, hook in enumerate(settings.webhooks):
        if not hook.policy.groups.none_of:
            continue
        for name in hook.providers:
            table = settings.providers.get(name)
            switches: dict[str, str] = getattr(type(table), "group_switches", {})
            for key, source in switches.items():
                if getattr(table, key, True) is False:
                    warnings.append(
                        f"{src}: webhooks[{index}].policy.groups.none_of: provider {name!r} "
                        f"does not read {source} ({key} = false), so a device is never refused "
                        f"for a group among them; set {key} = true, or forbid only groups it reads"
                    )
    return warnings


def mac_udid_warnings(settings: Settings) -> list[str]:
    """Webhooks that accept UDIDs although none of their providers can find a Mac by one.

    On a Mac, Managed Device Attestation attests the *provisioning* UDID, which differs from
    the UDID the MDM protocol and inventories keep. A provider kind declares with the class
    attribute ``matches_mac_provisioning_udid`` on its settings model whether it can match it
    (files can: the admin writes whatever UDID they like); a kind that says nothing cannot.
    """
    src = settings.source
    warnings: list[str] = []
    for index, hook in enumerate(settings.webhooks):
        if IdentifierKind.UDID not in hook.identifier_kinds or hook.kind in SCEP_KINDS:
            continue  # SCEP devices name themselves; nothing attests a provisioning UDID
        tables = [settings.providers[name] for name in hook.providers if name in settings.providers]
        if any(getattr(type(t), "matches_mac_provisioning_udid", False) for t in tables):
            continue
        warnings.append(
            f"{src}: webhooks[{index}].identifier_kinds: accepts udid, but none of its "
            f"providers ({', '.join(hook.providers)}) can match a Mac's provisioning UDID, the "
            "UDID Managed Device Attestation attests on a Mac (it differs from the UDID MDMs "
            "and inventories keep), so a Mac attested by UDID is never found; have the ACME "
            'payload attest the serial number and set identifier_kinds = ["serial"], or list '
            "the Macs' provisioning UDIDs in a CSV or JSON inventory"
        )
    return warnings


# --- online: what can be checked from here, by starting things -----------------------------

PROBE_SERIAL = "ZZPOSTURECHK0"
"""A serial-shaped identifier no device has: the harmless lookup each provider is asked."""
EXPIRY_WARNING = timedelta(hours=8)
"""A TLS certificate closer than this to its end is a warning (the guide renews at 8 h left)."""
STEP_CA_SECRET_BYTES = 64


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One online check.

    Attributes:
        subject: What was checked (``provider jamf``, ``tls server.tls_cert``, ``webhook gate``).
        status: ``ok``, ``warn`` (works, but look at it) or ``fail``.
        detail: What was seen; a vendor's own error text for a provider; never a secret.
    """

    subject: str
    status: Literal["ok", "warn", "fail"]
    detail: str


async def online_checks(settings: Settings, *, now: datetime | None = None) -> list[CheckResult]:
    """Start every provider (token, then one harmless lookup; files are loaded row by row), read
    the TLS files, and judge each webhook's id and secret against what step-ca generates."""
    limit = settings.server.provider_start_timeout + settings.server.decision_budget
    providers = await asyncio.gather(
        *(check_provider(name, table, limit=limit) for name, table in settings.providers.items())
    )
    return [*tls_checks(settings, now or datetime.now(UTC)), *providers, *webhook_checks(settings)]


async def check_provider(name: str, table: ProviderSettings, *, limit: float) -> CheckResult:
    """Start the provider and ask it for `PROBE_SERIAL`; its error text on failure."""
    subject = f"provider {name}"
    provider = build_provider(name, table)
    try:
        async with asyncio.timeout(limit):
            await provider.start()
            await provider.lookup(classify(PROBE_SERIAL, frozenset({IdentifierKind.SERIAL})))
    except ProviderError as exc:
        return CheckResult(subject, "fail", exc.message)
    except TimeoutError:
        return CheckResult(subject, "fail", f"no answer within {limit:g}s")
    finally:
        await provider.aclose()
    devices = getattr(provider, "device_count", None)
    loaded = f"loaded {devices} devices, " if isinstance(devices, int) else ""
    return CheckResult(subject, "ok", f"{table.kind}: {loaded}started and answered a lookup")


def tls_checks(settings: Settings, now: datetime) -> list[CheckResult]:
    """The listener's certificate (names, validity) and the client CA bundle."""
    server = settings.server
    results: list[CheckResult] = []
    if server.plain_http:
        results.append(CheckResult("tls", "ok", "plain_http: a proxy in front terminates TLS"))
    elif server.tls_cert is None:
        results.append(
            CheckResult("tls", "warn", "dev_certificate: self-signed, not for production")
        )
    else:
        results.append(_certificate("tls server.tls_cert", server.tls_cert, now))
    if server.client_ca is not None:
        try:
            roots = x509.load_pem_x509_certificates(server.client_ca.read_bytes())
        except (OSError, ValueError) as exc:
            results.append(CheckResult("tls server.client_ca", "fail", _why(exc)))
        else:
            names = ", ".join(c.subject.rfc4514_string() for c in roots)
            results.append(CheckResult("tls server.client_ca", "ok", f"trusts {names}"))
    return results


def _certificate(subject: str, path: Path, now: datetime) -> CheckResult:
    try:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as exc:
        return CheckResult(subject, "fail", _why(exc))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ", ".join(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = cert.subject.rfc4514_string()
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return CheckResult(subject, "fail", f"{names}: not valid before {start.isoformat()}")
    if now >= end:
        return CheckResult(subject, "fail", f"{names}: expired {end.isoformat()}")
    left = end - now
    detail = f"{names}, valid until {end.isoformat()} ({left.total_seconds() / 3600:.1f} h left)"
    if left < EXPIRY_WARNING:
        return CheckResult(subject, "warn", f"{detail}; is its renewal running?")
    return CheckResult(subject, "ok", detail)


def webhook_checks(settings: Settings) -> list[CheckResult]:
    """Whether each webhook's id and secret look like what `step ca provisioner webhook add`
    prints: a lowercase UUID and the base64 of 64 random bytes."""
    results: list[CheckResult] = []
    for hook in settings.webhooks:
        subject = f"webhook {hook.name}"
        odd = [i for i in hook.ids if not _STEP_CA_ID.fullmatch(i)]
        if odd:
            results.append(CheckResult(subject, "warn", f"id {odd[0]!r} is not a step-ca UUID"))
            continue
        lengths = {len(key) for _label, key in hook.hmac_keys}
        if lengths == {0}:
            detail = "empty key (a ca.json webhook); step-ca's client certificate is required"
            results.append(CheckResult(subject, "ok", detail))
        elif lengths != {STEP_CA_SECRET_BYTES}:
            detail = (
                f"the secret decodes to {' and '.join(map(str, sorted(lengths)))} bytes; "
                f"step-ca's are "
                f"{STEP_CA_SECRET_BYTES}: is it the Secret step-ca printed for this webhook?"
            )
            results.append(CheckResult(subject, "warn", detail))
        else:
            results.append(CheckResult(subject, "ok", "id and secret look like step-ca's"))
    return results
