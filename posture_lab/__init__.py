"""The lab: a real step-ca and the connector on 127.0.0.1, and simulated Apple devices enrolling.

An admin runs ``posture-connector lab`` to see what a template and a policy do to a real
certificate before touching production; the end-to-end tests build on the same classes.
It ships in the posture-connector wheel but needs the ``[lab]`` extra (cbor2, for the simulated
attestation); the service never imports it. The X.509 templates travel with it as package data
(`TEMPLATES_DIR`), so an installed lab needs no checkout.

Pieces, each usable alone:

- `find_step_tools`: the `step-ca` and `step` binaries (``scripts/install-step.sh`` in a checkout).
- `StepCA`: ``step ca init --remote-management``, start/stop, provisioners, webhooks, certificates.
- `ConnectorProcess`: ``python -m connector serve --config F`` as a child process, with its log.
- `Lab`: wires them: fake attestation PKI, ACME provisioner with the X.509 template, the
  connector's TLS certificate from the CA, `people` (ENRICHING) and `gate` (AUTHORIZING) webhooks
  with the printed IDs and secrets, the connector's config, mTLS requiring step-ca's client cert.
- `posture_lab.devicesim`: the simulated device and its ACME client.

Everything listens on 127.0.0.1 on free ports and lives under one directory.
"""

from posture_lab._certs import CertificateSummary, summarize
from posture_lab._cli import add_lab_arguments, main, run_lab
from posture_lab._connector import ConnectorProcess, toml_document, toml_value
from posture_lab._lab import (
    DEFAULT_GATE_POLICY,
    DEFAULT_POLICY,
    PROVISIONER,
    SAMPLE_DEVICES,
    Lab,
    LabOptions,
    write_inventory,
)
from posture_lab._stepca import (
    StaticStepCA,
    StepCA,
    WebhookCredentials,
    static_acme_provisioner,
    static_ca_json,
)
from posture_lab._tools import (
    DEFAULT_TEMPLATE,
    TEMPLATES_DIR,
    LabError,
    StepTools,
    find_step_tools,
    free_port,
    packaged_templates,
    pinned_versions,
)

__all__ = [
    "DEFAULT_GATE_POLICY",
    "DEFAULT_POLICY",
    "DEFAULT_TEMPLATE",
    "PROVISIONER",
    "SAMPLE_DEVICES",
    "TEMPLATES_DIR",
    "CertificateSummary",
    "ConnectorProcess",
    "Lab",
    "LabError",
    "LabOptions",
    "StaticStepCA",
    "StepCA",
    "StepTools",
    "WebhookCredentials",
    "add_lab_arguments",
    "find_step_tools",
    "free_port",
    "main",
    "packaged_templates",
    "pinned_versions",
    "run_lab",
    "static_acme_provisioner",
    "static_ca_json",
    "summarize",
    "toml_document",
    "toml_value",
    "write_inventory",
]
