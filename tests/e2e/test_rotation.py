"""The secret rotation of docs/step-ca-webhooks.md, step by step, against the real step-ca and the connector.

step-ca cannot change a webhook's secret: `step ca provisioner webhook update` keeps the id and
the secret, and `add` makes a new id and a new secret. So the rotation re-adds the webhook,
first parked (`--cert-type SSH`: the ACME provisioner signs no SSH certificates, so step-ca
does not call it), lets the connector accept the new id and secret beside the old ones
(`next_id`, `next_secret`, SIGHUP), then switches step-ca to it (`update --cert-type X509`, which
keeps the new id and secret) and finally moves `next_*` into place. No enrolment is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from posture_lab import PROVISIONER, Lab, WebhookCredentials, toml_document
from posture_lab.devicesim import SimulatedDevice
from tests.e2e.conftest import MANAGED_SERIAL

pytestmark = pytest.mark.e2e


def _admin(lab: Lab) -> list[str]:
    ca = lab.ca
    return [
        "--admin-subject=step",
        "--admin-provisioner=admin",
        f"--admin-password-file={ca.password_file}",
        f"--ca-url={ca.url}",
        f"--root={ca.root}",
    ]


def _webhook(lab: Lab, verb: str, *args: str) -> str:
    return lab.ca.step(
        "ca", "provisioner", "webhook", verb, PROVISIONER, "gate", *args, *_admin(lab)
    )


def _gate_decisions(lab: Lab, since: int) -> list[dict[str, object]]:
    return [
        e
        for e in lab.connector.events(since)
        if e.get("event") == "webhook.decision" and e.get("webhook") == "gate"
    ]


@pytest.fixture
def gate_restored(lab: Lab) -> Iterator[Lab]:
    """Whatever the test leaves behind, `gate` is a plain X509 webhook again afterwards and the
    connector runs with its id and secret."""
    yield lab
    try:
        _webhook(lab, "remove")
    finally:
        url = lab.webhook_url("gate")
        lab.webhooks["gate"] = lab.ca.add_webhook(PROVISIONER, "gate", url=url, kind="AUTHORIZING")
        lab.write_connector_config()
        lab.start_connector()


def test_rotating_a_webhook_secret_refuses_no_enrolment(gate_restored: Lab) -> None:
    """Each documented step keeps enrolment working; during the window the connector logs which
    secret signed each call, and the old id and secret are gone at the end."""
    lab = gate_restored
    device = SimulatedDevice.generate(serial=MANAGED_SERIAL)
    old = lab.webhooks["gate"]

    # 1-2. Remove the webhook and add it again, parked: step-ca does not call it for X509.
    _webhook(lab, "remove")
    out = _webhook(
        lab,
        "add",
        f"--url={lab.webhook_url('gate')}",
        "--kind=AUTHORIZING",
        "--cert-type=SSH",
    )
    new_id = re.search(r"^Webhook ID:\s*(\S+)", out, re.MULTILINE)
    new_secret = re.search(r"^Secret:\s*(\S+)", out, re.MULTILINE)
    assert new_id is not None
    assert new_secret is not None
    assert new_id.group(1) != old.id
    since = lab.connector.log_offset()
    lab.enrol(device)  # the gap: `people` still checks, `gate` is not asked
    assert _gate_decisions(lab, since) == []

    # 3. The connector accepts the next id and secret beside the current ones.
    next_secret = lab.connector_dir / "gate.next.secret"
    next_secret.write_text(new_secret.group(1), encoding="utf-8")
    document = lab.connector_document(extra_webhooks=lab.extra_webhooks)
    [gate] = [h for h in document["webhooks"] if h["name"] == "gate"]
    gate.update(next_id=new_id.group(1), next_secret={"file": str(next_secret)})
    lab.config_path.write_text(toml_document(document), encoding="utf-8")
    assert lab.connector.reload()["event"] == "config.reloaded"

    # 4. step-ca switches to the new webhook; update keeps its id and secret.
    _webhook(lab, "update", "--cert-type=X509")
    since = lab.connector.log_offset()
    lab.enrol(device)
    [decision] = _gate_decisions(lab, since)
    assert (decision["allow"], decision["secret"]) == (True, "next")

    # 5. Move next_* into place and reload: the old secret is no longer accepted.
    lab.webhooks["gate"] = WebhookCredentials("gate", new_id.group(1), new_secret.group(1))
    lab.write_connector_config()
    event = lab.connector.reload()
    assert (event["event"], event["restart_required"]) == ("config.reloaded", [])
    since = lab.connector.log_offset()
    lab.enrol(device)
    [decision] = _gate_decisions(lab, since)
    assert decision["allow"] is True
    assert "secret" not in decision
    assert old.secret not in lab.config_path.read_text(encoding="utf-8")
