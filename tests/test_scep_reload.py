"""A config reload (SIGHUP) swaps in SCEP parts built from the new config: the challenge URL's
credentials and options, the validators, the Intune SCEP clients and the chain's share of the
decision budget; the replaced ones close once requests under way are done.

The real app serves a config file; `ConfigReloader` re-reads it as SIGHUP does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from connector.keys import ROUTES
from tests import reload_support, test_scep_intune
from tests.fakes.mdm import basic_auth, challenge_request
from tests.helpers import config, webhook
from tests.reload_support import Serve, Served
from tests.test_scep_challenge import (
    CHALLENGE_URL,
    MANAGED,
    MDM_PASSWORD,
    MDM_USER,
    SCEP_ID,
    scep_webhook,
)
from tests.test_scep_challenge import present as present_challenge
from tests.test_scep_intune import (
    CLIENT_ID,
    CLIENT_SECRET,
    UNMANAGED,
    intune_provider,
    intune_webhook,
    until,
)
from tests.test_scep_intune import present as present_intune

intune = test_scep_intune.intune
"""The fake tenant (Entra + Graph with discovery) and Intune's validation service."""
serve = reload_support.serve
"""The app served from a config file, and its reloader."""

NEW_PASSWORD = "rotated password after the leak"
NEW_CLIENT_SECRET = "rotated-graph-client-secret"


# --- one-time challenges --------------------------------------------------------------------


def challenge_config(inventory: Path, tmp_path: Path, **validator: Any) -> dict[str, Any]:
    """An ENRICHING webhook and the SCEP webhook "wifi" with a challenge validator."""
    return config(
        inventory,
        webhooks=[webhook(), scep_webhook(**validator)],
        store={"path": str(tmp_path / "store.sqlite3")},
    )


async def fetch(served: Served, password: str, **device: Any) -> Any:
    """The MDM's POST to the challenge URL with `password`."""
    return await served.client.post(
        CHALLENGE_URL,
        json=challenge_request(**device),
        headers=basic_auth(MDM_USER, password),
    )


