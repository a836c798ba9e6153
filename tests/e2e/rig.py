"""A balancer and its replicas wired to a provisioner of the session's step-ca.

The provisioner's two webhooks (`people`, `gate`) point at the balancer; step-ca's client
certificate is checked there and the replicas serve plain HTTP. `test_zero_downtime.py` runs
replicas over a JSON inventory, `test_replicas.py` replicas sharing a PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posture_lab import Lab, WebhookCredentials
from tests.e2e.balancers import (
    REPLICAS,
    Balancer,
    Haproxy,
    Nginx,
    Replica,
    call_through,
    client_context,
    free_port,
)
from tests.e2e.conftest import skip_or_fail

Document = Callable[[int, Mapping[str, WebhookCredentials]], dict[str, Any]]
"""A replica's config for its port and the webhooks' credentials."""


@dataclass(frozen=True)
class Rig:
    """A balancer, its replicas and the provisioner whose webhooks point at it."""

    lab: Lab
    balancer: Balancer
    replicas: list[Replica]
    provisioner: str
    serials: list[str]
    client: ssl.SSLContext
    hooks: Mapping[str, WebhookCredentials]


def require_binary(kind: str) -> None:
    """Skip (fail in CI) without the balancer's binary."""
    if shutil.which(kind) is None and not Path(f"/usr/sbin/{kind}").exists():
        skip_or_fail(f"{kind} is not installed (scripts/test installs it as root with apt-get)")


def _client_cn(lab: Lab) -> str:
    """The subject step-ca's client certificate carries (ca.json `commonName`)."""
    config = json.loads(lab.ca.config.read_text(encoding="utf-8"))
    return str(config.get("commonName") or "Step Online CA")


@contextlib.contextmanager
def balanced_replicas(
    lab: Lab,
    directory: Path,
    kind: str,
    *,
    provisioner: str,
    serials: list[str],
    document: Document,
) -> Iterator[Rig]:
    """Provisioner `provisioner` on the session's step-ca, three replicas, the balancer."""
    require_binary(kind)
    port = free_port()
    lab.ca.add_acme_provisioner(
        provisioner,
        attestation_roots=lab.directory / "attestation-root.pem",
        template=lab.options.template,
    )
    hooks = {
        name: lab.ca.add_webhook(
            provisioner, name, url=f"https://127.0.0.1:{port}/webhooks/{name}", kind=hook_kind
        )
        for name, hook_kind in (("people", "ENRICHING"), ("gate", "AUTHORIZING"))
    }
    replicas = [
        Replica(f"c{i}", directory / f"c{i}", document(free_port(), hooks), ca_file=lab.ca.root)
        for i in range(1, REPLICAS + 1)
    ]
    tls, client = directory / "tls", directory / "client"
    lab.ca.issue_certificate(
        "localhost", tls.with_suffix(".crt"), tls.with_suffix(".key"), sans=("127.0.0.1",)
    )
    cn = _client_cn(lab)
    lab.ca.issue_certificate(cn, client.with_suffix(".crt"), client.with_suffix(".key"))
    pem = directory / "tls.pem"
    pem.write_bytes(tls.with_suffix(".crt").read_bytes() + tls.with_suffix(".key").read_bytes())
    run = directory / "run"
    run.mkdir()
    values = {
        "LISTEN": f"127.0.0.1:{port}",
        "RUN_DIR": str(run),
        "TLS_CERT": str(tls.with_suffix(".crt")),
        "TLS_KEY": str(tls.with_suffix(".key")),
        "TLS_PEM": str(pem),
        "STEP_CA_ROOT": str(lab.ca.root),
        "STEP_CA_CLIENT_CN": cn,
        **{f"REPLICA_{i}": r.address for i, r in enumerate(replicas, 1)},
    }
    balancer: Balancer = (Nginx if kind == "nginx" else Haproxy)(directory, values, port=port)
    context = client_context(lab.ca.root, client.with_suffix(".crt"), client.with_suffix(".key"))
    try:
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.start(), replicas))
        balancer.start()
        deadline = time.monotonic() + 15
        while call_through(balancer, context, "/readyz") != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield Rig(lab, balancer, replicas, provisioner, serials, context, hooks)
    finally:
        balancer.stop()
        for replica in replicas:  # SIGTERM starts the drain period, SIGINT ends it
            if replica.running:
                replica.send(signal.SIGCONT)
                replica.send(signal.SIGTERM)
                replica.send(signal.SIGINT)
        for replica in replicas:
            replica.stop()
