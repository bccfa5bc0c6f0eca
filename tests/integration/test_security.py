"""Secrets never leak, listeners stay on loopback, values reach targets as parameters (never as SQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

from dataflows.dlq import read as read_dlq
from dataflows.stack.local import LocalStack
from tests.support.waiting import wait_until

NASTY = "O'Brien \"&\" Sons'); DROP TABLE customer_360; -- \\ ` ${env:HOME}"


def _passwords(stack: LocalStack) -> list[str]:
    lines = (stack.home / "secrets.properties").read_text().splitlines()
    return [line.split("=", 1)[1] for line in lines if "=" in line and not line.startswith("#")]


def test_sql_written_to_targets_is_parameterized(pipeline: LocalStack) -> None:
    with pipeline.erp_admin() as db:
        (erp_id,) = db.execute("INSERT INTO erp.customers (legal_name, tax_id, country) VALUES (%s, 'SQLI1', 'IE') "
                               "RETURNING id", (NASTY,)).fetchone()  # fmt: skip
    row = wait_until(lambda: (r := _c360(pipeline, erp_id)) and r, 60, "the customer in customer_360")
    assert row[0] == NASTY.strip()  # TRIM(legal_name): verbatim otherwise
    with pipeline.erp_admin("tidemark") as ops:
        assert ops.execute("SELECT count(*) FROM customer_360").fetchone()[0] >= 1  # the table survived


def _c360(stack: LocalStack, erp_id: int) -> tuple | None:
    with stack.erp_admin("tidemark") as ops:
        return ops.execute("SELECT legal_name FROM customer_360 WHERE %s = ANY(erp_customer_ids)", (str(erp_id),)).fetchone()


def test_no_password_in_logs_status_metrics_or_dlq(pipeline: LocalStack) -> None:
    passwords = _passwords(pipeline)
    assert len(passwords) >= 6
    env = {**os.environ, **pipeline.settings_environment()}
    texts: dict[str, str] = {}
    for args in (["status"], ["status", "--json"], ["dlq", "list", "--json"], ["sources", "render", "erp"],
                 ["sources", "render", "crm", "--format", "properties"]):  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "dataflows.cli", *args], env=env, capture_output=True, text=True)
        texts[" ".join(args)] = out.stdout + out.stderr
    for path in pipeline.home.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".yml") and "secrets" not in path.name:
            texts[str(path)] = path.read_text(errors="replace")
    for row in pipeline.status():
        url = row.endpoint.get("metrics")
        if url and row.state == "up":
            with urllib.request.urlopen(url, timeout=5) as response:
                texts[url] = response.read().decode()
    texts["dlq"] = repr(read_dlq(pipeline.ops_conninfo()))  # the durable dead-letter table
    assert any("capture-erp.jvm.log" in name for name in texts), "the JVM logs were scanned"
    leaks = [(name, p[:4] + "...") for name, text in texts.items() for p in passwords if p in text]
    assert leaks == [], f"password found in {leaks}"


def test_every_listener_of_the_stack_is_on_loopback(pipeline: LocalStack) -> None:
    pids = {str(r.pid) for r in pipeline.status() if r.pid}
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
    ours = [line for line in listening if any(f"pid={pid}," in line for pid in pids)]
    assert len(ours) >= 6  # databases, broker, metrics endpoints, Prometheus
    assert all(" 127.0.0.1:" in line for line in ours), [line for line in ours if " 127.0.0.1:" not in line]
