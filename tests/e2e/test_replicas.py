"""Several replicas on one PostgreSQL store, behind the shipped nginx and HAProxy configs.

Three `serve` processes (as many as the shipped configs name) share a throwaway PostgreSQL
database; their one provider is the fake Jamf, run as a real HTTP server, in ``mode = "sync"``:
decisions read the synced generation from the store, and only the replica holding the lease
lists Jamf. A real step-ca enrols simulated devices through the balancer while replicas are
killed with SIGKILL: any replica, then the sync leader in the middle of a listing.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sync import copy_name
from posture_lab import Lab, WebhookCredentials
from posture_lab.devicesim import SimulatedDevice
from providers.jamf import JamfSettings
from tests.conftest import _fresh_postgres
from tests.e2e.balancers import Outcome, Replica, enrol_many, percentile, replica_document
from tests.e2e.rig import Rig, balanced_replicas
from tests.e2e.shared_store import JamfServer, StoreWatch, holders
from tests.fakes.jamf import jamf_computer
from tests.helpers import authorize, signed

pytestmark = pytest.mark.e2e

DEVICES = 24
PAGE_SIZE = 3  # 8 pages of listing ...
PAGE_DELAY = 0.6  # ... at 0.6 s each: a sync takes about 5 s
LEASE_TTL = 4.0  # [store] sync_lease_ttl: a dead leader is replaced within 4 s + 4/3 s
SYNC_INTERVAL = 10.0  # the shortest allowed
INVENTORY_PATH = "/api/v4/computers-inventory"


def _document(
    port: int, hooks: Mapping[str, WebhookCredentials], *, jamf: str, database: str
) -> dict[str, Any]:
    """A replica on the shared store, its one provider the fake Jamf in sync mode."""
    document = replica_document(port, Path("unused.json"), hooks)  # its webhooks and server
    document["server"]["provider_retry_interval"] = 1.0  # ready soon after the first sync
    document["store"] = {"backend": "postgresql", "url": database, "sync_lease_ttl": LEASE_TTL}
    document["providers"] = {"inventory": _inventory(jamf)}
    return document


def _inventory(jamf: str) -> dict[str, Any]:
    """The replicas' one provider: the fake Jamf at `jamf`, in sync mode."""
    return {
        "kind": "jamf",
        "url": jamf,
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "computers_api_version": "v4",
        "device_classes": "computers",
        "page_size": PAGE_SIZE,
        "list_page_size": PAGE_SIZE,  # many slow pages: the leader dies mid-listing
        "mode": "sync",
        "sync_interval": SYNC_INTERVAL,
        "max_staleness": 600.0,
    }


@pytest.fixture(scope="module", params=["haproxy", "nginx"])
def rig(
    request: pytest.FixtureRequest,
    lab: Lab,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Rig, JamfServer, str]]:
    """Three replicas on a fresh database, the fake Jamf listing `DEVICES` Macs, the balancer."""
    kind: str = request.param
    database = asyncio.run(_fresh_postgres(postgres_url))
    serials = [SimulatedDevice.generate().serial for _ in range(DEVICES)]
    computers = [jamf_computer(serial, i) for i, serial in enumerate(serials)]
    with (
        JamfServer(computers) as jamf,
        balanced_replicas(
            lab,
            tmp_path_factory.mktemp(f"replicas-{kind}"),
            kind,
            provisioner=f"replicas-{kind}",
            serials=serials,
            document=lambda port, hooks: _document(port, hooks, jamf=jamf.url, database=database),
        ) as the_rig,
    ):
        yield the_rig, jamf, database


def _figures(name: str, rig: Rig, outcomes: list[Outcome]) -> str:
    seconds = [o.seconds for o in outcomes]
    return (
        f"{rig.balancer.kind} {name}: {len(outcomes)} enrolments, "
        f"{sum(o.error is not None for o in outcomes)} failed; enrolment "
        f"p50 {percentile(seconds, 0.5):.2f} s, p99 {percentile(seconds, 0.99):.2f} s"
    )


def _show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def _holder(replicas: list[Replica], lease_holder: str | None) -> Replica:
    """The replica whose process holds the lease (its id is ``host:pid:random``)."""
    found = [r for r in replicas if r.running and f":{r.pid}:" in f"{lease_holder}"]
    assert len(found) == 1, (lease_holder, [r.pid for r in replicas if r.running])
    return found[0]


def _allows(replica: Replica, hooks: Mapping[str, WebhookCredentials], serial: str) -> bool:
    """Ask `replica` directly, as step-ca would, whether `serial` may enrol."""
    body = authorize(serial, now=datetime.now(UTC))
    headers = signed(body, webhook_id=hooks["gate"].id, secret=hooks["gate"].secret)
    url = f"http://{replica.address}/webhooks/gate"
    answer = httpx.post(url, content=body, headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["allow"])


def _restart(replica: Replica) -> None:
    if not replica.running:
        replica.start()


