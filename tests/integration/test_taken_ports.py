"""A port another process already listens on is refused before anything starts there: `wait_for_port`
alone cannot tell that process from ours, so the stack would talk to a stranger while ours failed to bind."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflows.stack.broker import wait_answering
from dataflows.stack.local import LocalStack
from dataflows.stack.processes import ProcessTable, StartupError
from dataflows.stack.scratch import make_settings, new_home


@pytest.fixture
def stranger() -> Iterator[int]:
    """A listener that accepts connections and never answers, on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(("setting", "storage"), [("kafka_port", "memory"), ("broker_store_port", "s3")])
def test_a_taken_port_is_refused_with_the_setting_that_moves_it(stranger: int, setting: str, storage: str) -> None:
    home = new_home("tidemark-taken-")
    stack = LocalStack(make_settings(home, broker_storage=storage, **{setting: stranger}))
    try:
        with pytest.raises(StartupError) as refused:
            stack.start_broker(echo=lambda _l: None)
        message = str(refused.value)
        assert f"127.0.0.1:{stranger}" in message and f"TIDEMARK_{setting.upper()}" in message, message
        assert not [r.name for r in stack.status() if r.state == "up"]  # nothing left running on a wrong port
    finally:
        stack.down(echo=lambda _l: None)
        shutil.rmtree(home, ignore_errors=True)


def test_a_port_that_opens_but_never_answers_kafka_is_not_a_started_broker(stranger: int, tmp_path: Path) -> None:
    """The broker's start waits for a metadata answer, not only an open port, and says where its log is."""
    table = ProcessTable(tmp_path)
    record = table.spawn("kafka", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(StartupError, match=r"answered no metadata request within 2s; see .*kafka\.log"):
            wait_answering(f"127.0.0.1:{stranger}", 2.0, record)
    finally:
        table.stop("kafka")
