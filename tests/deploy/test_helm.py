"""deploy/helm: `helm lint`, rendered objects valid against Kubernetes schemas, and what they promise.

`helm template` renders offline; `kubernetes-validate --strict` checks each object against the
OpenAPI schemas it bundles for the oldest Kubernetes the chart supports and the newest it knows.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.settings import ServerSettings
from tests.deploy.support import (
    DEPLOY,
    check_config,
    file_paths,
    go_tool,
    place,
    relocate,
    run,
    stand_ins,
)

CHART = DEPLOY / "helm" / "posture-connector"
KUBE_VERSIONS = ("1.25.0", "1.37.0")
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"  # the kubernetes-validate package

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "metrics-own-port": {"metrics": {"enabled": True, "port": 9090}},
    "metrics-same-port": {"metrics": {"enabled": True}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsSelector": {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}},
        },
        "metrics": {"enabled": True, "port": 9090},
    },
    "client-ca-secret": {"clientCA": {"existingConfigMap": "", "existingSecret": "step-ca-root"}},
    "one-per-node": {"podAntiAffinity": "required", "topologySpread": {"enabled": False}},
    "pdb-min-available": {
        "replicaCount": 3,
        "podDisruptionBudget": {"minAvailable": 2},
        "image": {"digest": "sha256:" + "0" * 64},
    },
}


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> tuple[int, str, str]:
    """`helm template` with `values`: (exit code, manifests, error output)."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values or {}), encoding="utf-8")
    result = run(
        go_tool("helm"), "template", "rel", CHART, "--namespace", "posture", "-f", values_file
    )
    return result.returncode, result.stdout, result.stderr


def objects(tmp_path: Path, values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The rendered objects by kind (one of each kind in this chart)."""
    code, manifests, errors = render(tmp_path, values)
    assert code == 0, errors
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def test_the_chart_passes_helm_lint() -> None:
    """`helm lint --strict` finds nothing (warnings would fail too)."""
    result = run(go_tool("helm"), "lint", "--strict", CHART)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_are_valid_kubernetes(tmp_path: Path, name: str, kube: str) -> None:
    """Every object the chart renders passes strict schema validation for that Kubernetes."""
    code, manifests, errors = render(tmp_path, VALUE_SETS[name])
    assert code == 0, errors
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(manifests, encoding="utf-8")
    result = run(VALIDATE, "--strict", "--kubernetes-version", kube, rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deployment/rel-posture-connector" in result.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """Control: a misspelt securityContext field fails the same validation."""
    code, manifests, errors = render(tmp_path, {"podSecurityContext": {"runAsUsr": 10001}})
    assert code == 0, errors
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(manifests, encoding="utf-8")
    result = run(VALIDATE, "--strict", "--kubernetes-version", KUBE_VERSIONS[-1], rendered)
    assert result.returncode != 0
    assert "runAsUsr" in result.stdout + result.stderr


def test_two_replicas_spread_over_nodes_and_zones_with_a_disruption_budget(
    tmp_path: Path,
) -> None:
    """Two replicas by default, kept apart by anti-affinity and spread, one may be disrupted."""
    rendered = objects(tmp_path)
    deployment, pdb = rendered["Deployment"], rendered["PodDisruptionBudget"]
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": labels}}
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == labels
    assert rendered["Service"]["spec"]["selector"] == labels


def test_the_pod_runs_non_root_read_only_without_capabilities(tmp_path: Path) -> None:
    """uid 10001, read-only root, all capabilities dropped, RuntimeDefault seccomp, no SA token."""
    spec = objects(tmp_path)["Deployment"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] != "tmp")
    assert "resources" in container
    assert container["resources"]["limits"]["memory"]


def test_probes_ask_healthz_for_liveness_and_readyz_for_readiness(tmp_path: Path) -> None:
    """Liveness and startup on /healthz, readiness on /readyz, all over HTTPS."""
    container = objects(tmp_path)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    schemes = {container[p]["httpGet"]["scheme"] for p in ("livenessProbe", "readinessProbe")}
    assert schemes == {"HTTPS"}


def test_the_grace_period_outlasts_the_prestop_sleep_and_the_drain(tmp_path: Path) -> None:
    """Kubernetes waits longer than preStop sleep + the connector's shutdown_timeout."""
    rendered = objects(tmp_path)
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    sleep = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    server = tomllib.loads(rendered["ConfigMap"]["data"]["config.toml"])["server"]
    assert server["shutdown_timeout"] == ServerSettings.model_fields["shutdown_timeout"].default
    assert spec["terminationGracePeriodSeconds"] > sleep + server["shutdown_timeout"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"terminationGracePeriodSeconds": 15},
            "terminationGracePeriodSeconds (15) must be larger",
        ),
        ({"config": "[server]\nport = 1\n"}, "leave out the [server] table"),
        (
            {"clientCA": {"existingConfigMap": "", "existingSecret": ""}},
            "clientCA: set exactly one",
        ),
        ({"clientCA": {"existingSecret": "root"}}, "clientCA: set exactly one"),
        ({"tls": {"existingSecret": ""}}, "tls.existingSecret"),
        ({"store": {"urlSecretKey": ""}}, "SQLite serves replicaCount 1 only"),
        ({"config": "[store]\npath = 'x'\n"}, "leave out the [store] table"),
        ({"secrets": {"existingSecret": ""}}, "store.urlSecretKey: needs secrets.existingSecret"),
    ],
    ids=[
        "grace-too-short",
        "server-table",
        "no-client-ca",
        "two-client-cas",
        "no-tls",
        "replicas-on-sqlite",
        "store-table",
        "store-url-without-secret",
    ],
)
def test_the_chart_refuses_unsafe_values(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    """Values that would cut requests or break mTLS stop the render with a message."""
    code, _, errors = render(tmp_path, values)
    assert code != 0
    assert message in errors


def test_the_replicas_share_a_postgresql_store_read_from_the_secret(tmp_path: Path) -> None:
    """By default the replicas' store is PostgreSQL, its URL (a secret) a file of the mounted
    Secret; no SQLite file is written anywhere in the read-only pod."""
    config = tomllib.loads(objects(tmp_path)["ConfigMap"]["data"]["config.toml"])
    assert config["store"] == {
        "backend": "postgresql",
        "url": {"file": "/run/secrets/posture-connector/store-url"},
    }


def test_one_replica_may_keep_sqlite_on_a_writable_volume(tmp_path: Path) -> None:
    """replicaCount 1 without a URL: SQLite in /var/lib/posture-connector, an emptyDir mounted
    writable there (the root filesystem is read-only)."""
    rendered = objects(tmp_path, {"replicaCount": 1, "store": {"urlSecretKey": ""}})
    config = tomllib.loads(rendered["ConfigMap"]["data"]["config.toml"])
    assert config["store"] == {"path": "/var/lib/posture-connector/posture-connector.sqlite3"}
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state"]
    assert mount["mountPath"] == "/var/lib/posture-connector"
    assert not mount.get("readOnly")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == "state")


