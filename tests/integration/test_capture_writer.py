"""The capture's writer puts each key where Kafka's Java client would, within the partitions Tidemark
created topics with, and passes the user's librdkafka properties through."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.capture.kafka_writer import KafkaBatchWriter, OutRecord
from dataflows.io.kafka_client import KafkaConfigError, ensure_topics, partition_for
from dataflows.stack.broker import LocalBroker
from dataflows.stack.processes import ProcessTable, free_port
from dataflows.stack.scratch import new_home


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    port, home = free_port(), new_home()
    table = ProcessTable(home)
    LocalBroker("kafka", "127.0.0.1", port).start(table)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        table.stop("kafka")
        shutil.rmtree(home, ignore_errors=True)


def placed(bootstrap: str, topic: str, partitions: int, expected: int) -> dict[bytes, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: dict[bytes, int] = {}
    deadline = time.monotonic() + 30
    while len(found) < expected and time.monotonic() < deadline:
        found.update({m.key(): m.partition() for m in consumer.consume(1000, timeout=0.5) if m.error() is None})
    consumer.close()
    return found


@pytest.mark.parametrize(("topic", "broker_partitions"), [("placement.same.v1", 3), ("placement.more.v1", 4)])
def test_each_key_lands_where_kafkas_default_partitioner_puts_it(bootstrap: str, topic: str,
                                                                 broker_partitions: int) -> None:  # fmt: skip
    # 4: a topic the broker auto-created with its own count; records must stay within Tidemark's 3.
    ensure_topics(bootstrap, {topic: broker_partitions})
    writer = KafkaBatchWriter(bootstrap, 3, client_id="placement")
    keys = [b'{"id":%d}' % i for i in range(300)]
    writer.write_with_retry([OutRecord(topic, k, b"v") for k in keys])
    writer.close()
    assert placed(bootstrap, topic, broker_partitions, len(keys)) == {k: partition_for(k, 3) for k in keys}


def test_an_unknown_client_property_stops_the_writer_with_its_name(bootstrap: str) -> None:
    with pytest.raises(KafkaConfigError, match="no.such.property"):
        KafkaBatchWriter(bootstrap, 3, client_id="bad", properties={"no.such.property": "1"})


def test_a_tuning_property_passes_through(bootstrap: str) -> None:
    tuning = {"linger.ms": "50", "compression.type": "lz4"}
    writer = KafkaBatchWriter(bootstrap, 3, client_id="tuned", properties=tuning)
    writer.write_with_retry([OutRecord("placement.tuned.v1", b"k", b"v" * 1000)])
    writer.close()
    assert placed(bootstrap, "placement.tuned.v1", 3, 1) == {b"k": partition_for(b"k", 3)}
