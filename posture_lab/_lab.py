"""`Lab`: step-ca, the connector and a fake attestation PKI wired together."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from posture_lab._connector import ConnectorProcess, toml_document
from posture_lab._stepca import StepCA, WebhookCredentials
from posture_lab._tools import DEFAULT_TEMPLATE, LabError, StepTools, free_port
from posture_lab.devicesim import AcmeClient, AttestationCA, Enrolment, SimulatedDevice, enrol

PROVISIONER = "devices"

SAMPLE_DEVICES: tuple[dict[str, Any], ...] = (
    {
        "serial": "C02LABMANAGED",
        "name": "MBP-ALICE",
        "model": "MacBook Pro (14-inch 2023)",
        "platform": "macOS",
        "os_version": "15.3",
        "managed": True,
        "owner_type": "company",
        "user": {
            "username": "alice",
            "email": "alice@example.com",
            "full_name": "Alice Example",
            "department": "Research & Development",
        },
        "groups": ["Engineering", "VPN Users"],
    },
    {
        "udid": "00008110-000A1C2E3F40801E",
        "name": "Bob's iPhone",
        "model": "iPhone 15 Pro",
        "platform": "iOS",
        "os_version": "18.3.1",
        "managed": True,
        "owner_type": "company",
        "user": {"username": "bob", "email": "bob@example.com", "department": "Finance"},
        "groups": ["Corporate iPhones"],
    },
    {
        "serial": "C02LABLOANER",
        "name": "MBA-LOANER",
        "platform": "macOS",
        "managed": False,
        "groups": ["Loaners"],
    },
)

DEFAULT_POLICY: dict[str, Any] = {"managed": True}
DEFAULT_GATE_POLICY: dict[str, Any] = {"managed": True, "groups": {"none_of": ["Lost or Stolen"]}}


def write_inventory(path: Path, devices: Sequence[Mapping[str, Any]]) -> None:
    """A JSON inventory for the connector's `json` provider."""
    path.write_text(json.dumps({"devices": list(devices)}, indent=2), encoding="utf-8")


@dataclass(slots=True)
class LabOptions:
    """What a lab run is made of.

    Attributes:
        directory: where every file goes (STEPPATH, keys, configs, logs).
        template: X.509 template for the ACME provisioner (None: step-ca's default).
        inventory: device list written to the connector's JSON inventory.
        enrich_policy: `[webhooks.policy]` of the ENRICHING webhook `people`.
        gate_policy: `[webhooks.policy]` of the AUTHORIZING webhook `gate`.
        require_client_cert: mTLS: the connector accepts only step-ca's client certificate.
    """

    directory: Path
    template: Path | None = DEFAULT_TEMPLATE
    inventory: Sequence[Mapping[str, Any]] = SAMPLE_DEVICES
    enrich_policy: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    gate_policy: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_GATE_POLICY))
    require_client_cert: bool = True