def test_metrics_annotations_follow_the_switch(tmp_path: Path) -> None:
    """Prometheus annotations appear only with metrics.enabled, with the port and path values."""
    off = objects(tmp_path)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert not any(key.startswith("prometheus.io/") for key in off)
    values = {"metrics": {"enabled": True, "port": 9090, "path": "/custom"}}
    rendered = objects(tmp_path, values)
    on = rendered["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert on["prometheus.io/scrape"] == "true"
    assert on["prometheus.io/port"] == "9090"
    assert on["prometheus.io/path"] == "/custom"
    assert {p["name"]: p["port"] for p in rendered["Service"]["spec"]["ports"]}["metrics"] == 9090


def test_a_config_change_rolls_the_pods(tmp_path: Path) -> None:
    """The pod template carries a checksum of the config, so a new config restarts the pods."""

    def checksum(values: dict[str, Any]) -> str:
        deployment = objects(tmp_path, values)["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"server": {"shutdownTimeout": 12}})


def test_the_rendered_config_passes_check_config_with_every_file_mounted(tmp_path: Path) -> None:
    """The ConfigMap's config.toml, with its mounts laid out in a folder, passes check-config."""
    rendered = objects(tmp_path)
    text = rendered["ConfigMap"]["data"]["config.toml"]
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    needed = file_paths(tomllib.loads(text), "/etc/posture-connector")
    for path in needed:
        assert any(path.startswith(m.rstrip("/") + "/") for m in mounts), path
    etc, secrets = tmp_path / "etc", tmp_path / "secrets"
    files = stand_ins(tmp_path / "stand-ins")
    place(
        files,
        {
            etc / "tls/tls.crt": "tls.crt",
            etc / "tls/tls.key": "tls.key",
            etc / "client-ca/root_ca.crt": "ca.crt",
            secrets / "people-secret": "secret",
            secrets / "gate-secret": "secret",
            secrets / "jamf-client-secret": "secret",
        },
    )
    (secrets / "store-url").write_text("postgresql://connector@postgres/posture", encoding="utf-8")
    config = etc / "config.toml"
    relocated = relocate(
        text, {"/etc/posture-connector/": etc, "/run/secrets/posture-connector/": secrets}
    )
    config.write_text(relocated, encoding="utf-8")
    result = check_config(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provider jamf: jamf" in result.stdout
    assert "client-cert=required" in result.stdout
