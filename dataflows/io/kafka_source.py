"""Bytewax source over the capture topics, on kafka-python.

One Bytewax partition per Kafka partition of the topics the connector files declare. The next offset
is kept in Bytewax snapshots (a resumed flow starts exactly after the last snapshot) and committed to a
consumer group as well, so standard lag tools see progress. An unreachable broker is retried with
backoff and logged; a topic that does not exist yet is waited for. Never a silent hang.

A reset is never skipped silently: the reader keeps the partition's topic id with its offset, and a
topic recreated under the same name (a new id), a partition that now ends below the offset it holds
(truncated, or a broker that lost its data), one whose records expired before they were read, or an
offset-out-of-range answer is logged with topic, partition and offsets, counted in
`tidemark_source_resets_total`, handed to the reset policy (`on_reset`: by default the captures take a
new snapshot, see capture/resnapshot.py), and the partition is read again from its start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, OffsetOutOfRangeError
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
# What a partition's snapshot keeps: the next offset and the topic id it belongs to (a bare offset, or
# None, from snapshots taken before topic ids were kept).
State = tuple[int | None, str | None] | int | None
ResetHandler = Callable[[str, int, str], None]  # (topic, partition, reason)


def _topic_id(consumer: KafkaConsumer, topic: str) -> str | None:
    """The topic's id from the consumer's metadata (Kafka 2.8+ and Tansu send one; None otherwise)."""
    topic_id = consumer._client.cluster.topic_id(topic)  # noqa: SLF001 - kafka-python exposes it only here
    return str(topic_id) if topic_id is not None and topic_id.int else None


class _PartitionReader(StatefulSourcePartition[Signal, State]):
    def __init__(self, bootstrap: str, group: str, tp: TopicPartition, resume: State, batch: int,
                 idle_s: float = 2.0, on_reset: ResetHandler | None = None) -> None:  # fmt: skip
        self.bootstrap, self.group, self.tp, self.batch, self.idle_s = bootstrap, group, tp, batch, idle_s
        self.next_offset, self.topic_id = resume if isinstance(resume, tuple) else (resume, None)
        self.on_reset = on_reset
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
            # auto_offset_reset="none": an out-of-range offset is an error we handle, never a silent jump;
            # metadata refreshed every 5 s, so a topic recreated under a running reader shows its new id.
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
                                     auto_offset_reset="none", fetch_max_wait_ms=100, max_poll_records=self.batch,
                                     metadata_max_age_ms=5000,
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
            self._check_reset(consumer)
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

    def _check_reset(self, consumer: KafkaConsumer) -> None:
        """On (re)connect: compare the topic id and the partition's offsets with the position held."""
        topic_id = _topic_id(consumer, self.tp.topic)
        if self.next_offset is not None:
            end = consumer.end_offsets([self.tp])[self.tp]
            start = consumer.beginning_offsets([self.tp])[self.tp]
            if self.topic_id and topic_id and topic_id != self.topic_id:
                self._reset("recreated", end, f"topic id {self.topic_id} -> {topic_id}")
            elif end < self.next_offset and not self._has_record(consumer, self.next_offset - 1):
                self._reset("truncated", end, "the partition ends below the offset held")
            elif start > self.next_offset:
                self._reset("expired", end, f"its records before offset {start} were deleted unread")
        self.topic_id = topic_id

    def _has_record(self, consumer: KafkaConsumer, offset: int) -> bool:
        """Whether the partition still holds `offset` (or a later record), then back to the position.
        An end offset alone is not proof of a truncation: the local broker's can read short for a while
        after a burst of writes, and a false reset would re-read and re-snapshot everything."""
        consumer.seek(self.tp, offset)
        deadline = time.monotonic() + 2.0
        found = False
        try:
            while not found and time.monotonic() < deadline:
                found = any(r.offset >= offset for r in consumer.poll(timeout_ms=200, max_records=1).get(self.tp, []))
        except OffsetOutOfRangeError:
            found = False
        consumer.seek(self.tp, self.next_offset if self.next_offset is not None else offset)
        return found

    def _reset(self, reason: str, end: int | None, detail: str) -> None:
        """Never a silent jump: log, count, apply the policy, and read the partition from its start."""
        log.warning("capture partition %s[%d] was reset (%s: %s): the dataflow held offset %s, the partition "
                    "now ends at %s; reading it again from its start%s", self.tp.topic, self.tp.partition, reason,
                    detail, self.next_offset, end, "" if self.on_reset else "; no reset policy")  # fmt: skip
        metrics.SOURCE_RESETS.labels(self.tp.topic, str(self.tp.partition), reason).inc()
        self.next_offset = None
        if self.on_reset is not None:
            try:
                self.on_reset(self.tp.topic, self.tp.partition, reason)
            except Exception:  # the policy's failure must not stop the flow; it is logged and visible
                log.exception("reset policy failed for %s[%d]", self.tp.topic, self.tp.partition)

    def _running_reset(self, consumer: KafkaConsumer, records: list[object]) -> bool:
        """A reset seen while reading: the topic's id changed, or its end fell below the position held."""
        topic_id = _topic_id(consumer, self.tp.topic)
        if self.next_offset is None and topic_id != self.topic_id:  # nothing read, nothing skipped
            self.topic_id = topic_id
            return False
        if self.topic_id and topic_id and topic_id != self.topic_id:
            self._reset("recreated", consumer.highwater(self.tp), f"topic id {self.topic_id} -> {topic_id}")
        elif (not records and (end := consumer.highwater(self.tp)) is not None and end < (self.next_offset or 0)
              and not self._has_record(consumer, (self.next_offset or 0) - 1)):  # fmt: skip
            self._reset("truncated", end, "the partition ends below the offset held")
        else:
            return False
        self.topic_id = topic_id
        consumer.seek_to_beginning(self.tp)
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
        except OffsetOutOfRangeError:
            self._reset("out_of_range", self.consumer.highwater(self.tp), "the broker answered offset out of range")
            self.consumer.seek_to_beginning(self.tp)
            return []
        except KafkaError as e:
            log.warning("fetch from %s[%d] failed: %s; reconnecting", self.tp.topic, self.tp.partition, e)
            self.consumer.close()
            self.consumer = None
            self._schedule_retry()
            return []
        records = polled.get(self.tp, [])
        if self._running_reset(self.consumer, records):
            return []  # what was fetched belongs to the old position: read from the start instead
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

    def snapshot(self) -> State:
        # Also tell the consumer group, so kafka-consumer-groups and lag exporters see our progress.
        if self.consumer is not None and self.next_offset is not None:
            try:
                self.consumer.commit_async({self.tp: OffsetAndMetadata(self.next_offset, "", -1)})
            except KafkaError as e:
                log.warning("committing %s[%d] to group %s failed: %s", self.tp.topic, self.tp.partition, self.group, e)
        return (self.next_offset, self.topic_id)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


class CaptureSource(FixedPartitionedSource[Signal, State]):
    """`topics` maps each capture topic to its partition count (known from config: the capture creates
    topics with it), so partitions can be listed before the topics exist. `idle_s`: see PartitionIdle.
    `batch` bounds what one partition hands over per poll: Bytewax has no backpressure, and with 2,000
    a backlog reached the core in batches of 12,000+ changes whose outputs took over 1 GiB at once.
    `on_reset`: the reset policy, called with topic, partition and reason when a reset is detected."""

    def __init__(self, bootstrap: str, topics: dict[str, int], group: str, batch: int = 1000,
                 idle_s: float = 2.0, on_reset: ResetHandler | None = None) -> None:  # fmt: skip
        self.bootstrap, self.topics, self.group, self.batch, self.idle_s = bootstrap, topics, group, batch, idle_s
        self.on_reset = on_reset

    def list_parts(self) -> list[str]:
        return [f"{t}#{p}" for t, n in sorted(self.topics.items()) for p in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: State) -> _PartitionReader:
        topic, _, partition = for_part.rpartition("#")
        return _PartitionReader(self.bootstrap, self.group, TopicPartition(topic, int(partition)), resume_state,
                                self.batch, self.idle_s, self.on_reset)  # fmt: skip
