"""The local broker `tidemark up` starts keeps every record it acknowledged across a kill -9."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.capture.kafka_writer import KafkaBatchWriter, OutRecord
from dataflows.io.sinks import ensure_topics
from dataflows.stack.local import LocalStack
from dataflows.stack.processes import is_alive
from dataflows.stack.scratch import make_settings, new_home

TOPIC = "durability.test.v1"


@pytest.fixture
def durable_stack() -> Iterator[LocalStack]:
    home = new_home("tidemark-durable-")
    stack = LocalStack(make_settings(home, broker_storage="s3"))
    stack.up(capture=False, echo=lambda _l: None)
    try:
        yield stack
    finally:
        stack.down(echo=lambda _l: None)
        shutil.rmtree(home, ignore_errors=True)


class SteadyProducer(threading.Thread):
    """The capture's own writer sending numbered batches without pause, as Debezium hands them over:
    a batch counts as acknowledged when `write_with_retry` returned; a failed batch is sent again."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        super().__init__(daemon=True)
        self.writer = KafkaBatchWriter(bootstrap, partitions, client_id="durability-test")
        self.acked: set[int] = set()
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [OutRecord(TOPIC, str(i).encode(), f"record {i}".encode()) for i in range(n, n + 50)]
            try:
                self.writer.write_with_retry(batch)
            except Exception:  # noqa: BLE001 - broker away: Debezium would hand the same batch over again
                self.failures += 1
                time.sleep(0.2)
                continue
            self.acked.update(range(n, n + 50))
            n += 50

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)
        self.writer.close()


def _wait(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what if isinstance(what, str) else what()}"
        time.sleep(0.05)


def _broker_errors(stack: LocalStack) -> str:
    """The broker's most frequent ERROR lines, for a failure message."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", (stack.table.log_dir / "kafka.log").read_text(errors="replace"))
    counts = Counter(line[28:260] for line in log.splitlines() if "ERROR" in line)
    return f"broker errors: {counts.most_common(5)}"


def _read_all(bootstrap: str, partitions: int) -> set[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "durability-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: set[int] = set()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 5:  # read until nothing new came for 5 s
        got = [int(m.key()) for m in consumer.consume(10000, timeout=0.5) if m.error() is None]
        if got:
            found.update(got)
            quiet_since = time.monotonic()
    consumer.close()
    return found


def test_every_acknowledged_record_survives_a_broker_kill(durable_stack: LocalStack) -> None:
    stack = durable_stack
    bootstrap = stack.settings.kafka_bootstrap
    partitions = stack.settings.topic_partitions
    ensure_topics(bootstrap, {TOPIC: partitions})
    producer = SteadyProducer(bootstrap, partitions)
    producer.start()
    _wait(lambda: len(producer.acked) >= 2000, "2,000 acknowledged records")

    broker = stack.table.get("kafka")
    assert broker is not None
    os.kill(broker.pid, signal.SIGKILL)  # in the middle of the steady produce
    acked_at_kill = len(producer.acked)
    _wait(lambda: not is_alive(broker), "the broker to die")
    stack.up(capture=False, echo=lambda _l: None)  # brings back what is down: the broker
    _wait(lambda: len(producer.acked) >= acked_at_kill + 2000,
          lambda: f"2,000 more acknowledged after the restart ({producer.failures} failed batches; {_broker_errors(stack)})")
    producer.finish()

    found = _read_all(bootstrap, partitions)
    lost = producer.acked - found
    assert not lost, (f"{len(lost)} of {len(producer.acked)} acknowledged records lost (found {len(found)}), "
                      f"e.g. {sorted(lost)[:10]}; {_broker_errors(stack)}")  # fmt: skip
    assert len(producer.acked) >= acked_at_kill + 2000
    store = stack.home / "kafka" / "store"
    assert (store / "tansu").is_dir()  # the topics are files under $TIDEMARK_HOME
    assert oct(store.stat().st_mode & 0o777) == "0o700"
