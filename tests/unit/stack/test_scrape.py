"""What `tidemark status` calls the last error: this run's exception or ERROR line, never an old run's."""

from __future__ import annotations

from pathlib import Path

from bytewax.errors import BytewaxRuntimeError

from dataflows.runtime import is_stop_signal
from dataflows.stack.scrape import last_error, newest_error

OLD_RUN = """2026-11-30 10:00:00 INFO dataflows.runtime: dataflow process 0/1 starting
Traceback (most recent call last):
  File "x.py", line 1, in <module>
    raise RuntimeError("old failure")
RuntimeError: old failure
"""


def test_a_traceback_is_reported_as_its_exception_type_and_message() -> None:
    lines = OLD_RUN.splitlines()
    assert newest_error(lines) == "RuntimeError: old failure"


def test_the_newest_error_wins_and_an_error_line_counts() -> None:
    lines = [*OLD_RUN.splitlines(), "2026-11-30 10:05:00 ERROR dataflows.capture.engine: capture erp failed: X: y"]
    assert newest_error(lines) == "dataflows.capture.engine: capture erp failed: X: y"


def test_a_chained_traceback_reports_the_exception_raised_last() -> None:
    lines = [*OLD_RUN.splitlines(), "", "The above exception was the direct cause of the following exception:", "",
             "Traceback (most recent call last):", '  File "y.py", line 2', "ValueError: outer"]  # fmt: skip
    assert newest_error(lines) == "ValueError: outer"


def test_only_the_current_run_is_read(tmp_path: Path) -> None:
    log = tmp_path / "dataflow-0.log"
    log.write_text(OLD_RUN)
    offset = log.stat().st_size  # where the next run's output starts
    with open(log, "a") as f:
        f.write("2026-11-30 11:00:00 INFO dataflows.runtime: dataflow process 0/1 starting\n")
    assert last_error(log, 0) == f"RuntimeError: old failure (log: {log})"
    assert last_error(log, offset) is None


def test_the_stop_signal_wrapped_by_bytewax_is_a_clean_stop() -> None:
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise BytewaxRuntimeError("error calling `StatefulSourcePartition.next_batch`") from interrupt
    except BytewaxRuntimeError as e:
        assert is_stop_signal(e)
    assert not is_stop_signal(BytewaxRuntimeError("error calling `next_batch`"))
    assert not is_stop_signal(RuntimeError("boom"))
