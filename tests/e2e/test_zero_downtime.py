"""Zero downtime: three replicas behind the shipped nginx and HAProxy configs, a real step-ca.

Each balancer gets its own ACME provisioner on the session's step-ca, whose two webhooks
(`people`, `gate`) point at the balancer; step-ca's client certificate is checked there and
the replicas serve plain HTTP. Retries are counted from the balancer's access log, one line per
call step-ca makes: step-ca's own retry repeats the request id (step-ca logs no attempt itself),
a balancer's retry shows as a second replica tried within one line.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from posture_lab import Lab, write_inventory
from posture_lab.devicesim import SimulatedDevice
from tests.e2e.balancers import (
    REPLICAS,
    Attempt,
    Balancer,
    Haproxy,
    Nginx,
    Outcome,
    Replica,
    call_through,
    client_context,
    enrol_many,
    free_port,
    percentile,
    replica_document,
)
from tests.e2e.conftest import skip_or_fail

pytestmark = pytest.mark.e2e

DEVICES = 40
DRAIN_PERIOD = 5.0  # the default of server.drain_period
SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Rig:
    """A balancer, its replicas and the provisioner whose webhooks point at it."""

    lab: Lab
    balancer: Balancer
    replicas: list[Replica]
    provisioner: str
    serials: list[str]
    client: ssl.SSLContext


def _binary(kind: str) -> None:
    if shutil.which(kind) is None and not Path(f"/usr/sbin/{kind}").exists():
        skip_or_fail(f"{kind} is not installed (scripts/test installs it as root with apt-get)")


def _client_cn(lab: Lab) -> str:
    """The subject step-ca's client certificate carries (ca.json `commonName`)."""
    config = json.loads(lab.ca.config.read_text(encoding="utf-8"))
    return str(config.get("commonName") or "Step Online CA")


