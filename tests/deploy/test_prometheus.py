"""deploy/prometheus and deploy/grafana: alert rules and the dashboard, judged by promtool and
against the metrics the connector really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AppClient
from tests.deploy.support import DEPLOY
from tests.metrics_support import run_promtool

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "posture-connector.json"
METRIC = re.compile(r"\bposture_connector_[a-z_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _queries() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


async def _exposed(app_client: AppClient) -> set[str]:
    """Every sample name the connector can expose (families are listed even before a sample)."""
    client = await app_client()
    text = await (await client.get("/metrics")).text()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def test_alert_rules_pass_promtool() -> None:
    """promtool accepts the alert rules file."""
    result = run_promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    """Each alert fires on its scenario and stays quiet on the healthy one (promtool test)."""
    result = run_promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_test() -> None:
    """No alert ships without a unit test that expects it to fire."""
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == set(_alert_exprs())


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query parses (checked by promtool as recording rules)."""
    values = {"$__rate_interval": "5m", "$webhook": ".*", "$provider": ".*", "$instance": ".*"}
    rules = []
    for index, query in enumerate(_queries()):
        expr = query
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


async def test_dashboard_and_alerts_use_only_exposed_metrics(app_client: AppClient) -> None:
    """Every metric a query or an alert names is one the connector exposes."""
    exposed = await _exposed(app_client)
    used = {m for q in [*_queries(), *_alert_exprs().values()] for m in METRIC.findall(q)}
    assert used
    assert used - exposed == set()


def test_dashboard_panels_use_the_datasource_variable() -> None:
    """Every panel and query reads the dashboard's data source variable, and has a title."""
    dashboard = _dashboard()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "webhook", "provider"} <= variables
    for panel in dashboard["panels"]:
        assert panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
