"""The stack `tidemark up` starts by default (durable broker, supervisor): a clean stop is no error, a killed
capture or dataflow is restarted and counted, an edited connector file restarts its capture."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataflows.settings import project_root
from dataflows.stack.local import LocalStack, read_capture_status
from dataflows.stack.scrape import dataflow_detail
from dataflows.stack.scratch import make_settings, new_home, wait_capture_running


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.settings_environment()}
    return subprocess.run([sys.executable, "-m", "dataflows.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _rows(stack: LocalStack) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads(_cli(stack, "status", "--json").stdout)}


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _capture_state(stack: LocalStack, source: str) -> tuple[int | None, str | None]:
    """(pid, state) of the capture that wrote status.json last."""
    status = read_capture_status(stack.capture_state_dir(source))
    return status.get("pid"), status.get("state")


def _wait_pipeline_running(stack: LocalStack) -> None:
    for source in ("erp", "crm"):
        wait_capture_running(stack, source)
    _wait(lambda: bool(dataflow_detail(stack.dataflow_metrics_url(0))), "the dataflow's metrics")


@pytest.fixture(scope="module")
def default_stack() -> Iterator[LocalStack]:
    home = new_home("tidemark-supervised-")
    connectors = home / "connectors"  # a copy the test may edit
    shutil.copytree(project_root() / "connectors", connectors)
    stack = LocalStack(make_settings(home, broker_storage="s3", supervise=True, connectors_dir=connectors))
    yield stack
    stack.down(echo=lambda _l: None)
    shutil.rmtree(home, ignore_errors=True)


def test_status_after_a_clean_stop_and_start_shows_no_error(default_stack: LocalStack) -> None:
    stack = default_stack
    first = _cli(stack, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    _wait_pipeline_running(stack)
    first_run_end = (stack.table.log_dir / "dataflow-0.log").stat().st_size
    assert _cli(stack, "down").returncode == 0
    log = (stack.table.log_dir / "dataflow-0.log").read_text()
    assert "panicked" not in log and "Traceback" not in log, log[-2000:]
    assert "stopped" in log[first_run_end:]

    again = _cli(stack, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    _wait_pipeline_running(stack)
    rows = _rows(stack)
    assert all(r["state"] == "up" for r in rows.values()), rows
    assert not [r["name"] for r in rows.values() if r["detail"].get("last_error")]
    assert "last error" not in _cli(stack, "status").stdout


def test_a_killed_capture_and_dataflow_are_restarted_and_counted(default_stack: LocalStack) -> None:
    stack = default_stack
    rows = _rows(stack)
    assert rows["supervisor"]["state"] == "up"
    killed = {"capture-crm": rows["capture-crm"]["pid"], "dataflow-0": rows["dataflow-0"]["pid"]}
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        now = _rows(stack)
        return all(now[n]["state"] == "up" and now[n]["pid"] != pid for n, pid in killed.items())

    _wait(restarted, "the supervisor to restart capture-crm and the dataflow")
    rows = _rows(stack)
    _wait(lambda: _capture_state(stack, "crm") == (rows["capture-crm"]["pid"], "running"), "the new CRM capture")
    assert rows["capture-crm"]["detail"]["restarts"] == 1
    assert rows["dataflow-0"]["detail"]["restarts"] == 1
    assert "restarted 1 time(s) by the supervisor" in _cli(stack, "status").stdout
    counts = json.loads((stack.home / "supervisor" / "restarts.json").read_text())
    assert counts["capture-crm"]["restarts"] == 1  # durable: a file, not a process's memory


def test_an_edited_connector_file_restarts_its_capture_on_up(default_stack: LocalStack) -> None:
    stack = default_stack
    before = _rows(stack)
    with open(stack.settings.connectors_dir / "erp.yaml", "a") as f:
        f.write("# edited by the test\n")
    result = _cli(stack, "up")
    assert result.returncode == 0, result.stderr
    assert "capture-erp  connector file changed since it started: restarting" in result.stdout
    after = _rows(stack)
    _wait(lambda: _capture_state(stack, "erp") == (after["capture-erp"]["pid"], "running"), "the new ERP capture")
    assert after["capture-erp"]["pid"] != before["capture-erp"]["pid"]
    assert after["capture-crm"]["pid"] == before["capture-crm"]["pid"]  # its file did not change

    again = _cli(stack, "restart", "capture-crm")
    assert again.returncode == 0, again.stderr
    assert _rows(stack)["capture-crm"]["pid"] != before["capture-crm"]["pid"]
    unknown = _cli(stack, "restart", "nope")
    assert unknown.returncode == 2 and "unknown component 'nope'" in unknown.stderr


def test_files_holding_customer_data_are_private(default_stack: LocalStack) -> None:
    """Recovery snapshots, logs, capture offsets and schema history, the broker's data, pid files: 0600 files
    in 0700 directories; the MariaDB socket not world-writable; admin client files 0600."""
    home = default_stack.home
    _wait(lambda: any((home / "recovery").rglob("part-*")), "a recovery snapshot")
    _wait(lambda: any((home / "capture" / "crm").glob("*history*")), "the CRM capture's schema history")
    for top in ("recovery", "logs", "capture", "run", "kafka/store", "admin", "supervisor"):
        root = home / top
        assert oct(root.stat().st_mode & 0o777) == "0o700", root
        for path in root.rglob("*"):
            mode = path.stat().st_mode & 0o777
            expected = 0o700 if path.is_dir() else 0o600
            assert mode & ~expected == 0, f"{path} is {oct(mode)}"
    assert list((home / "capture" / "erp").glob("*offsets*")), "the ERP capture's offsets file exists"
    socket = default_stack.crm.socket
    assert socket.exists() and not socket.stat().st_mode & 0o002, oct(socket.stat().st_mode)
    assert oct(default_stack.crm.root.stat().st_mode & 0o777) == "0o700"
    assert "default-character-set=utf8mb4" in (home / "admin" / "my.cnf").read_text()


def test_a_home_inside_a_private_directory_fails_at_once_with_what_to_do() -> None:
    private = new_home("tidemark-private-")
    private.chmod(0o700)  # as `mktemp -d` makes it: the postgres and mysql users may not enter
    stack = LocalStack(make_settings(private / "home"))
    try:
        result = _cli(stack, "up", "--no-capture")
        if os.geteuid() == 0:  # the databases run as their own users: they cannot reach the home
            assert result.returncode == 2, result.stdout + result.stderr
            assert f"may not enter {private} (mode 0o700)" in result.stderr
            assert f"chmod o+x {private}" in result.stderr
            assert "Traceback" not in result.stderr
        else:  # the databases run as this user, who owns the directory: it works
            assert result.returncode == 0, result.stderr
    finally:
        stack.down(echo=lambda _l: None)
        shutil.rmtree(private, ignore_errors=True)
