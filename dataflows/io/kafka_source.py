"""Bytewax source over the capture topics, on kafka-python.

One Bytewax partition per Kafka partition of the topics the connector files declare. The next offset
is kept in Bytewax snapshots (a resumed flow starts exactly after the last snapshot) and committed to a
consumer group as well, so standard lag tools see progress. An unreachable broker is retried with
backoff and logged; a topic that does not exist yet is waited for. Never a silent hang.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from dataflows import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class PartitionReady:
    """Sent once per partition and start, before or with its first records: it has delivered records,
    or it was read up to its end. Lets the core tell "not read yet" from "quiet"."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class PartitionIdle:
    """Sent when a partition has been read up to its end and nothing new came for the idle timeout,
    and again every idle timeout while it stays so. Judged here, at wall-clock `judged_at`, where
    "quiet" and "not read yet" differ: a busy downstream step cannot tell them apart by its own clock.
    Repeated because a judgement can go stale: a capture back from an outage writes its backlog into
    partitions judged idle before it came back, and the core then waits for a fresh judgement."""

    topic: str
    partition: int
    judged_at: float


Signal = RawRecord | PartitionReady | PartitionIdle


class _PartitionReader(StatefulSourcePartition[Signal, int | None]):
    def __init__(self, bootstrap: str, group: str, tp: TopicPartition, resume: int | None, batch: int,
                 idle_s: float = 2.0) -> None:  # fmt: skip
        self.bootstrap, self.group, self.tp, self.batch, self.idle_s = bootstrap, group, tp, batch, idle_s
        self.next_offset = resume
        self.consumer: KafkaConsumer | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._idle_until: datetime | None = None
        self._waiting_logged = False
        self._ready_sent = False
        self._delivered_at = time.monotonic()  # of its last record (or its start)
        self._idle_sent_at: float | None = None  # monotonic

    def _connect(self) -> bool:
        """(Re)build the consumer; False while the broker or topic is not there yet."""
        if time.monotonic() < self._retry_at:
            return False
        consumer = None
        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
                                     auto_offset_reset="earliest", fetch_max_wait_ms=100, max_poll_records=self.batch,
                                     request_timeout_ms=30000, bootstrap_timeout_ms=10000,  # a down broker must not stall the worker for long
                                     client_id=f"{self.group}-{self.tp.topic}-{self.tp.partition}")  # fmt: skip
            partitions = consumer.partitions_for_topic(self.tp.topic)
            if not partitions or self.tp.partition not in partitions:
                consumer.close()
                if not self._waiting_logged:  # once: the capture creates topics on its first change
                    log.info("waiting for %s[%d] to exist", self.tp.topic, self.tp.partition)
                    self._waiting_logged = True
                self._schedule_retry()
                return False
            consumer.assign([self.tp])
            if self.next_offset is None:
                consumer.seek_to_beginning(self.tp)
            else:
                consumer.seek(self.tp, self.next_offset)
        except KafkaError as e:
            if consumer is not None:
                consumer.close()  # never leak a connection per retry
            log.warning("Kafka at %s unreachable for %s[%d]: %s; retrying in %.1fs",
                        self.bootstrap, self.tp.topic, self.tp.partition, e, self._backoff)  # fmt: skip
            self._schedule_retry()
            return False
        self.consumer = consumer
        self._backoff = 0.5
        return True

    def _schedule_retry(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._idle_until = datetime.now(timezone.utc) + timedelta(seconds=self._backoff)
        self._backoff = min(self._backoff * 2, 2.0)

    def next_batch(self) -> list[Signal]:
        if self.consumer is None and not self._connect():
            return []
        assert self.consumer is not None
        try:
            polled = self.consumer.poll(timeout_ms=50, max_records=self.batch)
        except KafkaError as e:
            log.warning("fetch from %s[%d] failed: %s; reconnecting", self.tp.topic, self.tp.partition, e)
            self.consumer.close()
            self.consumer = None
            self._schedule_retry()
            return []
        records = polled.get(self.tp, [])
        if records:
            self.next_offset = records[-1].offset + 1
        end = self.consumer.highwater(self.tp)
        lag = None
        if end is not None:
            lag = max(end - (self.next_offset if self.next_offset is not None else 0), 0)
            metrics.CONSUMER_LAG.labels(self.tp.topic, str(self.tp.partition)).set(lag)
            self._idle_until = None
        else:
            self._idle_until = datetime.now(timezone.utc) + timedelta(milliseconds=50)
        out: list[Signal] = []
        if not self._ready_sent and (records or lag == 0):
            out.append(PartitionReady(self.tp.topic, self.tp.partition))
            self._ready_sent = True
        now = time.monotonic()
        if records:
            self._delivered_at, self._idle_sent_at = now, None
        elif (lag == 0 and now - self._delivered_at >= self.idle_s
              and (self._idle_sent_at is None or now - self._idle_sent_at >= self.idle_s)):  # fmt: skip
            out.append(PartitionIdle(self.tp.topic, self.tp.partition, time.time()))
            self._idle_sent_at = now
        out += [RawRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
        return out

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> int | None:
        # Also tell the consumer group, so kafka-consumer-groups and lag exporters see our progress.
        if self.consumer is not None and self.next_offset is not None:
            try:
                self.consumer.commit_async({self.tp: OffsetAndMetadata(self.next_offset, "", -1)})
            except KafkaError as e:
                log.warning("committing %s[%d] to group %s failed: %s", self.tp.topic, self.tp.partition, self.group, e)
        return self.next_offset

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


class CaptureSource(FixedPartitionedSource[Signal, int | None]):
    """`topics` maps each capture topic to its partition count (known from config: the capture creates
    topics with it), so partitions can be listed before the topics exist. `idle_s`: see PartitionIdle.
    `batch` bounds what one partition hands over per poll: Bytewax has no backpressure, and with 2,000
    a backlog reached the core in batches of 12,000+ changes whose outputs took over 1 GiB at once."""

    def __init__(self, bootstrap: str, topics: dict[str, int], group: str, batch: int = 1000,
                 idle_s: float = 2.0) -> None:  # fmt: skip
        self.bootstrap, self.topics, self.group, self.batch, self.idle_s = bootstrap, topics, group, batch, idle_s

    def list_parts(self) -> list[str]:
        return [f"{t}#{p}" for t, n in sorted(self.topics.items()) for p in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        topic, _, partition = for_part.rpartition("#")
        return _PartitionReader(self.bootstrap, self.group, TopicPartition(topic, int(partition)), resume_state,
                                self.batch, self.idle_s)  # fmt: skip
