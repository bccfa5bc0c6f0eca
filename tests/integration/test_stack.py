"""`tidemark up/down/status` on a stack of its own: idempotent, pid-file based, honest about crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dataflows.stack import secrets_file
from dataflows.stack.local import LocalStack
from dataflows.stack.postgres import CAPTURE_ROLE
from dataflows.stack.scratch import make_settings, new_home, wait_capture_running


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.settings_environment()}
    return subprocess.run([sys.executable, "-m", "dataflows.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def own_stack() -> Iterator[LocalStack]:
    home = new_home("tidemark-stack-")
    stack = LocalStack(make_settings(home, broker_storage="s3"))  # what `tidemark up` runs by default
    yield stack
    stack.down(echo=lambda _l: None)
    shutil.rmtree(home, ignore_errors=True)


def test_up_status_down(own_stack: LocalStack) -> None:
    first = _cli(own_stack, "up")
    assert first.returncode == 0, first.stderr
    assert "storage: s3://tansu/" in first.stdout  # the durable broker, its data under $TIDEMARK_HOME
    for source in ("erp", "crm"):
        wait_capture_running(own_stack, source)
    pids_before = {r.name: r.pid for r in own_stack.status()}

    again = _cli(own_stack, "up")  # idempotent: starts nothing new
    assert again.returncode == 0 and "already up" in again.stdout
    assert {r.name: r.pid for r in own_stack.status()} == pids_before

    status = _cli(own_stack, "status", "--json")
    assert status.returncode == 0, status.stdout
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {"erp", "crm", "kafka-store", "kafka", "capture-erp", "capture-crm", "dataflow-0", "prometheus"}
    assert all(r["state"] == "up" and r["pid"] for r in rows.values())
    s = own_stack.settings
    assert rows["kafka"]["endpoint"]["bootstrap"] == f"127.0.0.1:{s.kafka_port}"
    assert rows["erp"]["endpoint"]["url"] == f"postgresql://postgres@127.0.0.1:{s.erp_port}/erp"
    assert rows["crm"]["endpoint"]["url"] == f"mysql://root@127.0.0.1:{s.crm_port}/crm"
    secrets = (own_stack.home / "secrets.properties").read_text()
    passwords = [line.split("=", 1)[1] for line in secrets.splitlines() if "=" in line]
    assert not any(p in status.stdout for p in passwords)
    assert oct((own_stack.home / "secrets.properties").stat().st_mode & 0o777) == "0o600"

    # A crashed component shows as down, never as up, and status exits non-zero.
    os.kill(rows["capture-crm"]["pid"], signal.SIGKILL)
    crashed = _cli(own_stack, "status", "--json")
    assert crashed.returncode == 3
    assert {r["name"]: r["state"] for r in json.loads(crashed.stdout)}["capture-crm"] == "down"

    # Every listener is on loopback.
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    for line in listening.splitlines():
        if any(f"pid={pid}," in line for pid in pids_before.values()):
            assert "127.0.0.1:" in line, line

    down = _cli(own_stack, "down")
    assert down.returncode == 0
    assert all(r.state == "down" for r in own_stack.status())
    assert not any(own_stack.table.names())


def test_up_refuses_a_bad_connector_before_starting_anything(own_stack: LocalStack, tmp_path) -> None:
    bad = tmp_path / "connectors"
    bad.mkdir()
    (bad / "erp.yaml").write_text("name: erp\nsystem: erp\ndebezium:\n  connector.class: nope\n")
    env_stack = LocalStack(own_stack.settings.model_copy(update={"connectors_dir": bad}))
    result = _cli(env_stack, "up")
    assert result.returncode != 0
    assert f"{bad / 'erp.yaml'}:4: debezium.connector.class: unsupported connector" in result.stderr
    assert "debezium.topic.prefix: required" in result.stderr
    assert not env_stack.table.names()


def test_a_home_made_before_the_stats_grant_gets_it_on_up() -> None:
    """`down` reads the capture's walsender position only with pg_read_all_stats; older homes lack it."""
    home = new_home("tidemark-grant-")
    stack = LocalStack(make_settings(home))
    passwords = secrets_file.load_or_create(home)
    try:
        stack.start_erp(passwords, echo=lambda _l: None)
        with stack.erp_admin("postgres") as conn:
            conn.execute(f"REVOKE pg_read_all_stats FROM {CAPTURE_ROLE}")  # as a home made before the grant
        stack.table.stop("erp")
        stack.start_erp(passwords, echo=lambda _l: None)
        with stack.erp_admin("postgres") as conn:
            row = conn.execute("SELECT pg_has_role(%s, 'pg_read_all_stats', 'MEMBER')", (CAPTURE_ROLE,)).fetchone()
        assert row == (True,)
    finally:
        stack.down(echo=lambda _l: None)
        shutil.rmtree(home, ignore_errors=True)
