"""Prometheus configs, alert rules and the Grafana dashboard, checked by the real tools where they run here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import prometheus_client
import pytest
import yaml

from dataflows import metrics
from dataflows.settings import project_root

INFRA = project_root() / "infra"
PROMTOOL = shutil.which("promtool")


def _exposed_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            base = value._name  # noqa: SLF001 - the declared name
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is installed by `make test` (infra/bin/system-deps)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True)


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    check = _promtool("check", "rules", str(INFRA / "prometheus/rules/tidemark.rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    unit = _promtool("test", "rules", str(INFRA / "prometheus/rules/tidemark.rules.test.yml"))
    assert unit.returncode == 0, unit.stdout + unit.stderr


@pytest.mark.parametrize("name", ["prometheus.local.yml", "prometheus.compose.yml"])
def test_scrape_configs_are_valid(name: str, tmp_path: Path) -> None:
    config = (INFRA / "prometheus" / name).read_text().replace("/etc/prometheus/rules/", "rules/")
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copytree(INFRA / "prometheus/rules", tmp_path / "rules")
    (tmp_path / "targets.json").write_text("[]")
    check = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_rules_and_dashboard_use_only_metrics_that_exist() -> None:
    exposed = _exposed_names() | {"up"}
    rules = (INFRA / "prometheus/rules/tidemark.rules.yml").read_text()
    dashboard = json.loads((INFRA / "grafana/dashboards/tidemark.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in yaml.safe_load(rules)["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\b(tidemark_[a-z0-9_]+|up)\b", e)}
    assert used and used <= exposed, f"unknown metrics: {used - exposed}"


def test_dashboard_is_provisioned_against_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((INFRA / "grafana/dashboards/tidemark.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("lag", "per second", "latency", "dead letters", "governance", "lifecycle events"):
        assert needed in titles


def test_metric_names_and_labels_follow_the_house_rules() -> None:
    forbidden = {"customer_id", "key", "id", "account_id", "event_id"}
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            assert value._name.startswith("tidemark_")  # noqa: SLF001
            assert not forbidden & set(value._labelnames), value._name  # noqa: SLF001
