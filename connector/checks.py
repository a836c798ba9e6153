"""Start-up checks beyond the schema: files that must exist and load, policies that make sense.

`serve` refuses to start on any of these; `check-config` lists them all.

Warnings (`config_warnings`) stop neither: `check-config` prints them and still exits 0, `serve`
logs each once as `config.warning`.
"""

from __future__ import annotations

import re
import ssl

from connector.policy import check_policy
from connector.settings import Settings, is_loopback, split_listen
from providers import IdentifierKind, preflight_problems


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
        if not _STEP_CA_ID.fullmatch(hook.id):
            warnings.append(
                f"{src}: webhooks[{index}].id: not a UUID as step-ca writes it (lowercase, "
                "8-4-4-4-12 hex); step-ca sends the id that `step ca provisioner webhook add` "
                "printed, so a call with this id can only come from a hand-written ca.json"
            )
    first_with: dict[bytes, int] = {}
    for index, hook in enumerate(settings.webhooks):
        key = hook.hmac_key
        if not key:  # ca.json webhooks all sign with the empty key; mTLS guards them
            continue
        if key in first_with:
            other = first_with[key]
            warnings.append(
                f"{src}: webhooks[{index}].secret: the same secret as webhooks[{other}] "
                f"({settings.webhooks[other].name}); step-ca signs only the body, so a body "
                "signed for one is accepted by the other (an ENRICHING body replayed to the "
                "AUTHORIZING path with the other id passes); give each webhook the secret "
                "step-ca generated for it"
            )
        else:
            first_with[key] = index
    warnings.extend(mac_udid_warnings(settings))
    warnings.extend(budget_warnings(settings))
    warnings.extend(shadow_warnings(settings))
    warnings.extend(exposed_admin_warnings(settings))
    return warnings


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
        if IdentifierKind.UDID not in hook.identifier_kinds:
            continue
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
