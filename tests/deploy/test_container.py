"""The Dockerfile and its build context: base image argument, no secrets in, quickstart runs read-only.

No Docker engine runs here, so the image is not built. The build context is computed with docker's
own `.dockerignore` matcher (the `docker` package), and the image's quickstart is run the way the
image lays it out: config under a read-only ``/etc``-like folder, state in a writable one, by a
process that may not write the config folder (uid 0 without capabilities when the suite runs as
root, which is how the container's uid 10001 sees ``/etc/posture-connector``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from posture_lab import free_port
from tests.deploy.support import DEPLOY, ROOT, run, wait_ready

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_QUICKSTART = DEPLOY / "container" / "quickstart.toml"
QUICKSTART_SECRET = ROOT / "examples" / "quickstart.secret"
PEOPLE_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
STATE_DIR = "/var/lib/posture-connector"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not ``--from`` a stage)."""
    found = []
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, destination = rest.split()
            found.append((sources, destination))
    return found


def build_context(root: Path) -> set[str]:
    """The paths docker sends to the builder from `root`, per its `.dockerignore`."""
    lines = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(root), patterns, dockerfile="Dockerfile"))


def test_both_stages_start_from_the_python_image_argument() -> None:
    """The base image is one build argument, defaulting to python:3.11-slim-bookworm, for both stages."""
    steps = instructions()
    assert steps[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm")
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2
    assert all(rest.split()[0] == "${PYTHON_IMAGE}" for rest in froms)


def test_the_image_installs_the_tracing_extra_unless_built_without() -> None:
    """`[tracing] enabled = true` works in the default image; `EXTRAS=` installs the service alone."""
    steps = instructions()
    assert ("ARG", "EXTRAS=tracing") in steps
    install = next(rest for word, rest in steps if word == "RUN" and "pip install" in rest)
    spec = re.search(r'"(\.\$\{EXTRAS:\+\[\$\{EXTRAS\}\]\})"', install)
    assert spec is not None, install
    for extras, expected in (("tracing", ".[tracing]"), ("", ".")):
        shell = subprocess.run(
            ["/bin/sh", "-c", f'EXTRAS="{extras}"; printf %s {spec.group(0)}'],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shell.stdout == expected


def test_the_image_runs_as_uid_10001_with_a_state_directory_it_owns() -> None:
    """The final stage runs as 10001, and the one folder it may write belongs to 10001."""
    steps = instructions()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    assert ("USER", "10001:10001") in final
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert f"install -d -o 10001 -g 10001 -m 0750 {STATE_DIR}" in runs


def test_the_image_quickstart_keeps_its_certificate_in_the_state_directory() -> None:
    """The image's quickstart writes its dev certificate and its store under the state folder,
    not beside the read-only config in /etc."""
    text = IMAGE_QUICKSTART.read_text(encoding="utf-8")
    assert f'dev_certificate_dir = "{STATE_DIR}/dev-tls"' in text
    assert f'path = "{STATE_DIR}/posture-connector.sqlite3"' in text
    assert 'secret = { env = "POSTURE_QUICKSTART_SECRET" }' in text
    assert "quickstart.secret" not in text.split("[server]", 1)[1]


def test_every_copied_file_is_in_the_build_context() -> None:
    """Each COPY source exists and survives the `.dockerignore` allow-list."""
    context = build_context(ROOT)
    for sources, _destination in copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in context, f"{source} is excluded by .dockerignore"


def test_the_build_context_holds_no_secret_key_cache_or_test(tmp_path: Path) -> None:
    """Secrets, dev TLS, keys, virtualenvs, caches and tests never reach the builder."""
    tree = tmp_path / "repo"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "*_cache", ".hypothesis"),
    )
    planted = [
        "examples/quickstart.secret",
        "examples/quickstart-gate.secret",
        "examples/.dev-tls/server.key",
        "connector/.dev-tls/ca.crt",
        "connector/__pycache__/app.cpython-311.pyc",
        "providers/leftover.pem",
        "deploy/container/people.secret",
        "deploy/compose/secrets/ca-password",
        ".venv/bin/python",
        ".tools/bin/step-ca",
        ".step/secrets/root_ca_key",
        ".mypy_cache/x.json",
        "tests/fixtures/captured/enriching.json",
    ]
    for name in planted:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("planted", encoding="utf-8")
    context = build_context(tree)
    assert not set(planted) & context
    assert "deploy/container/quickstart.toml" in context
    assert "connector/app.py" in context
    assert not any(name.endswith(".secret") for name in build_context(ROOT))


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def _writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _image_layout(root: Path, *, keep_state_dir: bool) -> Path:
    """Copy the files as the runtime stage's COPY lines place them; return the quickstart path."""
    for sources, destination in copies():
        if not destination.startswith("/etc/posture-connector/examples"):
            continue
        target = root / destination.lstrip("/")
        for source in sources:
            if (ROOT / source).is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target / Path(source).name)
    (root / STATE_DIR.lstrip("/")).mkdir(parents=True, mode=0o750)
    config = root / "etc/posture-connector/examples/quickstart.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(f'"{STATE_DIR}/', f'"{root / STATE_DIR.lstrip("/")}/')
    if not keep_state_dir:
        text = re.sub(r"(?m)^dev_certificate_dir = .*$", "", text)
    text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    config.write_text(text.replace("port = 8443", f"port = {free_port()}"), encoding="utf-8")
    _read_only(root / "etc")
    return config


