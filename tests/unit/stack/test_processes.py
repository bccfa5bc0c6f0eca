from __future__ import annotations

import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from dataflows.stack.processes import ProcessRecord, ProcessTable, StartupError, is_alive, refuse_taken_port


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


def test_a_port_released_within_the_wait_is_not_taken_for_another_process() -> None:
    """A broker just killed: its socket outlives its main thread for a moment; `up` must restart it, not
    refuse its port. A port still held after the wait is refused, naming the variable that moves it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    threading.Timer(0.5, listener.close).start()
    refuse_taken_port("kafka", "127.0.0.1", port, "kafka_port", release_s=5.0)  # returns once it is closed
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        held = stranger.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{held}.*TIDEMARK_KAFKA_PORT"):
            refuse_taken_port("kafka", "127.0.0.1", held, "kafka_port", release_s=0.3)
