"""Start-up checks beyond the schema: files that must exist and load, policies that make sense.

`serve` refuses to start on any of these; `check-config` lists them all.
"""

from __future__ import annotations

import ssl

from connector.policy import check_policy
from connector.settings import Settings
from providers import preflight_problems


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
