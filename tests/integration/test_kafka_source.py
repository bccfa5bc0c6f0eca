"""The capture-topic source against a broker that is not there, then appears: retried with backoff and
logged, never a silent hang; it then reads from the start."""

from __future__ import annotations

import logging
import time

from kafka import KafkaProducer, TopicPartition

from dataflows.io.kafka_source import _PartitionReader
from dataflows.stack.broker import LocalBroker
from dataflows.stack.processes import ProcessTable, free_port
from tests.support.stack import new_home


def test_unreachable_broker_is_retried_and_logged_then_read(caplog) -> None:
    port = free_port()
    reader = _PartitionReader(f"127.0.0.1:{port}", "g", TopicPartition("erp.erp.customers", 0), None, 100)
    caplog.set_level(logging.WARNING, logger="dataflows.io.kafka_source")
    start = time.monotonic()
    assert reader.next_batch() == []
    assert time.monotonic() - start < 20  # returns: one partition must not stall the worker for long
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert reader.next_awake() is not None  # backs off instead of spinning

    table = ProcessTable(new_home())
    LocalBroker("kafka", "127.0.0.1", port).start(table)
    try:
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        producer.send("erp.erp.customers", key=b"k", value=b"v", partition=0)
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 30
        got = []
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
            got = reader.next_batch()
        assert [(r.key, r.value, r.offset) for r in got] == [(b"k", b"v", 0)]
        assert reader.snapshot() == 1  # resume state: the next offset
    finally:
        reader.close()
        table.stop("kafka")
