"""A real SCEP client enrols through the real step-ca, whose SCEP webhooks ask the connector.

Set up once for the module, on the session's step-ca:

- an RSA decrypter certificate from the CA (step-ca's EC intermediate cannot decrypt SCEP);
- SCEP provisioner ``wifi`` with webhooks ``scepdevice`` (SCEPCHALLENGE, one-time device-bound
  challenges) and ``scepnotify`` (NOTIFYING); provisioner ``wifi-intune`` with ``intunedevice``
  (SCEPCHALLENGE, Intune validation) and ``intunenotify`` (NOTIFYING, reported to Intune); both
  created with a static challenge nobody is told, which the webhooks override; step-ca is
  restarted once, since it serves SCEP only if a SCEP provisioner existed at start;
- a second connector process with those four webhooks, a JSON inventory, and an Intune provider
  pointed at the fake Entra/Graph, whose discovery lists the fake validation service;
- micromdm's ``scepclient`` (scripts/install-scepclient.sh) as the device; the fake MDM fetches
  challenges from the connector's challenge URL.

Every assertion is on what step-ca issued (parsed with cryptography, as in the ACME suite) or
the SCEP failure the client got, plus the connector's log and the fakes' call logs.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from posture_lab import Lab, free_port, summarize, toml_document
from posture_lab._connector import ConnectorProcess
from posture_lab._tools import CHECKOUT_TOOLS
from tests.e2e.conftest import skip_or_fail
from tests.e2e.threaded import serve_in_thread
from tests.fakes.graph import FakeGraph
from tests.fakes.graph import create_app as graph_app
from tests.fakes.intune_scep import FakeIntuneScep, install_discovery
from tests.fakes.intune_scep import create_app as intune_app
from tests.fakes.mdm import FakeMdm

pytestmark = pytest.mark.e2e

DEVICES = Path(__file__).parents[1] / "fakes" / "graph_devices.json"
TENANT = "8a7f3c2e-1b4d-4e6f-9a0b-2c3d4e5f6a7b"
CLIENT_ID = "5d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"
MANAGED = "C02SCEPMNGD1"
OTHER_MANAGED = "C02SCEPMNGD2"
LOANER = "C02SCEPLOAN1"
INTUNE_COMPLIANT = "F17ZK8XJN72Q"
INTUNE_NONCOMPLIANT = "C02FK3Q7MD6T"
MDM_USER = "fleet"
MDM_PASSWORD = "scep-lab-mdm-password-0123"
STATIC_CHALLENGE = "static-challenge-nobody-is-told"
INVENTORY = [
    {"serial": MANAGED, "managed": True, "platform": "macOS", "groups": ["Engineering", "Wi-Fi"]},
    {"serial": OTHER_MANAGED, "managed": True, "platform": "macOS", "groups": ["Finance"]},
    {"serial": LOANER, "managed": False, "platform": "macOS", "groups": ["Loaners"]},
]
TEMPLATE = """{
  {{- if not .Webhooks.%(hook)s }}{{ fail "posture-connector sent no data" }}{{ end }}
  "subject": {
    "commonName": {{ toJson .Subject.CommonName }},
    "serialNumber": {{ toJson .Webhooks.%(hook)s.device.serial }},
    "organizationalUnit": {{ if hasKey .Webhooks.%(hook)s "groups" }}{{ toJson .Webhooks.%(hook)s.groups }}{{ else }}[]{{ end }}
  },
  "sans": {{ toJson .SANs }},
  "keyUsage": ["digitalSignature", "keyEncipherment"],
  "extKeyUsage": ["clientAuth"]
}
"""


def find_scepclient() -> Path:
    """``$SCEP_TOOLS_DIR/scepclient``, else ``.tools/bin/scepclient``, else PATH; or skip."""
    explicit = os.environ.get("SCEP_TOOLS_DIR")
    candidate = Path(explicit) / "scepclient" if explicit else CHECKOUT_TOOLS / "scepclient"
    if os.access(candidate, os.X_OK):
        return candidate
    on_path = shutil.which("scepclient")
    if on_path:
        return Path(on_path)
    if shutil.which("go") is None:
        return skip_or_fail("Go is not installed, so scepclient cannot be built")
    return skip_or_fail(f"scepclient not found ({candidate}); run scripts/install-scepclient.sh")


@dataclass(frozen=True, slots=True)
class ScepResult:
    """What the SCEP client got.

    Attributes:
        returncode: scepclient's exit status.
        output: Its log (stdout and stderr).
        certificate: The issued certificate, when it got one.
        key: The client's private key file.
    """

    returncode: int
    output: str
    certificate: x509.Certificate | None
    key: Path


@dataclass
class ScepLab:
    """The module's SCEP set-up (see the module docstring)."""

    lab: Lab
    scepclient: Path
    connector: ConnectorProcess
    mdm: FakeMdm
    intune: FakeIntuneScep
    directory: Path

    def enrol(self, provisioner: str, *, cn: str, challenge: str) -> ScepResult:
        """Run scepclient once, in a fresh folder (a new key, so always a PKCSReq)."""
        folder = self.directory / "clients" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        key, cert = folder / "client.key", folder / "client.crt"
        result = subprocess.run(
            [
                str(self.scepclient),
                "-server-url",
                f"{self.lab.ca.url}/scep/{provisioner}",
                "-private-key",
                str(key),
                "-certificate",
                str(cert),
                "-cn",
                cn,
                "-challenge",
                challenge,
            ],
            cwd=folder,
            env={**os.environ, "SSL_CERT_FILE": str(self.lab.ca.root)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        issued = x509.load_pem_x509_certificate(cert.read_bytes()) if cert.exists() else None
        return ScepResult(result.returncode, result.stdout + result.stderr, issued, key)

    def events(self, since: int, name: str) -> list[dict[str, Any]]:
        """The connector's log events called `name` after byte offset `since`."""
        return [e for e in self.connector.events(since) if e.get("event") == name]


def wait_for(condition: Callable[[], object], seconds: float = 15.0) -> None:
    """Poll until `condition()` is truthy (a background notification, a log line)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never became true")
        time.sleep(0.05)


def _hook(name: str, kind: str, creds: Any, secrets_dir: Path, **extra: Any) -> dict[str, Any]:
    secret = secrets_dir / f"{name}.secret"
    secret.write_text(creds.secret, encoding="utf-8")
    secret.chmod(0o600)
    return {
        "name": name,
        "kind": kind,
        "path": f"/webhooks/{name}",
        "id": creds.id,
        "secret": {"file": str(secret)},
        "require_client_cert": True,
        **extra,
    }


@pytest.fixture(scope="module")
def scep(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScepLab]:
    """step-ca's SCEP provisioners and webhooks, the fakes and a connector for them."""
    scepclient = find_scepclient()
    directory = tmp_path_factory.mktemp("scep")
    ca = lab.ca
    graph = FakeGraph.from_file(DEVICES)
    intune = FakeIntuneScep(graph)
    tenant = graph_app(graph)
    install_discovery(tenant, intune)
    with serve_in_thread(tenant) as graph_url, serve_in_thread(intune_app(intune)) as scep_url:
        intune.origin = scep_url
        ca.issue_certificate(
            "scep-decrypter", directory / "dec.crt", directory / "dec.key", key_type="RSA"
        )
        port = free_port()
        base = f"https://127.0.0.1:{port}"
        hooks: list[dict[str, Any]] = []
        for provisioner, challenge_hook, notify_hook in (
            ("wifi", "scepdevice", "scepnotify"),
            ("wifi-intune", "intunedevice", "intunenotify"),
        ):
            template = directory / f"{provisioner}.tpl"
            template.write_text(TEMPLATE % {"hook": challenge_hook}, encoding="utf-8")
            ca.add_scep_provisioner(
                provisioner,
                decrypter_cert=directory / "dec.crt",
                decrypter_key=directory / "dec.key",
                challenge=STATIC_CHALLENGE,
                template=template,
            )
            for name, kind in ((challenge_hook, "SCEPCHALLENGE"), (notify_hook, "NOTIFYING")):
                creds = ca.add_webhook(provisioner, name, url=f"{base}/webhooks/{name}", kind=kind)
                hooks.append({"creds": creds, "name": name, "kind": kind})
        ca.stop()
        ca.start()  # step-ca mounts /scep only when a SCEP provisioner exists at start
        intune_validator = {"kind": "intune", "provider": "intune"}
        extra: dict[str, dict[str, Any]] = {
            "scepdevice": {
                "providers": ["inventory"],
                "policy": {"managed": True},
                "validator": {
                    "kind": "challenge",
                    "path": "/scep/challenge",
                    "username": MDM_USER,
                    "password": MDM_PASSWORD,
                    "ttl": 900,
                },
            },
            "scepnotify": {},
            "intunedevice": {
                "providers": ["intune"],
                "policy": {"compliance": ["compliant"]},
                "validator": intune_validator,
            },
            "intunenotify": {"validator": intune_validator},
        }
        ca.issue_certificate(
            "localhost",
            directory / "tls.crt",
            directory / "tls.key",
            sans=("localhost", "127.0.0.1"),
        )
        (directory / "inventory.json").write_text(
            json.dumps({"devices": INVENTORY}), encoding="utf-8"
        )
        document = {
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "tls_cert": str(directory / "tls.crt"),
                "tls_key": str(directory / "tls.key"),
                "client_ca": str(ca.root),
                "client_dns_names": ["localhost"],
            },
            "logging": {"level": "info", "format": "json"},
            "cache": {"found_ttl": 0, "not_found_ttl": 0},
            "providers": {
                "inventory": {"kind": "json", "path": str(directory / "inventory.json")},
                "intune": {
                    "kind": "intune",
                    "tenant_id": TENANT,
                    "client_id": CLIENT_ID,
                    "client_secret": "fake-graph-client-secret",
                    "authority_host": graph_url,
                    "graph_host": graph_url,
                },
            },
            "webhooks": [
                _hook(h["name"], h["kind"], h["creds"], directory, **extra[h["name"]])
                for h in hooks
            ],
        }
        config = directory / "connector.toml"
        config.write_text(toml_document(document), encoding="utf-8")
        connector = ConnectorProcess(
            config, port=port, ca_file=ca.root, log_path=directory / "connector.log"
        )
        connector.start()
        try:
            # /readyz waits for the providers only; the challenge store is migrated beside them.
            wait_for(lambda: any(e.get("event") == "store.ready" for e in connector.events()))
            yield ScepLab(
                lab=lab,
                scepclient=scepclient,
                connector=connector,
                mdm=FakeMdm(
                    f"{base}/scep/challenge",
                    MDM_USER,
                    MDM_PASSWORD,
                    verify=ssl.create_default_context(cafile=str(ca.root)),
                ),
                intune=intune,
                directory=directory,
            )
        finally:
            connector.stop()


def intermediate(lab: Lab) -> x509.Certificate:
    """The lab CA's intermediate, which signs every leaf."""
    path = lab.ca.steppath / "certs" / "intermediate_ca.crt"
    return x509.load_pem_x509_certificate(path.read_bytes())


def decision_codes(scep: ScepLab, since: int, webhook: str) -> list[tuple[bool, str | None]]:
    """(allow, code) of each of the connector's decisions for `webhook` after `since`, once
    there is one: the line is written just after the answer, which may reach the SCEP client
    (and end this test's wait) first."""

    def codes() -> list[tuple[bool, str | None]]:
        return [
            (bool(e["allow"]), e.get("code"))
            for e in scep.events(since, "webhook.decision")
            if e.get("webhook") == webhook
        ]

    wait_for(codes, seconds=5)
    return codes()


def assert_refused(result: ScepResult) -> None:
    """The SCEP client got a failure and no certificate."""
    assert result.returncode != 0
    assert result.certificate is None
    assert "failInfo" in result.output


def test_device_enrols_with_the_challenge_its_mdm_fetched(scep: ScepLab) -> None:
    """A device's one-time challenge gets it a certificate carrying its inventory data."""
    since = scep.connector.log_offset()
    challenge = scep.mdm.fetch(serial=MANAGED)

    result = scep.enrol("wifi", cn=MANAGED, challenge=challenge)

    assert result.returncode == 0, result.output
    leaf = result.certificate
    assert leaf is not None
    summary = summarize(leaf)
    assert summary.common_name == MANAGED
    assert summary.serial_number == MANAGED
    assert set(summary.organizational_units) == {"Engineering", "Wi-Fi"}
    assert leaf.issuer == intermediate(scep.lab).subject
    key = serialization.load_pem_private_key(result.key.read_bytes(), password=None)
    assert leaf.public_key() == key.public_key()
    assert decision_codes(scep, since, "scepdevice") == [(True, None)]
    wait_for(lambda: scep.events(since, "scep.notified"))
    [notified] = scep.events(since, "scep.notified")
    assert notified["issued"] is True
    assert notified["serial"] == f"{leaf.serial_number:X}"


def test_replayed_challenge_gets_no_second_certificate(scep: ScepLab) -> None:
    """A challenge that enrolled once is refused the second time, even with a new key."""
    challenge = scep.mdm.fetch(serial=MANAGED)
    first = scep.enrol("wifi", cn=MANAGED, challenge=challenge)
    since = scep.connector.log_offset()

    again = scep.enrol("wifi", cn=MANAGED, challenge=challenge)

    assert first.returncode == 0, first.output
    assert_refused(again)
    assert decision_codes(scep, since, "scepdevice") == [(False, "challenge-invalid")]


def test_challenge_of_another_device_gets_no_certificate(scep: ScepLab) -> None:
    """A managed device presenting a challenge fetched for another device is refused."""
    challenge = scep.mdm.fetch(serial=MANAGED)
    since = scep.connector.log_offset()

    result = scep.enrol("wifi", cn=OTHER_MANAGED, challenge=challenge)

    assert_refused(result)
    assert decision_codes(scep, since, "scepdevice") == [(False, "challenge-device-mismatch")]


def test_unmanaged_device_is_refused_by_the_policy(scep: ScepLab) -> None:
    """A loaner with a valid challenge of its own is refused: the posture policy decides too."""
    since = scep.connector.log_offset()

    result = scep.enrol("wifi", cn=LOANER, challenge=scep.mdm.fetch(serial=LOANER))

    assert_refused(result)
    assert decision_codes(scep, since, "scepdevice") == [(False, "device-unmanaged")]


@pytest.mark.parametrize("challenge", ["static", "probe"])
def test_static_and_probe_challenges_never_enrol(scep: ScepLab, challenge: str) -> None:
    """The provisioner's static challenge and a configuration probe's challenge both fail."""
    value = STATIC_CHALLENGE if challenge == "static" else scep.mdm.fetch()
    since = scep.connector.log_offset()

    result = scep.enrol("wifi", cn=MANAGED, challenge=value)

    assert_refused(result)
    assert decision_codes(scep, since, "scepdevice") == [(False, "challenge-invalid")]


def test_intune_validated_device_enrols_and_intune_learns_the_certificate(
    scep: ScepLab,
) -> None:
    """An Intune challenge passes Intune's validation, the device's compliance, and Intune
    receives the issued certificate's thumbprint, serial and expiry."""
    since, before = scep.connector.log_offset(), len(scep.intune.calls)
    challenge = scep.intune.issue_challenge(INTUNE_COMPLIANT)

    result = scep.enrol("wifi-intune", cn=INTUNE_COMPLIANT, challenge=challenge)

    assert result.returncode == 0, result.output
    leaf = result.certificate
    assert leaf is not None
    assert summarize(leaf).common_name == INTUNE_COMPLIANT
    assert summarize(leaf).serial_number == INTUNE_COMPLIANT
    assert decision_codes(scep, since, "intunedevice") == [(True, None)]
    wait_for(lambda: len(scep.intune.calls) >= before + 2)
    validation, notice = scep.intune.calls[before:]
    assert (validation.action, validation.code) == ("validateRequest", "Success")
    assert (notice.action, notice.code) == ("successNotification", "Success")
    assert notice.body["transactionId"] == validation.body["transactionId"]
    assert notice.body["certificateSerialNumber"] == f"{leaf.serial_number:X}"
    thumbprint = leaf.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Windows' thumbprint
    assert notice.body["certificateThumbprint"] == thumbprint
    expires = leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert notice.body["certificateExpirationDateUtc"] == expires
    issuer = intermediate(scep.lab).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert notice.body["issuingCertificateAuthority"] == issuer[0].value


@pytest.mark.parametrize(
    ("subject", "cn", "code"),
    [
        (INTUNE_COMPLIANT, INTUNE_NONCOMPLIANT, "intune-refused"),
        (INTUNE_NONCOMPLIANT, INTUNE_NONCOMPLIANT, "compliance-not-allowed"),
    ],
    ids=["subject-mismatch", "noncompliant"],
)
def test_intune_or_compliance_refusal_gets_no_certificate(
    scep: ScepLab, subject: str, cn: str, code: str
) -> None:
    """Intune refusing the CSR, or Intune's compliance state, stops the enrolment."""
    since = scep.connector.log_offset()

    result = scep.enrol("wifi-intune", cn=cn, challenge=scep.intune.issue_challenge(subject))

    assert_refused(result)
    assert decision_codes(scep, since, "intunedevice") == [(False, code)]
