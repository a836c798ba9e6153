"""Zero downtime: three replicas behind the shipped nginx and HAProxy configs, a real step-ca.

Each balancer gets its own ACME provisioner on the session's step-ca, whose two webhooks
(`people`, `gate`) point at the balancer; step-ca's client certificate is checked there and
the replicas serve plain HTTP. Retries are counted from the balancer's access log, one line per
call step-ca makes: step-ca's own retry repeats the request id (step-ca logs no attempt itself),
a balancer's retry shows as a second replica tried within one line.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from posture_lab import Lab, write_inventory
from posture_lab.devicesim import SimulatedDevice
from tests.e2e.balancers import (
    Attempt,
    Outcome,
    call_through,
    client_context,
    enrol_many,
    percentile,
    replica_document,
)
from tests.e2e.rig import Rig, balanced_replicas

pytestmark = pytest.mark.e2e

DEVICES = 40
DRAIN_PERIOD = 5.0  # the default of server.drain_period
SHUTDOWN_TIMEOUT = 10.0


@pytest.fixture(scope="module", params=["nginx", "haproxy"])
def rig(
    request: pytest.FixtureRequest, lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """Provisioner `lb-<kind>` on the session's step-ca, three replicas, the balancer."""
    kind: str = request.param
    directory = tmp_path_factory.mktemp(kind)
    serials = [SimulatedDevice.generate().serial for _ in range(DEVICES)]
    inventory = directory / "inventory.json"
    write_inventory(
        inventory,
        [
            {"serial": s, "managed": True, "platform": "macOS", "user": {"username": f"u{i}"}}
            for i, s in enumerate(serials)
        ],
    )
    with balanced_replicas(
        lab,
        directory,
        kind,
        provisioner=f"lb-{kind}",
        serials=serials,
        document=lambda port, hooks: replica_document(port, inventory, hooks),
    ) as the_rig:
        yield the_rig


def _retried_by_step_ca(attempts: list[Attempt]) -> int:
    """Calls step-ca had to make twice: its retry carries the same request id to the same
    webhook (the ENRICHING and AUTHORIZING calls of one enrolment share the id)."""
    calls = Counter((a.request_id, a.path) for a in attempts)
    return sum(n - 1 for n in calls.values() if n > 1)


def _report(name: str, rig: Rig, outcomes: list[Outcome], attempts: list[Attempt]) -> str:
    """One line of figures, printed with the test's output (docs/operations.md, Figures)."""
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