def test_killing_a_replica_mid_burst_fails_no_enrolment(
    rig: tuple[Rig, JamfServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica killed with SIGKILL while a burst of enrolments runs: the balancer sends its
    calls to the others, and every enrolment gets its certificate."""
    the_rig, _jamf, _database = rig
    the_rig.balancer.wait_all_up(the_rig.replicas)
    victim = the_rig.replicas[-1]
    before = len(victim.decided())
    keep_going = threading.Event()
    keep_going.set()
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(
            enrol_many,
            the_rig.lab,
            the_rig.provisioner,
            the_rig.serials,
            workers=8,
            at_least=DEVICES,
            keep_going=keep_going,
        )
        try:
            deadline = time.monotonic() + 20
            while len(victim.decided()) <= before:  # the victim is deciding calls
                assert time.monotonic() < deadline
                time.sleep(0.05)
            victim.send(signal.SIGKILL)
            victim.wait(timeout=10)
            time.sleep(2.0)  # enrolments go on without it
        finally:
            keep_going.clear()
        outcomes = load.result(timeout=60)
    _show(capsys, _figures("replica killed mid-burst", the_rig, outcomes))
    _restart(victim)
    assert len(outcomes) >= DEVICES
    assert [o.error for o in outcomes if o.error] == []


def test_killing_the_sync_leader_mid_sync_exposes_no_partial_generation(
    rig: tuple[Rig, JamfServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The sync leader killed with SIGKILL while it lists Jamf: enrolments keep being decided
    from the last complete generation, another replica takes the lease within the lease ttl
    and completes a generation, which decides the very next call on every replica; no
    generation but a complete one ever became current."""
    the_rig, jamf, database = rig
    for replica in the_rig.replicas:
        _restart(replica)
    the_rig.balancer.wait_all_up(the_rig.replicas)
    late = SimulatedDevice.generate().serial  # listed only by the next sync
    copy = copy_name("inventory", JamfSettings.model_validate(_inventory(jamf.url)))
    with StoreWatch(database, copy) as watch:
        pids = [f":{r.pid}:" for r in the_rig.replicas]
        first = watch.wait_for(  # a live replica leads (not one killed by the last test)
            lambda s: s.current is not None and any(p in f"{s.holder}" for p in pids),
            timeout=LEASE_TTL * 3,
        )
        assert first.current is not None
        assert first.current[1] == DEVICES
        leader = _holder(the_rig.replicas, first.holder)
        others = [r for r in the_rig.replicas if r is not leader]
        assert not any(_allows(r, the_rig.hooks, late) for r in the_rig.replicas)
        jamf.run(lambda: jamf.fake.computers.append(jamf_computer(late, DEVICES)))
        jamf.run(
            lambda: jamf.fake.inject("slow", path=INVENTORY_PATH, times=None, delay=PAGE_DELAY)
        )
        keep_going = threading.Event()
        keep_going.set()
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(
                enrol_many,
                the_rig.lab,
                the_rig.provisioner,
                the_rig.serials,
                workers=4,
                at_least=DEVICES,
                keep_going=keep_going,
                pause=0.2,
            )
            try:
                # The leader's next sync (within sync_interval) gets a few pages in.
                listed = jamf.fake.count(INVENTORY_PATH)
                deadline = time.monotonic() + SYNC_INTERVAL + LEASE_TTL + 10
                while jamf.fake.count(INVENTORY_PATH) < listed + 3:
                    assert time.monotonic() < deadline, "the leader did not sync again"
                    time.sleep(0.05)
                building = watch.now().building
                assert building  # a generation is half written ...
                leader.send(signal.SIGKILL)
                killed = time.monotonic()
                leader.wait(timeout=10)
                taken = watch.wait_for(
                    lambda s: s.holder not in (None, first.holder), timeout=LEASE_TTL * 3
                )
                done = watch.wait_for(
                    lambda s: s.current is not None and s.current[1] == DEVICES + 1, timeout=30
                )
                answered = {r.name: _allows(r, the_rig.hooks, late) for r in others}
            finally:
                keep_going.clear()
                jamf.run(jamf.fake.clear_faults)
            outcomes = load.result(timeout=60)
        after = watch.now()
    takeover, completed = taken.at - killed, done.at - killed
    _show(
        capsys,
        f"{_figures('sync leader killed mid-sync', the_rig, outcomes)}; lease taken over "
        f"{takeover:.1f} s after the kill (ttl {LEASE_TTL:g} s), new generation current after "
        f"{completed:.1f} s",
    )
    assert [o.error for o in outcomes if o.error] == []  # decided from the old generation
    assert takeover <= LEASE_TTL + LEASE_TTL / 3 + 1.0
    assert _holder(others, taken.holder) in others
    # Only complete generations were ever current: every device, then the late one too.
    assert {s.current[1] for s in watch.samples if s.current} == {DEVICES, DEVICES + 1}
    assert answered == {r.name: True for r in others}  # the next call, on every replica
    assert after.building == ()  # the dead leader's partial generation is gone
    assert list(holders(watch.samples))[:2] == [first.holder, taken.holder]
