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


class _PartitionReader(StatefulSourcePartition[RawRecord, int | None]):
    def __init__(self, bootstrap: str, group: str, tp: TopicPartition, resume: int | None, batch: int) -> None:
        self.bootstrap, self.group, self.tp, self.batch = bootstrap, group, tp, batch
        self.next_offset = resume
        self.consumer: KafkaConsumer | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._idle_until: datetime | None = None
        self._waiting_logged = False

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

    def next_batch(self) -> list[RawRecord]:
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
        if end is not None:
            lag = end - (self.next_offset if self.next_offset is not None else 0)
            metrics.CONSUMER_LAG.labels(self.tp.topic, str(self.tp.partition)).set(max(lag, 0))
            self._idle_until = None
        else:
            self._idle_until = datetime.now(timezone.utc) + timedelta(milliseconds=50)
        return [RawRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records]

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


class CaptureSource(FixedPartitionedSource[RawRecord, int | None]):
    """`topics` maps each capture topic to its partition count (known from config: the capture creates
    topics with it), so partitions can be listed before the topics exist."""

    def __init__(self, bootstrap: str, topics: dict[str, int], group: str, batch: int = 2000) -> None:
        self.bootstrap, self.topics, self.group, self.batch = bootstrap, topics, group, batch

    def list_parts(self) -> list[str]:
        return [f"{t}#{p}" for t, n in sorted(self.topics.items()) for p in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        topic, _, partition = for_part.rpartition("#")
        return _PartitionReader(self.bootstrap, self.group, TopicPartition(topic, int(partition)), resume_state,
                                self.batch)  # fmt: skip
