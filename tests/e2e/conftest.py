"""Session harness: one real step-ca (remote management), one static-ca.json step-ca, the connector.

Layout, all on 127.0.0.1 and free ports, torn down at the end of the session:

- `lab.ca`: ``step ca init --remote-management``; ACME provisioner ``devices`` (device-attest-01,
  apple, attestationRoots = the fake root, the packaged template device-identity.tpl) with
  webhooks ``people`` (ENRICHING) and ``gate`` (AUTHORIZING) added by ``step ca provisioner
  webhook add`` (ID and secret read from its output).
- `static_ca`: a second step-ca from a hand-written ca.json sharing the first one's PKI; its
  provisioners declare webhooks in ca.json only, so step-ca signs them with an empty key.
  ``static`` sends step-ca's client certificate, ``static-nocert`` sets disableTLSClientAuth.
- the connector (``python -m connector serve``) with mTLS: client_ca = step-ca's root and
  require_client_cert on every webhook.

Without the binaries (no Go to build them) the tests skip with the reason; with ``CI=true`` a
skip is a failure, so CI always exercises the real step-ca.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import pytest

from posture_lab import (
    DEFAULT_TEMPLATE,
    Lab,
    LabError,
    LabOptions,
    StaticStepCA,
    StepTools,
    find_step_tools,
    free_port,
    static_acme_provisioner,
    static_ca_json,
)

MANAGED_SERIAL = "C02LABMANAGED"
UDID_ONLY = "00008110-000A1C2E3F40801E"
UNMANAGED_SERIAL = "C02LABLOANER"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; in CI (`CI=true`) a skip would hide that step-ca never ran, so fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"end-to-end tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def step_tools() -> StepTools:
    """The pinned step-ca and step binaries (scripts/install-step.sh puts them in .tools/bin)."""
    try:
        return find_step_tools()
    except LabError as exc:
        if shutil.which("go") is None:
            skip_or_fail(f"Go is not installed, so step-ca cannot be built ({exc})")
        skip_or_fail(str(exc))


@dataclass(frozen=True, slots=True)
class StaticHooks:
    """IDs of the ca.json-only webhooks (the connector serves them under /static/...).

    Attributes:
        people_id: the ENRICHING webhook's id.
        gate_id: the AUTHORIZING webhook's id.
    """

    people_id: str
    gate_id: str


@pytest.fixture(scope="session")
def static_hooks() -> StaticHooks:
    """Fresh UUIDs, chosen by us because ca.json webhooks carry their own id."""
    return StaticHooks(people_id=str(uuid.uuid4()), gate_id=str(uuid.uuid4()))


def static_connector_hooks(hooks: StaticHooks) -> list[dict[str, object]]:
    """Connector entries for the ca.json-only webhooks: empty secret, client cert required."""
    common: dict[str, object] = {
        "secret": "",
        "require_client_cert": True,
        "providers": ["inventory"],
        "policy": {"managed": True},
    }
    return [
        {
            "name": "static-people",
            "kind": "ENRICHING",
            "path": "/static/people",
            "id": hooks.people_id,
            **common,
            "enrichment": {"personal_data": True},
        },
        {
            "name": "static-gate",
            "kind": "AUTHORIZING",
            "path": "/static/gate",
            "id": hooks.gate_id,
            **common,
        },
    ]


@pytest.fixture(scope="session")
def lab(
    step_tools: StepTools, tmp_path_factory: pytest.TempPathFactory, static_hooks: StaticHooks
) -> Iterator[Lab]:
    """step-ca + connector, set up once for the session; every process stopped afterwards."""
    template = DEFAULT_TEMPLATE
    if not template.exists():  # pragma: no cover - the example template ships with the repo
        pytest.fail(f"missing {template}", pytrace=False)
    directory = tmp_path_factory.mktemp("lab")
    with Lab(step_tools, LabOptions(directory=directory, template=template)) as the_lab:
        the_lab.setup()
        the_lab.write_connector_config(extra_webhooks=static_connector_hooks(static_hooks))
        the_lab.start_connector()
        yield the_lab


@pytest.fixture(scope="session")
def static_ca(lab: Lab, step_tools: StepTools, static_hooks: StaticHooks) -> Iterator[StaticStepCA]:
    """A step-ca whose webhooks are declared only in ca.json (Recipe B of PROTOCOL.md)."""

    def hooks(*, disable_client_auth: bool) -> list[dict[str, object]]:
        base = lab.connector_url
        return [
            {
                "id": static_hooks.people_id,
                "name": "people",
                "url": f"{base}/static/people",
                "kind": "ENRICHING",
                "certType": "X509",
                "disableTLSClientAuth": disable_client_auth,
            },
            {
                "id": static_hooks.gate_id,
                "name": "gate",
                "url": f"{base}/static/gate",
                "kind": "AUTHORIZING",
                "certType": "X509",
                "disableTLSClientAuth": disable_client_auth,
            },
        ]

    root_pem = lab.attestation.root_pem
    provisioners = [
        static_acme_provisioner(
            "static",
            attestation_root_pem=root_pem,
            template=lab.options.template,
            webhooks=hooks(disable_client_auth=False),
        ),
        static_acme_provisioner(
            "static-nocert",
            attestation_root_pem=root_pem,
            template=lab.options.template,
            webhooks=hooks(disable_client_auth=True),
        ),
    ]
    port = free_port()
    config = static_ca_json(
        lab.ca, lab.directory / "static-ca", port=port, provisioners=provisioners
    )
    ca = StaticStepCA(step_tools, config, port=port, base=lab.ca)
    ca.start()
    try:
        yield ca
    finally:
        ca.stop()


@pytest.fixture
def connector_restored(lab: Lab) -> Iterator[Lab]:
    """For tests that stop or reconfigure the connector: the good config runs again afterwards."""
    yield lab
    lab.connector.stop()
    lab.write_connector_config()
    lab.start_connector()
