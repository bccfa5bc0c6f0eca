"""A real Prometheus scraping a running pipeline: lag series read back through its HTTP API; the alert
rules load; `tidemark status` tells what is behind and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import Any

from dataflows.stack.local import LocalStack
from tests.support.waiting import wait_until

MOVING = [
    "tidemark_consumer_lag_messages", "tidemark_capture_source_lag_seconds", "tidemark_e2e_latency_seconds_bucket",
    "tidemark_capture_changes_total", "tidemark_dataflow_records_total", "tidemark_reorder_buffer_depth",
    "tidemark_reorder_wait_seconds_bucket", "tidemark_dedupe_suppressed_total", "tidemark_identity_matches_total",
    "tidemark_governance_decisions_total", "tidemark_sink_writes_total", "tidemark_capture_engine_up",
    "tidemark_capture_last_position", "tidemark_postgres_slot_retained_wal_bytes", "tidemark_lifecycle_events_total",
]  # fmt: skip


def prom(stack: LocalStack, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{stack.settings.prometheus_port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())["data"]


def test_prometheus_scrapes_the_pipeline(pipeline: LocalStack) -> None:
    with pipeline.erp_admin() as db:  # traffic, so counters move
        (erp_id,) = db.execute("INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('Observed Oy', 'OB1', 'FI') "
                               "RETURNING id").fetchone()  # fmt: skip
        db.execute("UPDATE erp.customers SET credit_status = 'hold' WHERE id = %s", (erp_id,))
    crm = pipeline.crm_admin()
    with crm.cursor() as cur:  # and an identity match
        cur.execute("INSERT INTO accounts (name, tax_id, country, erp_customer_id) VALUES ('Observed', 'OB1', 'FI', %s)",
                    (erp_id,))  # fmt: skip
    crm.close()
    targets = wait_until(lambda: (t := prom(pipeline, "/api/v1/targets")["activeTargets"]) and
                         all(x["health"] == "up" for x in t) and len(t) >= 3 and t, 60, "every target up")  # fmt: skip
    assert {t["labels"]["job"] for t in targets} == {"tidemark-dataflow", "tidemark-capture"}

    lag = wait_until(lambda: prom(pipeline, "/api/v1/query", query="tidemark_consumer_lag_messages")["result"],
                     60, "a consumer lag series")  # fmt: skip
    assert {r["metric"]["topic"] for r in lag} >= {"erp.erp.customers", "crm.crm.accounts"}
    # Unknown (NaN) until a source's first change or heartbeat; then small, even while the source is idle,
    # because Debezium's heartbeats (every second) move it on.
    source_lag = wait_until(lambda: (r := prom(pipeline, "/api/v1/query", query="tidemark_capture_source_lag_seconds")
                                     ["result"]) and all(float(x["value"][1]) < 60 for x in r) and r, 60, "source lag")  # fmt: skip
    assert {r["metric"]["source"] for r in source_lag} == {"erp", "crm"}

    def missing() -> list[str]:
        return [m for m in MOVING if not prom(pipeline, "/api/v1/query", query=m)["result"]]

    wait_until(lambda: not missing(), 60, "every metric to have a series")
    rules = prom(pipeline, "/api/v1/rules")["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"TidemarkDeadLetters", "TidemarkCaptureDown",
                                                              "TidemarkDataflowDown", "TidemarkSourceLagHigh"}  # fmt: skip


def test_status_says_what_is_behind(pipeline: LocalStack) -> None:
    env = {**os.environ, **pipeline.settings_environment()}
    out = subprocess.run([sys.executable, "-m", "dataflows.cli", "status"], env=env, capture_output=True, text=True)
    assert "consumer lag" in out.stdout and "source lag" in out.stdout and "golden customers" in out.stdout
    rows = json.loads(subprocess.run([sys.executable, "-m", "dataflows.cli", "status", "--json"], env=env,
                                     capture_output=True, text=True).stdout)  # fmt: skip
    by_name = {r["name"]: r for r in rows}
    assert by_name["dataflow-0"]["endpoint"]["metrics"].startswith("http://127.0.0.1:")
    assert by_name["capture-erp"]["detail"]["source_lag_seconds"] is not None
    assert by_name["prometheus"]["state"] == "up"