def _start_unprivileged(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`serve` by a process that cannot write what it does not own (no capabilities as root)."""
    argv = [sys.executable, "-m", "connector", "serve", "--config", str(config)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) drops root's capabilities for this check"
        argv = [setpriv, "--bounding-set", "-all", "--inh-caps", "-all", "--", *argv]
    secret = QUICKSTART_SECRET.read_text(encoding="utf-8").strip()
    env = {**os.environ, "POSTURE_QUICKSTART_SECRET": secret, "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = str(ROOT)
    with log.open("wb") as sink:
        return subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=config.parent
        )


@pytest.fixture
def image_root(tmp_path: Path) -> Iterator[Path]:
    """A folder laid out like the image's filesystem; made writable again for the cleanup."""
    root = tmp_path / "image"
    yield root
    if (root / "etc").exists():
        _writable(root / "etc")


def test_image_quickstart_serves_with_a_read_only_config_folder(image_root: Path) -> None:
    """The image's quickstart creates its dev certificate in the state folder and answers allow."""
    config = _image_layout(image_root, keep_state_dir=True)
    port = re.search(r"(?m)^port = (\d+)$", config.read_text(encoding="utf-8"))
    assert port
    url = f"https://127.0.0.1:{port.group(1)}"
    cafile = image_root / STATE_DIR.lstrip("/") / "dev-tls" / "ca.crt"
    log = image_root.parent / "serve.log"
    process = _start_unprivileged(config, log)
    try:
        wait_ready(process, f"{url}/readyz", cafile, log)
        context = ssl.create_default_context(cafile=str(cafile))
        # The store opens beside the service (/readyz does not wait for it): give it a moment.
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=5) as response:  # noqa: S310 - loopback
                store = json.loads(response.read())["store"]
            if store["ready"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert store["ready"] is True, store  # the audit log and SCEP challenges have a home
        answer = run(
            sys.executable, "-m", "connector", "send",
            "--url", f"{url}/webhooks/people", "--id", PEOPLE_ID,
            "--secret-file", QUICKSTART_SECRET, "--cacert", cafile,
            "--identifier", "C02QUICK0001",
            cwd=ROOT,
        )  # fmt: skip
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert '"allow": true' in answer.stdout
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert not list((image_root / "etc").rglob(".dev-tls"))


def test_quickstart_without_the_state_folder_cannot_start_read_only(image_root: Path) -> None:
    """Control: with the dev certificate beside the read-only config, serve fails (the old bug)."""
    config = _image_layout(image_root, keep_state_dir=False)
    log = image_root.parent / "serve.log"
    process = _start_unprivileged(config, log)
    try:
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code != 0
    assert "Permission denied" in log.read_text(encoding="utf-8")
