from __future__ import annotations

import signal
import sys
from pathlib import Path

from dataflows.stack.processes import ProcessRecord, ProcessTable, is_alive


def test_spawn_stop_and_liveness(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert is_alive(record) and table.running("sleeper") == record
    assert table.stop("sleeper", sig=signal.SIGTERM, timeout=5)
    assert not is_alive(record)
    assert table.get("sleeper") is None  # pid file removed
    assert not table.stop("sleeper")


def test_a_reused_pid_is_not_our_process(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    impostor = ProcessRecord("sleeper", record.pid, record.start_ticks + 1, record.argv, record.log)
    assert not is_alive(impostor)
    table.stop("sleeper")


def test_an_exited_child_is_down_even_before_it_is_reaped(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.spawn("quick", [sys.executable, "-c", "pass"])
    import time

    deadline = time.monotonic() + 10
    while is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(record)  # a zombie counts as down
    assert "quick.log" in record.log
