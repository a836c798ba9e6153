"""Start-up checks beyond the schema: files that must exist and load, policies that make sense.

`serve` refuses to start on any of these; `check-config` lists them all.

Warnings (`config_warnings`) stop neither: `check-config` prints them and still exits 0, `serve`
logs each once as `config.warning`.
"""

from __future__ import annotations

import re
import ssl

from connector.policy import check_policy
from connector.scep import SCEP_KINDS
from connector.settings import Settings
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