class Lab:
    """step-ca + connector + fake Apple attestation PKI, ready to enrol simulated devices."""

    def __init__(self, tools: StepTools, options: LabOptions) -> None:
        self.tools = tools
        self.options = options
        self.directory = options.directory
        self.attestation = AttestationCA.generate()
        self.ca = StepCA(tools, self.directory / "ca")
        self.connector_port = free_port()
        self.connector_dir = self.directory / "connector"
        self.config_path = self.connector_dir / "connector.toml"
        self.inventory_path = self.connector_dir / "inventory.json"
        self.webhooks: dict[str, WebhookCredentials] = {}
        self.extra_webhooks: list[dict[str, Any]] = []
        self.connector = ConnectorProcess(
            self.config_path,
            port=self.connector_port,
            ca_file=self.ca.root,
            log_path=self.connector_dir / "connector.log",
        )
        self.timings: dict[str, float] = {}

    @property
    def connector_url(self) -> str:
        """Base URL of the connector as step-ca calls it."""
        return f"https://127.0.0.1:{self.connector_port}"

    def webhook_url(self, name: str) -> str:
        """The URL step-ca calls for our webhook `name`."""
        return f"{self.connector_url}/webhooks/{name}"

    def setup(self) -> None:
        """Initialise and start the CA, add provisioner and webhooks, write the connector files."""
        started = time.perf_counter()
        if self.ca.steppath.exists():
            raise LabError(f"{self.directory} already holds a lab; use a new or empty directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.connector_dir.mkdir(parents=True, exist_ok=True)
        roots = self.directory / "attestation-root.pem"
        roots.write_bytes(self.attestation.root_pem)
        self.ca.init()
        self.ca.start()
        self.ca.add_acme_provisioner(
            PROVISIONER, attestation_roots=roots, template=self.options.template
        )
        self.ca.issue_certificate(
            "localhost",
            self.connector_dir / "tls.crt",
            self.connector_dir / "tls.key",
            sans=("localhost", "127.0.0.1"),
        )
        for name, kind in (("people", "ENRICHING"), ("gate", "AUTHORIZING")):
            self.webhooks[name] = self.ca.add_webhook(
                PROVISIONER, name, url=self.webhook_url(name), kind=kind
            )
        write_inventory(self.inventory_path, self.options.inventory)
        self.write_connector_config()
        self.timings["ca_setup"] = time.perf_counter() - started

    def secret_file(self, name: str) -> Path:
        """Where the secret of webhook `name` is stored for the connector."""
        return self.connector_dir / f"{name}.secret"

    def connector_document(
        self,
        *,
        secrets: Mapping[str, str] | None = None,
        extra_webhooks: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """The connector's config as a mapping (`secrets` overrides the real ones, for tests)."""
        hooks: list[dict[str, Any]] = []
        policies = {"people": self.options.enrich_policy, "gate": self.options.gate_policy}
        for name, creds in self.webhooks.items():
            secret_path = self.secret_file(name)
            secret = (secrets or {}).get(name, creds.secret)
            secret_path.write_text(secret, encoding="utf-8")
            secret_path.chmod(0o600)
            hook: dict[str, Any] = {
                "name": name,
                "kind": "ENRICHING" if name == "people" else "AUTHORIZING",
                "path": f"/webhooks/{name}",
                "id": creds.id,
                "secret": {"file": str(secret_path)},
                "require_client_cert": self.options.require_client_cert,
                "providers": ["inventory"],
                "policy": dict(policies[name]),
            }
            if name == "people":
                hook["enrichment"] = {"personal_data": True}
            hooks.append(hook)
        hooks.extend(dict(h) for h in extra_webhooks)
        server: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.connector_port,
            "tls_cert": str(self.connector_dir / "tls.crt"),
            "tls_key": str(self.connector_dir / "tls.key"),
            "client_ca": str(self.ca.root),
            "client_dns_names": ["localhost"],
            "drain_period": 0,  # one connector and no load balancer: nothing to step out of
        }
        return {
            "server": server,
            "logging": {"level": "info", "format": "json"},
            "cache": {"found_ttl": 0, "not_found_ttl": 0},
            "providers": {
                "inventory": {
                    "kind": "json",
                    "path": str(self.inventory_path),
                    "reload_interval": 1,
                }
            },
            "webhooks": hooks,
        }

    def write_connector_config(
        self,
        *,
        secrets: Mapping[str, str] | None = None,
        extra_webhooks: Sequence[Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write the connector's TOML config; returns its path.

        `secrets` replaces webhook secrets for this write only (tests of a wrong secret);
        `extra_webhooks` adds `[[webhooks]]` entries and is remembered for later writes.
        """
        if extra_webhooks is not None:
            self.extra_webhooks = [dict(h) for h in extra_webhooks]
        document = self.connector_document(secrets=secrets, extra_webhooks=self.extra_webhooks)
        self.config_path.write_text(toml_document(document), encoding="utf-8")
        tomllib.loads(self.config_path.read_text(encoding="utf-8"))  # our writer stays valid TOML
        return self.config_path

    def start_connector(self) -> None:
        """Start (or restart) the connector with the current config."""
        self.connector.stop()
        self.connector.start()

    def acme_client(self, provisioner: str = PROVISIONER, *, url: str | None = None) -> AcmeClient:
        """A fresh ACME account on `provisioner` of this lab's CA."""
        return AcmeClient(url or self.ca.acme_directory(provisioner), ca_file=self.ca.root)

    def enrol(
        self,
        device: SimulatedDevice,
        *,
        use_udid: bool = False,
        attestation: AttestationCA | None = None,
        provisioner: str = PROVISIONER,
        directory_url: str | None = None,
    ) -> Enrolment:
        """Enrol `device` by serial (or UDID); raises `AcmeError` with step-ca's problem."""
        with self.acme_client(provisioner, url=directory_url) as client:
            return enrol(
                client,
                device,
                attestation or self.attestation,
                identifier=device.udid if use_udid else device.serial,
            )

    def close(self) -> None:
        """Stop the connector and the CA."""
        self.connector.stop()
        self.ca.stop()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
