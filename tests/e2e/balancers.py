"""Connector replicas behind nginx or HAProxy, run from the shipped configs in deploy/.

Everything listens on 127.0.0.1, unprivileged, with its files in one directory:

- `Replica`: ``python -m connector serve`` on plain HTTP (TLS ends at the balancer), its JSON
  log in a file; it can be stopped with SIGTERM, frozen with SIGSTOP and restarted.
- `Nginx` / `Haproxy`: the balancer, from ``deploy/nginx/posture-connector.conf`` (rendered like
  envsubst) or ``deploy/haproxy/haproxy.cfg`` (HAProxy reads the same values from its
  environment), with one access-log line per call step-ca makes (`Attempt`).
- `enrol_many`: simulated devices enrolling on worker threads, each outcome timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from posture_lab import Lab, toml_document
from posture_lab._tools import LoggedProcess
from posture_lab.devicesim import AcmeError, SimulatedDevice, tls_context

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "posture-connector.conf"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
REPLICAS = 3  # the shipped configs name three
# What the shipped configs assume of each replica (see their headers).
DECISION_BUDGET = 3.0
# nginx learns that a replica is back only when fail_timeout is over (see the shipped config).
NGINX_FAIL_TIMEOUT = 3.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- replicas ---------------------------------------------------------------------------------


class Replica(LoggedProcess):
    """One ``serve`` process on plain HTTP; restartable, with its log kept across restarts."""

    def __init__(
        self, name: str, directory: Path, document: Mapping[str, Any], *, ca_file: Path
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory / "connector.log")
        self.name = name
        self.ca_file = ca_file  # any PEM bundle: the health check speaks plain HTTP
        self.port = int(document["server"]["port"])
        self.config = directory / "connector.toml"
        self.config.write_text(toml_document(document), encoding="utf-8")

    @property
    def address(self) -> str:
        """host:port, as the balancer's config names it."""
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start and wait until /readyz answers 200."""
        self.launch(
            [sys.executable, "-m", "connector", "serve", "--config", str(self.config)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            health_url=f"http://{self.address}/readyz",
            ca_file=self.ca_file,
            timeout=timeout,
            cwd=self.config.parent,
        )

    @property
    def pid(self) -> int:
        """The running process's id (a store lease names its holder by it)."""
        assert self._process is not None
        return self._process.pid

    def send(self, signum: signal.Signals) -> None:
        """Send `signum` (SIGTERM, SIGSTOP, SIGCONT) to the running process."""
        assert self._process is not None
        self._process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self._process is not None
        code = self._process.wait(timeout=timeout)
        self._process = None
        return code

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line so far, across restarts."""
        lines = self.log_since(0).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def decided(self) -> list[tuple[str, str]]:
        """(step-ca request id, webhook) of every call this replica decided, in order."""
        return [
            (str(e.get("request_id")), str(e["webhook"]))
            for e in self.events()
            if e["event"] == "webhook.decision"
        ]

    def decided_while_draining(self) -> int:
        """Calls decided between a `server.draining` and the `server.stopping` that followed."""
        draining, total = False, 0
        for event in self.events():
            name = event["event"]
            draining = name == "server.draining" or (draining and name != "server.stopping")
            total += draining and name == "webhook.decision"
        return total


def replica_document(port: int, inventory: Path, hooks: Mapping[str, Any]) -> dict[str, Any]:
    """A replica's config: plain HTTP behind the balancer, the budget the configs assume."""
    webhooks = []
    for name, creds in hooks.items():
        webhooks.append(
            {
                "name": name,
                "kind": "ENRICHING" if name == "people" else "AUTHORIZING",
                "path": f"/webhooks/{name}",
                "id": creds.id,
                "secret": creds.secret,
                "providers": ["inventory"],
                "policy": {"managed": True},
                **({"enrichment": {"personal_data": True}} if name == "people" else {}),
            }
        )
    return {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "plain_http": True,
            "decision_budget": DECISION_BUDGET,
        },
        "logging": {"level": "info", "format": "json"},
        "providers": {"inventory": {"kind": "json", "path": str(inventory)}},
        "webhooks": webhooks,
    }


# --- balancers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call step-ca made, as the balancer logged it.

    Attributes:
        request_id: step-ca's X-Request-Id: one per enrolment request, shared by its
            ENRICHING and AUTHORIZING calls, and the same on step-ca's retry of a call.
        path: the webhook's path (which of the two calls).
        status: what the balancer answered.
        tries: how many replicas the balancer tried for it (2: the balancer retried).
    """

    request_id: str
    path: str
    status: int
    tries: int


_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `${NAME}` placeholders, as envsubst with an explicit list does; a missing one fails."""
    return _PLACEHOLDER.sub(lambda m: values[m[1]], template)