@pytest.fixture(scope="module", params=["nginx", "haproxy"])
def rig(
    request: pytest.FixtureRequest, lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """Provisioner `lb-<kind>` on the session's step-ca, three replicas, the balancer."""
    kind: str = request.param
    _binary(kind)
    directory = tmp_path_factory.mktemp(kind)
    port = free_port()
    provisioner = f"lb-{kind}"
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
    serials = [SimulatedDevice.generate().serial for _ in range(DEVICES)]
    inventory = directory / "inventory.json"
    write_inventory(
        inventory,
        [
            {"serial": s, "managed": True, "platform": "macOS", "user": {"username": f"u{i}"}}
            for i, s in enumerate(serials)
        ],
    )
    replicas = [
        Replica(
            f"c{i}",
            directory / f"c{i}",
            replica_document(free_port(), inventory, hooks),
            ca_file=lab.ca.root,
        )
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
        yield Rig(lab, balancer, replicas, provisioner, serials, context)
    finally:
        balancer.stop()
        for replica in replicas:  # SIGTERM starts the drain period, SIGINT ends it
            if replica.running:
                replica.send(signal.SIGCONT)
                replica.send(signal.SIGTERM)
                replica.send(signal.SIGINT)
        for replica in replicas:
            replica.stop()


def _retried_by_step_ca(attempts: list[Attempt]) -> int:
    """Calls step-ca had to make twice: its retry carries the same request id to the same
    webhook (the ENRICHING and AUTHORIZING calls of one enrolment share the id)."""
    calls = Counter((a.request_id, a.path) for a in attempts)
    return sum(n - 1 for n in calls.values() if n > 1)


def _report(name: str, rig: Rig, outcomes: list[Outcome], attempts: list[Attempt]) -> str:
    """One line of figures, printed with the test's output (README, Operations)."""
    seconds = [o.seconds for o in outcomes]
    return (
        f"{rig.balancer.kind} {name}: {len(outcomes)} enrolments, "
        f"{sum(o.error is not None for o in outcomes)} failed, "
        f"{len(attempts)} webhook calls, {_retried_by_step_ca(attempts)} retried by step-ca, "
        f"{sum(a.tries > 1 for a in attempts)} retried by {rig.balancer.kind}; enrolment "
        f"p50 {percentile(seconds, 0.5):.2f} s, p99 {percentile(seconds, 0.99):.2f} s"
    )


def _show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_a_rolling_restart_costs_no_enrolment_a_retry(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restarting every replica in turn (SIGTERM, wait for exit, start, wait for /readyz) while
    devices keep enrolling: every enrolment succeeds and step-ca never retries a call."""
    rig.balancer.wait_all_up(rig.replicas)
    before = len(rig.balancer.attempts())
    drained_before = sum(r.decided_while_draining() for r in rig.replicas)
    keep_going = threading.Event()
    keep_going.set()
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(
            enrol_many,
            rig.lab,
            rig.provisioner,
            rig.serials,
            workers=4,
            at_least=DEVICES,
            keep_going=keep_going,
            pause=0.3,
        )
        try:
            time.sleep(1.0)  # enrolments under way
            for replica in rig.replicas:
                replica.send(signal.SIGTERM)
                assert replica.wait(timeout=DRAIN_PERIOD + SHUTDOWN_TIMEOUT + 5) == 0
                replica.start()
        finally:
            keep_going.clear()
        outcomes = load.result(timeout=60)
    attempts = rig.balancer.attempts()[before:]
    drained = sum(r.decided_while_draining() for r in rig.replicas) - drained_before
    _show(capsys, f"{_report('rolling restart', rig, outcomes, attempts)}; {drained} calls "
          "answered by draining replicas")  # fmt: skip
    assert len(outcomes) >= DEVICES
    assert [o.error for o in outcomes if o.error] == []
    assert _retried_by_step_ca(attempts) == 0
    assert {a.status for a in attempts} == {200}


def test_a_frozen_replica_fails_no_enrolment(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """A replica frozen (SIGSTOP) as a burst of enrolments starts: the balancer's timeout sends
    its calls to another replica within step-ca's deadline; no enrolment fails or needs
    step-ca's retry. Thawed, the replica decides the calls it held: the audit log has those
    request ids twice."""
    rig.balancer.wait_all_up(rig.replicas)
    frozen, others = rig.replicas[0], rig.replicas[1:]
    before = len(rig.balancer.attempts())
    decided_before = len(frozen.decided())
    frozen.send(signal.SIGSTOP)
    try:
        outcomes = enrol_many(
            rig.lab, rig.provisioner, rig.serials, workers=DEVICES, at_least=DEVICES
        )
    finally:
        frozen.send(signal.SIGCONT)
    attempts = rig.balancer.attempts()[before:]
    _show(capsys, _report("frozen replica", rig, outcomes, attempts))
    assert len(outcomes) == DEVICES
    assert [o.error for o in outcomes if o.error] == []
    assert _retried_by_step_ca(attempts) == 0
    assert any(a.tries > 1 for a in attempts)  # calls did meet the frozen replica
    rig.balancer.wait_all_up(rig.replicas)
    late = set(frozen.decided()[decided_before:])
    assert late  # what it held, decided once it ran again ...
    assert late <= {call for replica in others for call in replica.decided()}  # ... and retried


def test_only_step_cas_certificate_gets_through(rig: Rig, tmp_path: Path) -> None:
    """The balancer admits only step-ca's client certificate: another certificate of the same
    CA (a device's, say) gets 403 and reaches no replica."""
    cert, key = tmp_path / "intruder.crt", tmp_path / "intruder.key"
    rig.lab.ca.issue_certificate("intruder", cert, key)
    before = [len(r.decided()) for r in rig.replicas]
    intruder = client_context(rig.lab.ca.root, cert, key)
    assert call_through(rig.balancer, intruder, "/readyz") == 403
    assert call_through(rig.balancer, rig.client, "/readyz") == 200
    assert [len(r.decided()) for r in rig.replicas] == before
