"""step-ca processes: one with remote management (step CLI), one from a static ca.json."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posture_lab._tools import LabError, LoggedProcess, StepTools, free_port

PASSWORD = "posture-lab-password"  # noqa: S105 - a throwaway lab CA, never production
ADMIN_SUBJECT = "step"
ADMIN_PROVISIONER = "admin"


@dataclass(frozen=True, slots=True)
class WebhookCredentials:
    """What `step ca provisioner webhook add` printed.

    Attributes:
        name: the webhook's name (the key under `.Webhooks` in templates).
        id: its UUID, sent as `X-Smallstep-Webhook-ID`.
        secret: base64 HMAC key.
    """

    name: str
    id: str
    secret: str = field(repr=False)


_WEBHOOK_ID = re.compile(r"^Webhook ID:\s*(\S+)\s*$", re.MULTILINE)
_WEBHOOK_SECRET = re.compile(r"^Secret:\s*(\S+)\s*$", re.MULTILINE)


class StepCA(LoggedProcess):
    """One step-ca with remote management, its STEPPATH under `directory`."""

    def __init__(self, tools: StepTools, directory: Path, *, port: int | None = None) -> None:
        super().__init__(directory / "step-ca.log")
        self.tools = tools
        self.directory = directory
        self.steppath = directory / "step"
        self.port = port or free_port()
        self.password_file = directory / "password.txt"

    @property
    def url(self) -> str:
        """Base URL of the CA (HTTPS only)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        """The CA's root certificate (trust anchor for ACME clients and for mTLS peers)."""
        return self.steppath / "certs" / "root_ca.crt"

    @property
    def config(self) -> Path:
        """The CA's ca.json."""
        return self.steppath / "config" / "ca.json"

    def acme_directory(self, provisioner: str) -> str:
        """The ACME directory URL of `provisioner`."""
        return f"{self.url}/acme/{provisioner}/directory"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "STEPPATH": str(self.steppath), "HOME": str(self.directory)}

    def step(self, *args: str) -> str:
        """Run the step CLI against this CA; returns stdout, raises `LabError` on failure."""
        result = subprocess.run(  # noqa: S603 - our own pinned binary, arguments we build
            [str(self.tools.step), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            shown = " ".join(a for a in args[:4])
            raise LabError(f"step {shown} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _admin(self) -> list[str]:
        return [
            "--admin-subject",
            ADMIN_SUBJECT,
            "--admin-provisioner",
            ADMIN_PROVISIONER,
            "--admin-password-file",
            str(self.password_file),
            "--ca-url",
            self.url,
            "--root",
            str(self.root),
        ]

    def init(self, name: str = "posture-lab") -> None:
        """``step ca init`` a standalone CA with remote management (webhooks need it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(PASSWORD, encoding="utf-8")
        self.password_file.chmod(0o600)
        self.step(
            "ca",
            "init",
            "--deployment-type=standalone",
            f"--name={name}",
            "--dns=localhost",
            "--dns=127.0.0.1",
            f"--address=127.0.0.1:{self.port}",
            f"--provisioner={ADMIN_PROVISIONER}",
            f"--password-file={self.password_file}",
            f"--provisioner-password-file={self.password_file}",
            "--remote-management",
        )

    def start(self, *, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        """Start `step-ca` and wait for /health."""
        self.launch(
            [str(self.tools.step_ca), str(self.config), "--password-file", str(self.password_file)],
            env={**self._env(), **(env or {})},
            health_url=f"{self.url}/health",
            ca_file=self.root,
            timeout=timeout,
        )

    def add_acme_provisioner(
        self, name: str, *, attestation_roots: Path, template: Path | None = None
    ) -> None:
        """An ACME provisioner offering only device-attest-01 with Apple attestations."""
        args = [
            "ca",
            "provisioner",
            "add",
            name,
            "--type=ACME",
            "--challenge=device-attest-01",
            "--attestation-format=apple",
            f"--attestation-roots={attestation_roots}",
        ]
        if template is not None:
            args.append(f"--x509-template={template}")
        self.step(*args, *self._admin())

    def add_scep_provisioner(
        self,
        name: str,
        *,
        decrypter_cert: Path,
        decrypter_key: Path,
        challenge: str,
        template: Path | None = None,
    ) -> None:
        """A SCEP provisioner with an RSA decrypter (step-ca's EC intermediate cannot decrypt).

        `challenge` is a static challenge nobody is told: it closes the window before the
        SCEPCHALLENGE webhooks are added, which then take precedence over it. Only the
        decrypter certificate is offered to clients (``--exclude-intermediate``), so they
        encrypt to the RSA key; AES-256-CBC content encryption.
        """
        args = [
            "ca",
            "provisioner",
            "add",
            name,
            "--type=SCEP",
            f"--challenge={challenge}",
            f"--scep-decrypter-certificate-file={decrypter_cert}",
            f"--scep-decrypter-key-file={decrypter_key}",
            "--exclude-intermediate",
            "--encryption-algorithm-identifier=2",
        ]
        if template is not None:
            args.append(f"--x509-template={template}")
        self.step(*args, *self._admin())

    def add_webhook(
        self, provisioner: str, name: str, *, url: str, kind: str
    ) -> WebhookCredentials:
        """``step ca provisioner webhook add``; parses the printed ID and secret."""
        out = self.step(
            "ca",
            "provisioner",
            "webhook",
            "add",
            provisioner,
            name,
            f"--url={url}",
            f"--kind={kind}",
            "--cert-type=X509",
            *self._admin(),
        )
        found_id, found_secret = _WEBHOOK_ID.search(out), _WEBHOOK_SECRET.search(out)
        if not found_id or not found_secret:
            raise LabError(f"could not read the webhook ID and secret from: {out!r}")
        return WebhookCredentials(name=name, id=found_id.group(1), secret=found_secret.group(1))

    def issue_certificate(
        self,
        subject: str,
        cert: Path,
        key: Path,
        *,
        sans: Sequence[str] = (),
        key_type: str = "EC",
    ) -> None:
        """A certificate from the CA's admin (JWK) provisioner, e.g. the connector's TLS one
        (``key_type = "RSA"``: 2048 bits, e.g. a SCEP decrypter)."""
        self.step(
            "ca",
            "certificate",
            subject,
            str(cert),
            str(key),
            f"--provisioner={ADMIN_PROVISIONER}",
            f"--provisioner-password-file={self.password_file}",
            *(f"--san={s}" for s in sans),
            "--not-after=24h",
            f"--kty={key_type}",
            *(["--size=2048"] if key_type == "RSA" else []),
            "--force",
            f"--ca-url={self.url}",
            f"--root={self.root}",
        )
        key.chmod(0o600)


def static_ca_json(
    base: StepCA,
    directory: Path,
    *,
    port: int,
    provisioners: Sequence[Mapping[str, Any]],
) -> Path:
    """A ca.json without remote management (Recipe B) reusing `base`'s root and intermediate.

    Webhooks declared here have no secret: step-ca signs them with an empty HMAC key. Sharing
    the PKI keeps step-ca's TLS client certificate under the same root the connector trusts.
    """
    config: dict[str, Any] = json.loads(base.config.read_text(encoding="utf-8"))
    directory.mkdir(parents=True, exist_ok=True)
    config["address"] = f"127.0.0.1:{port}"
    config["db"] = {"type": "badgerv2", "dataSource": str(directory / "db")}
    config["authority"] = {"provisioners": [dict(p) for p in provisioners]}
    path = directory / "ca.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def static_acme_provisioner(
    name: str,
    *,
    attestation_root_pem: bytes,
    template: Path | None,
    webhooks: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """An ACME device-attest-01 provisioner object for ca.json (attestationRoots is base64 PEM)."""
    options: dict[str, Any] = {"webhooks": [dict(w) for w in webhooks]}
    if template is not None:
        options["x509"] = {"templateFile": str(template)}
    return {
        "type": "ACME",
        "name": name,
        "challenges": ["device-attest-01"],
        "attestationFormats": ["apple"],
        "attestationRoots": base64.b64encode(attestation_root_pem).decode("ascii"),
        "options": options,
    }


class StaticStepCA(LoggedProcess):
    """A second step-ca started from a hand-written ca.json (see `static_ca_json`)."""

    def __init__(self, tools: StepTools, config: Path, *, port: int, base: StepCA) -> None:
        super().__init__(config.parent / "step-ca.log")
        self.tools = tools
        self.config = config
        self.port = port
        self.base = base

    @property
    def url(self) -> str:
        """Base URL."""
        return f"https://127.0.0.1:{self.port}"

    def acme_directory(self, provisioner: str) -> str:
        """The ACME directory URL of `provisioner`."""
        return f"{self.url}/acme/{provisioner}/directory"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start it; ``SSL_CERT_FILE`` makes webhooks with `disableTLSClientAuth` trust our root."""
        env = {
            **os.environ,
            "STEPPATH": str(self.base.steppath),
            "HOME": str(self.config.parent),
            "SSL_CERT_FILE": str(self.base.root),
        }
        self.launch(
            [
                str(self.tools.step_ca),
                str(self.config),
                "--password-file",
                str(self.base.password_file),
            ],
            env=env,
            health_url=f"{self.url}/health",
            ca_file=self.base.root,
            timeout=timeout,
        )