async def test_reload_applies_a_rotated_challenge_url_password(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """After a reload the challenge URL takes the new password and refuses the old one."""
    served = await serve(challenge_config(inventory, tmp_path))

    assert await served.reload(challenge_config(inventory, tmp_path, password=NEW_PASSWORD))

    assert (await fetch(served, NEW_PASSWORD, serial=MANAGED)).status == 200
    old = await fetch(served, MDM_PASSWORD, serial=MANAGED)
    assert old.status == 401
    assert (await old.json())["error"]["code"] == "unauthorized"


async def test_reload_applies_unbound_probe(serve: Serve, inventory: Path, tmp_path: Path) -> None:
    """Once a reload sets unbound = "probe", a request naming no device gets a probe, which
    enrols nothing."""
    served = await serve(challenge_config(inventory, tmp_path, unbound="csr"))

    assert await served.reload(challenge_config(inventory, tmp_path, unbound="probe"))

    response = await fetch(served, MDM_PASSWORD)
    assert response.status == 200
    challenge = await response.text()
    assert challenge.startswith("probe-")
    answer = await present_challenge(served.client, MANAGED, challenge)
    assert answer["allow"] is False
    assert answer["error"]["code"] == "challenge-invalid"


async def test_unbound_challenges_issued_before_a_reload_to_probe_enrol_nothing(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """A device-less challenge handed out while unbound = "csr" is refused once a reload set
    "probe": the admin dropped the weaker mode, so its challenges end with it."""
    served = await serve(challenge_config(inventory, tmp_path, unbound="csr"))
    response = await fetch(served, MDM_PASSWORD)
    challenge = await response.text()
    assert not challenge.startswith("probe-")

    assert await served.reload(challenge_config(inventory, tmp_path, unbound="probe"))

    answer = await present_challenge(served.client, MANAGED, challenge)
    assert answer["allow"] is False
    assert answer["error"]["code"] == "challenge-invalid"


async def test_renamed_scep_webhook_works_after_a_reload(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """A SCEP webhook renamed on the same path validates with its new name's validator."""
    served = await serve(challenge_config(inventory, tmp_path))
    renamed = challenge_config(inventory, tmp_path)
    renamed["webhooks"][1]["name"] = "wifi-corp"

    assert await served.reload(renamed)

    challenge = await (await fetch(served, MDM_PASSWORD, serial=MANAGED)).text()
    answer = await present_challenge(served.client, MANAGED, challenge)
    assert answer["allow"] is True


async def test_scep_chain_keeps_its_share_of_the_budget_after_a_reload(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """A reload gives a SCEP webhook's chain what the validator leaves of the decision budget,
    as the start does (8 s - 3 s), so both fit into step-ca's 10 s."""
    served = await serve(challenge_config(inventory, tmp_path))

    def budget() -> float:
        chain = served.app[ROUTES]["/webhooks/scep"][SCEP_ID].chain
        return float(chain._budget)

    assert budget() == 5.0
    assert await served.reload(challenge_config(inventory, tmp_path))
    assert budget() == 5.0


async def test_moved_challenge_url_waits_for_a_restart(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """A challenge URL moved to a path the router does not know is listed in restart_required;
    the old path then answers 404 rather than handing out challenges."""
    served = await serve(challenge_config(inventory, tmp_path))

    with capture_logs() as logs:
        assert await served.reload(challenge_config(inventory, tmp_path, path="/scep/moved"))

    [reloaded] = [e for e in logs if e["event"] == "config.reloaded"]
    assert reloaded["restart_required"] == [
        "webhooks[1].validator.path (/scep/moved is not served yet)"
    ]
    response = await fetch(served, MDM_PASSWORD, serial=MANAGED)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not-found"


async def test_unchanged_scep_config_reloads_with_nothing_to_restart(
    serve: Serve, inventory: Path, tmp_path: Path
) -> None:
    """Reloading an unchanged SCEP config swaps in a new runtime and asks for no restart."""
    served = await serve(challenge_config(inventory, tmp_path))
    before = served.scep

    with capture_logs() as logs:
        assert await served.reload(challenge_config(inventory, tmp_path))

    [reloaded] = [e for e in logs if e["event"] == "config.reloaded"]
    assert reloaded["restart_required"] == []
    assert served.scep is not before


# --- Intune -----------------------------------------------------------------------------------


def intune_config(
    inventory: Path,
    tmp_path: Path,
    graph_url: str,
    *,
    secret: str = CLIENT_SECRET,
    server: dict[str, Any] | None = None,
    **validator: Any,
) -> dict[str, Any]:
    """An Intune-validated SCEPCHALLENGE webhook that allows a CSR naming no device."""
    return config(
        inventory,
        server=server or {},
        providers={
            "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
            "intune": intune_provider(graph_url, secret),
        },
        webhooks=[
            intune_webhook(
                {"kind": "intune", "provider": "intune", **validator},
                on_missing_identifier="allow",
            )
        ],
        store={"path": str(tmp_path / "store.sqlite3")},
    )


async def test_reload_applies_a_tightened_intune_identity(
    serve: Serve, inventory: Path, tmp_path: Path, intune: Any
) -> None:
    """After a reload to identity = "common_name" the CSR's device goes through the policy:
    an unmanaged one is denied, as after a fresh start."""
    _, scep, graph_url = intune
    served = await serve(intune_config(inventory, tmp_path, graph_url, identity="none"))
    assert await present_intune(served.client, UNMANAGED, scep.issue_challenge(UNMANAGED)) == {
        "allow": True,
        "data": {},
    }

    assert await served.reload(
        intune_config(inventory, tmp_path, graph_url, identity="common_name")
    )

    answer = await present_intune(served.client, UNMANAGED, scep.issue_challenge(UNMANAGED))
    assert answer["allow"] is False
    assert answer["error"]["code"] == "device-unmanaged"


async def test_reload_gives_the_intune_scep_client_a_rotated_secret(
    serve: Serve, inventory: Path, tmp_path: Path, intune: Any
) -> None:
    """After the app's client secret is rotated in Entra and in the config, a reload signs the
    SCEP validation in with the new secret."""
    graph, scep, graph_url = intune
    served = await serve(intune_config(inventory, tmp_path, graph_url))
    assert (await present_intune(served.client, MANAGED, scep.issue_challenge(MANAGED)))["allow"]

    graph.clients[CLIENT_ID] = NEW_CLIENT_SECRET  # the old secret is revoked...
    graph.expire_tokens()  # ...and so are the tokens it got
    assert await served.reload(
        intune_config(inventory, tmp_path, graph_url, secret=NEW_CLIENT_SECRET)
    )

    answer = await present_intune(served.client, MANAGED, scep.issue_challenge(MANAGED))
    assert answer["allow"] is True


async def test_replaced_intune_clients_close_after_requests_under_way(
    serve: Serve, inventory: Path, tmp_path: Path, intune: Any
) -> None:
    """The SCEP runtime a reload replaces closes its Intune clients once the decision budget
    (plus a grace) has passed; the new one keeps serving."""
    _, scep, graph_url = intune
    fast = {"decision_budget": 1.0}
    served = await serve(intune_config(inventory, tmp_path, graph_url, server=fast))
    old = served.scep

    assert await served.reload(intune_config(inventory, tmp_path, graph_url, server=fast))

    assert not old.closed  # requests under way may still hold it
    await until(lambda: old.closed)
    assert not served.scep.closed
    assert (await present_intune(served.client, MANAGED, scep.issue_challenge(MANAGED)))["allow"]