class Balancer:
    """A load balancer process in front of the replicas."""

    kind = ""

    def __init__(self, directory: Path, values: Mapping[str, str], *, port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.values = dict(values)
        self.port = port
        self.output = directory / f"{self.kind}.out"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL step-ca calls."""
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The argv to run the balancer in the foreground."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Its environment."""
        return dict(os.environ)

    def start(self, *, timeout: float = 15.0) -> None:
        """Run it and wait until its port accepts connections."""
        with self.output.open("ab") as sink:
            self._process = subprocess.Popen(
                self.command(),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self._process.poll() is None, self.output.read_text(errors="replace")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            assert time.monotonic() < deadline, self.output.read_text(errors="replace")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def attempts(self) -> list[Attempt]:
        """Every call logged so far, in order."""
        raise NotImplementedError

    def wait_all_up(self, replicas: Sequence[Replica]) -> None:
        """Until the balancer sends calls to every replica again (after a restart or a thaw)."""
        raise NotImplementedError


class Nginx(Balancer):
    """nginx OSS from deploy/nginx/posture-connector.conf."""

    kind = "nginx"

    def __init__(self, directory: Path, values: Mapping[str, str], *, port: int) -> None:
        super().__init__(directory, values, port=port)
        self.config = directory / "nginx.conf"
        self.config.write_text(render(NGINX_CONF.read_text(encoding="utf-8"), self.values))

    def command(self) -> list[str]:
        """Foreground; as root its workers stay root, to read the test's private files."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        return [
            binary,
            "-p",
            str(self.directory),
            "-e",
            str(self.directory / "error.log"),
            "-c",
            str(self.config),
            "-g",
            directives,
        ]

    def attempts(self) -> list[Attempt]:
        """From the JSON access log: one line per call, `upstream` lists each replica tried."""
        log = Path(self.values["RUN_DIR"]) / "access.log"
        found = []
        for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
            entry = json.loads(line)
            if not entry["uri"].startswith("/webhooks/"):
                continue
            tries = len([u for u in entry["upstream"].split(",") if u.strip()])
            found.append(Attempt(entry["request_id"], entry["uri"], int(entry["status"]), tries))
        return found

    def wait_all_up(self, replicas: Sequence[Replica]) -> None:
        """nginx cannot be asked: a replica that failed a call is back after fail_timeout."""
        time.sleep(NGINX_FAIL_TIMEOUT)


_HAPROXY_LINE = re.compile(
    r"request_id=(?P<id>\S*) method=\S+ uri=(?P<uri>\S+) status=(?P<status>-?\d+) "
    r"server=\S+ retries=\+?(?P<retries>\d+)"
)


class Haproxy(Balancer):
    """HAProxy from deploy/haproxy/haproxy.cfg, the values in its environment."""

    kind = "haproxy"

    def command(self) -> list[str]:
        """Foreground (-db)."""
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        return [binary, "-db", "-f", str(HAPROXY_CFG)]

    def env(self) -> dict[str, str]:
        """The config's values come from the environment."""
        return {**os.environ, **self.values}

    def attempts(self) -> list[Attempt]:
        """From the log lines on stdout: `retries` counts HAProxy's retries of a call."""
        found = []
        for line in self.output.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _HAPROXY_LINE.search(line)
            if match is None or not match["uri"].startswith("/webhooks/"):
                continue
            tries = 1 + int(match["retries"])
            found.append(Attempt(match["id"], match["uri"], int(match["status"]), tries))
        return found

    def servers(self) -> dict[str, str]:
        """Each replica's state as HAProxy sees it (UP, DOWN, ...), from the admin socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(self.values["RUN_DIR"] + "/haproxy.sock")
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        states = {}
        for row in data.decode().splitlines():
            fields = row.split(",")
            if (
                len(fields) > 17
                and fields[0] == "connectors"
                and fields[1]
                not in {
                    "BACKEND",
                    "FRONTEND",
                }
            ):
                states[fields[1]] = fields[17]
        return states

    def wait_all_up(self, replicas: Sequence[Replica], timeout: float = 15.0) -> None:
        """Until every server is UP in HAProxy's health checks."""
        deadline = time.monotonic() + timeout
        while set(self.servers().values()) != {"UP"}:
            assert time.monotonic() < deadline, self.servers()
            time.sleep(0.1)


def client_context(ca_file: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS to the balancer with a client certificate."""
    context = tls_context(ca_file)
    context.load_cert_chain(cert, key)
    return context


def call_through(balancer: Balancer, context: ssl.SSLContext, path: str) -> int:
    """GET `path` through the balancer; the status code."""
    with httpx.Client(verify=context, timeout=5) as client:
        return client.get(f"{balancer.url}{path}").status_code


# --- enrolments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One enrolment.

    Attributes:
        serial: the device.
        seconds: new order to certificate (or to the refusal).
        error: the ACME problem, or None when a certificate was issued.
    """

    serial: str
    seconds: float
    error: str | None


def enrol_many(
    lab: Lab,
    provisioner: str,
    serials: Sequence[str],
    *,
    workers: int,
    at_least: int,
    keep_going: threading.Event | None = None,
    pause: float = 0.0,
) -> list[Outcome]:
    """Enrol devices on `workers` threads: `at_least` of them, and on while `keep_going` is set.

    Devices take the serials in turn (round and round); each worker waits `pause` seconds
    between two enrolments.
    """
    numbers = count()
    outcomes: list[Outcome] = []

    def worker() -> None:
        while True:
            number = next(numbers)
            if number >= at_least and not (keep_going and keep_going.is_set()):
                return
            serial = serials[number % len(serials)]
            began = time.perf_counter()
            try:
                lab.enrol(SimulatedDevice.generate(serial=serial), provisioner=provisioner)
            except (AcmeError, httpx.HTTPError) as exc:
                error: str | None = str(exc)
            else:
                error = None
            outcomes.append(Outcome(serial, time.perf_counter() - began, error))
            if pause:
                time.sleep(pause)

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        for future in futures:
            future.result()
    return outcomes
