"""The capture-topic source against a broker that is not there, then appears: retried with backoff and
logged, never a silent hang; it then reads from the start."""

from __future__ import annotations

import logging
import shutil
import time

from confluent_kafka import Producer, TopicPartition

from dataflows import metrics
from dataflows.io.kafka_source import PartitionIdle, PartitionReady, RawRecord, _PartitionReader
from dataflows.stack.broker import LocalBroker
from dataflows.stack.processes import ProcessTable, free_port
from dataflows.stack.scratch import new_home


def test_unreachable_broker_is_retried_and_logged_then_read(caplog) -> None:
    port = free_port()
    reader = _PartitionReader(f"127.0.0.1:{port}", "g", TopicPartition("erp.erp.customers", 0), None, 100,
                              idle_s=1.0)  # fmt: skip
    caplog.set_level(logging.WARNING, logger="dataflows.io.kafka_source")
    start = time.monotonic()
    assert reader.next_batch() == []
    assert time.monotonic() - start < 20  # returns: one partition must not stall the worker for long
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert reader.next_awake() is not None  # backs off instead of spinning

    home = new_home()
    table = ProcessTable(home)
    LocalBroker("kafka", "127.0.0.1", port).start(table)
    try:
        _produce(port, [b"v"])
        deadline = time.monotonic() + 30
        got: list = []
        while not any(isinstance(r, RawRecord) for r in got) and time.monotonic() < deadline:
            time.sleep(0.2)
            got += reader.next_batch()
        # Ready once, with or before its first records: the core then knows it has been read.
        assert got[0] == PartitionReady("erp.erp.customers", 0)
        assert [(r.key, r.value, r.offset) for r in got[1:]] == [(b"k", b"v", 0)]
        assert reader.snapshot()[0] == 1  # resume state: the next offset (and the topic's id)
        assert not any(isinstance(r, PartitionReady) for r in reader.next_batch())

        # At its end and nothing new for the idle timeout: reported idle, and again every idle timeout
        # while it stays so (a judgement can go stale); a delivery starts the count again.
        def idle_reports(seconds: float) -> list[float]:
            deadline, judged = time.monotonic() + seconds, []
            while time.monotonic() < deadline:
                judged += [r.judged_at for r in reader.next_batch() if isinstance(r, PartitionIdle)]
            return judged

        judged = idle_reports(3.5)  # its last delivery was just before: reports near 1, 2 and 3 s
        # judged_at is wall-clock, the judgement monotonic: the two clocks differ by a few microseconds.
        assert len(judged) == 3 and all(b - a >= 0.99 for a, b in zip(judged, judged[1:], strict=False))
        _produce(port, [b"v2"], key=b"k2")
        delivered = None
        while delivered is None:
            batch = reader.next_batch()
            delivered = time.time() if any(isinstance(r, RawRecord) for r in batch) else None
        judged = idle_reports(2.5)
        assert len(judged) in (1, 2) and judged[0] - delivered >= 0.9
    finally:
        reader.close()
        table.stop("kafka")
        shutil.rmtree(home, ignore_errors=True)


def _produce(port: int, values: list[bytes], key: bytes = b"k") -> None:
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all"})
    for v in values:
        producer.produce("erp.erp.customers", v, key, 0)
    assert producer.flush(30) == 0


def _read(reader: _PartitionReader, n: int) -> list[RawRecord]:
    got: list[RawRecord] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        got += [r for r in reader.next_batch() if isinstance(r, RawRecord)]
    return got


def test_a_broker_that_lost_its_topics_is_a_reset_detected_logged_counted_and_read_from_the_start(caplog) -> None:
    """The broker restarts empty and the capture writes again before the reader notices: the new topic
    even holds more records than the offset the reader kept, so only the topic id tells. Never a skip."""
    port, home = free_port(), new_home()
    table = ProcessTable(home)
    broker = LocalBroker("kafka", "127.0.0.1", port)
    broker.start(table)
    resets: list[tuple[str, int, str]] = []
    reader = _PartitionReader(f"127.0.0.1:{port}", "g", TopicPartition("erp.erp.customers", 0), None, 100,
                              on_reset=lambda *a: resets.append(a))  # fmt: skip
    caplog.set_level(logging.WARNING, logger="dataflows.io.kafka_source")
    counted = metrics.SOURCE_RESETS.labels("erp.erp.customers", "0", "recreated")
    before = counted._value.get()
    try:
        _produce(port, [b"a", b"b"])
        assert [r.value for r in _read(reader, 2)] == [b"a", b"b"]
        state = reader.snapshot()
        reader.close()
        table.stop("kafka")
        broker.start(table)  # empty: everything is gone
        _produce(port, [b"c", b"d", b"e"])  # ends at 3, beyond the offset 2 the reader keeps
        resumed = _PartitionReader(f"127.0.0.1:{port}", "g", TopicPartition("erp.erp.customers", 0), state, 100,
                                   on_reset=lambda *a: resets.append(a))  # fmt: skip
        assert [r.value for r in _read(resumed, 3)] == [b"c", b"d", b"e"]  # from the start, nothing skipped
        assert resets == [("erp.erp.customers", 0, "recreated")]
        assert counted._value.get() == before + 1
        line = next(r.getMessage() for r in caplog.records if "was reset" in r.getMessage())
        # (Tansu's end offset can read short right after a produce: the line says what it answered.)
        assert "erp.erp.customers[0]" in line and "held offset 2" in line and "now ends at" in line

        # A running reader, the broker wiped under it, fewer records than it had read: truncated.
        table.stop("kafka")
        broker.start(table)
        _produce(port, [b"f"])
        assert [r.value for r in _read(resumed, 1)] == [b"f"]
        assert resets[-1][2] in ("recreated", "truncated") and len(resets) == 2
        resumed.close()
    finally:
        table.stop("kafka")
        shutil.rmtree(home, ignore_errors=True)


def test_a_partition_answering_nothing_below_its_end_is_logged_stuck_once_then_recovered(caplog) -> None:
    """Fetches that answer no record and no error below the partition's end (the local broker's after kills;
    made here by pausing the reader's fetches): one warning with the offsets, the gauge, then one recovery."""
    port, home = free_port(), new_home()
    table = ProcessTable(home)
    LocalBroker("kafka", "127.0.0.1", port).start(table)
    tp = TopicPartition("erp.erp.customers", 0)
    reader = _PartitionReader(f"127.0.0.1:{port}", "g", tp, None, 1, stuck_after_s=1.0)
    caplog.set_level(logging.WARNING, logger="dataflows.io.kafka_source")
    stuck = metrics.SOURCE_STUCK.labels("erp.erp.customers", "0")
    try:
        _produce(port, [b"a", b"b", b"c"])
        assert [r.value for r in _read(reader, 1)] == [b"a"]  # one a poll: the fetch answered its end, 3
        assert reader.consumer is not None
        reader.consumer.pause([tp])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            reader.next_batch()
        lines = [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()]
        assert len(lines) == 1 and "erp.erp.customers[0] at offset 1 (partition offsets 0..3) is stuck" in lines[0]
        assert stuck._value.get() == 1
        reader.consumer.resume([tp])
        assert [r.value for r in _read(reader, 2)] == [b"b", b"c"]
        lines = [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()]
        assert len(lines) == 2 and "no longer stuck (records arrive)" in lines[1] and stuck._value.get() == 0
    finally:
        reader.close()
        table.stop("kafka")
        shutil.rmtree(home, ignore_errors=True)
