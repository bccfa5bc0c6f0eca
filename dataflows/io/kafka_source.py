"""Bytewax source over the capture topics, on confluent-kafka (librdkafka).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicCollection,
                             TopicPartition)  # fmt: skip
from confluent_kafka.admin import AdminClient

from dataflows import metrics
from dataflows.io.kafka_client import REPLAY_HEADER, build, client_config, topic_id_text

log = logging.getLogger(__name__)
# Measured against the durable local broker (README, "Kafka clients"): only a smaller prefetch cap read as
# fast as librdkafka's defaults; queued.min.messages=20000 with fetch.wait.max.ms=100 read 4-13k records/s
# against 12-66k (likely the 1 s fetch.queue.backoff.ms once the queue threshold is hit), and a shorter
# fetch wait made the broker list its store more often. The cap bounds memory: 16 MB prefetched per
# partition (one consumer each) instead of 64.
CONSUMER_TUNING = {"queued.max.messages.kbytes": 16 * 1024, "socket.connection.setup.timeout.ms": 10_000,
                   "reconnect.backoff.max.ms": 2000}  # fmt: skip
POLL_PAUSE_S = 0.02  # a partition with nothing queued is asked again after this (librdkafka fetches meanwhile)
OUT_OF_RANGE = (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)  # noqa: SLF001 - librdkafka's name


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    replay: bool = False  # re-injected by `tidemark dlq replay` (header REPLAY_HEADER)


def _replayed(headers: list[tuple[str, bytes]] | None) -> bool:
    return headers is not None and any(name == REPLAY_HEADER for name, _ in headers)


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


@dataclass(slots=True)
class StallWatch:
    """Pure judge of one partition's health, fed once per poll; it reports changes only, so each is logged once.

    Stuck: behind its end (lag > 0) with no record and no fetch error for longer than `bound_s` (a fetch that
    answers nothing and no error: seen on the local broker after kills, with offsets past the readable
    records). Idleness needs lag 0, so without this such a partition would hold the reorder buffer silently.
    Failing: its fetches answer errors (librdkafka retries them itself), until a record arrives or no error
    came for `bound_s`."""

    bound_s: float
    stuck: bool = False
    failing: str | None = None  # the last error's name (librdkafka's, e.g. UNKNOWN_SERVER_ERROR) while failing
    _quiet_since: float | None = None  # monotonic: last record, fetch error, or lag 0 (or unknown)
    _error_at: float = 0.0

    def observe(self, now: float, lag: int | None, records: bool, error: str | None) -> tuple[bool, bool]:
        """-> (stuck changed, failing changed) after this poll."""
        if records or error is not None or not lag or self._quiet_since is None:
            self._quiet_since = now
        stuck = bool(lag) and now - self._quiet_since > self.bound_s
        failing = self.failing
        if error is not None:
            failing, self._error_at = error, now
        elif records or now - self._error_at > self.bound_s:
            failing = None
        changed = (stuck != self.stuck, failing != self.failing)
        self.stuck, self.failing = stuck, failing
        return changed


def truncation_confirmed(probe: Callable[[], tuple[bool, int | None]], held: int, window_s: float,
                         clock: Callable[[], float] = time.monotonic) -> bool:
    """Whether a partition whose end was seen below the offset `held` really lost it: `probe` reads once
    more (-> a record at or past held - 1 came, the end now known) until `window_s` passed. Any such record,
    or an end back at or past `held`, refutes it. Seen under chaos: the local broker answered an end of 0
    right after its store restarted and served nothing for a few seconds; a 2 s look then took a heartbeat
    partition for truncated and re-snapshotted a whole source."""
    deadline = clock() + window_s
    while True:
        found, end = probe()
        if found or (end is not None and end >= held):
            return False
        if clock() >= deadline:
            return True


Signal = RawRecord | PartitionReady | PartitionIdle
# What a partition's snapshot keeps: the next offset and the topic id it belongs to (a bare offset, or
# None, from snapshots taken before topic ids were kept).
State = tuple[int | None, str | None] | int | None
ResetHandler = Callable[[str, int, str], None]  # (topic, partition, reason)


class TopicIds:
    """Topic ids from the broker (Kafka 2.8+ and Tansu send one), shared by a process's readers: `current`
    never blocks the worker (a refresh runs in the background at most every `max_age_s`), `fetch` waits."""

    def __init__(self, config: dict[str, object], max_age_s: float = 5.0) -> None:
        self.config, self.max_age_s = config, max_age_s
        self._admin: AdminClient | None = None
        self._known: dict[str, tuple[str | None, float]] = {}  # topic -> (id, monotonic time learned)
        self._pending: dict[str, object] = {}  # topic -> future of a describe request

    def _describe(self, topic: str) -> object:
        if self._admin is None:
            self._admin = build(AdminClient, self.config)
        return self._admin.describe_topics(TopicCollection([topic]), request_timeout=10)[topic]

    def _learn(self, topic: str, future: object) -> None:
        try:
            self._known[topic] = (topic_id_text(future.result().topic_id), time.monotonic())  # type: ignore[attr-defined]
        except KafkaException:  # broker away or topic gone: the last id stays, asked again later
            self._known[topic] = (self._known.get(topic, (None, 0.0))[0], time.monotonic())

    def current(self, topic: str) -> str | None:
        future = self._pending.get(topic)
        if future is not None and future.done():  # type: ignore[attr-defined]
            self._learn(topic, self._pending.pop(topic))
        topic_id, learned = self._known.get(topic, (None, -self.max_age_s))
        if topic not in self._pending and time.monotonic() - learned >= self.max_age_s:
            self._pending[topic] = self._describe(topic)
        return topic_id

    def fetch(self, topic: str) -> str | None:
        future = self._pending.pop(topic, None) or self._describe(topic)
        self._learn(topic, future)
        return self._known[topic][0]


class _PartitionReader(StatefulSourcePartition[Signal, State]):
    confirm_truncation_s = 10.0  # how long an end below the position must stand unrefuted to be a truncation

    def __init__(self, bootstrap: str, group: str, tp: TopicPartition, resume: State, batch: int,
                 idle_s: float = 2.0, on_reset: ResetHandler | None = None,
                 properties: Mapping[str, str] | None = None, topic_ids: TopicIds | None = None,
                 stuck_after_s: float = 60.0) -> None:  # fmt: skip
        self.bootstrap, self.group, self.batch, self.idle_s = bootstrap, group, batch, idle_s
        self.topic, self.partition = tp.topic, tp.partition
        self.next_offset, self.topic_id = resume if isinstance(resume, tuple) else (resume, None)
        self.on_reset = on_reset
        self.config = {**CONSUMER_TUNING, **client_config(
            bootstrap, properties, group_id=group, client_id=f"{group}-{tp.topic}-{tp.partition}",
            enable_auto_commit=False, enable_auto_offset_store=False, enable_partition_eof=False,
            auto_offset_reset="error")}  # an out-of-range offset is an error we handle, never a silent jump
        self.topic_ids = topic_ids or TopicIds(client_config(bootstrap, properties, client_id=f"{group}-admin"))
        self.consumer: Consumer | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._idle_until: datetime | None = None
        self._waiting_logged = False
        self._ready_sent = False
        self._delivered_at = time.monotonic()  # of its last record (or its start)
        self._idle_sent_at: float | None = None  # monotonic
        self._watch = StallWatch(stuck_after_s)
        self._fetch_error: KafkaError | None = None  # the last error the latest fetch answered

    def _connect(self) -> bool:
        """(Re)build the consumer; False while the broker or topic is not there yet."""
        if time.monotonic() < self._retry_at:
            return False
        consumer = build(Consumer, self.config)
        try:
            meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if meta is None or meta.error is not None or self.partition not in meta.partitions:
                consumer.close()
                if not self._waiting_logged:  # once: the capture creates topics on its first change
                    log.info("waiting for %s[%d] to exist", self.topic, self.partition)
                    self._waiting_logged = True
                self._schedule_retry()
                return False
            self._check_reset(consumer)
            self._seek(consumer, self.next_offset)
        except KafkaException as e:
            consumer.close()  # never leak a connection per retry
            log.warning("Kafka at %s unreachable for %s[%d]: %s; retrying in %.1fs",
                        self.bootstrap, self.topic, self.partition, e, self._backoff)  # fmt: skip
            self._schedule_retry()
            return False
        self.consumer = consumer
        self._backoff = 0.5
        return True

    def _seek(self, consumer: Consumer, offset: int | None) -> None:
        consumer.assign([TopicPartition(self.topic, self.partition, OFFSET_BEGINNING if offset is None else offset)])

    def _check_reset(self, consumer: Consumer) -> None:
        """On (re)connect: compare the topic id and the partition's offsets with the position held."""
        topic_id = self.topic_ids.fetch(self.topic)
        if self.next_offset is not None:
            start, end = consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), timeout=5)
            if self.topic_id and topic_id and topic_id != self.topic_id:
                self._reset("recreated", end, f"topic id {self.topic_id} -> {topic_id}")
            elif end < self.next_offset and not self._has_record(consumer, self.next_offset - 1):
                self._reset("truncated", end, "the partition ends below the offset held")
            elif start > self.next_offset:
                self._reset("expired", end, f"its records before offset {start} were deleted unread")
        self.topic_id = topic_id or self.topic_id  # an unanswered describe keeps the id held

    def _has_record(self, consumer: Consumer, offset: int) -> bool:
        """Whether the partition still holds `offset` (or a later record), then back to the position.
        An end offset alone is not proof of a truncation: the local broker's can read short for a while
        (after a burst of writes, after its store restarted), and a false reset re-snapshots a source."""
        self._seek(consumer, offset)
        tp = TopicPartition(self.topic, self.partition)

        def probe() -> tuple[bool, int | None]:
            found = any(m.error() is None and m.offset() >= offset for m in consumer.consume(1, timeout=0.2))
            end = consumer.get_watermark_offsets(tp, cached=True)[1]
            return found, end if end >= 0 else None

        truncated = truncation_confirmed(probe, offset + 1, self.confirm_truncation_s)
        self._seek(consumer, self.next_offset if self.next_offset is not None else offset)
        return not truncated

    def _reset(self, reason: str, end: int | None, detail: str) -> None:
        """Never a silent jump: log, count, apply the policy, and read the partition from its start."""
        log.warning("capture partition %s[%d] was reset (%s: %s): the dataflow held offset %s, the partition "
                    "now ends at %s; reading it again from its start%s", self.topic, self.partition, reason,
                    detail, self.next_offset, end, "" if self.on_reset else "; no reset policy")  # fmt: skip
        metrics.SOURCE_RESETS.labels(self.topic, str(self.partition), reason).inc()
        self.next_offset = None
        if self.on_reset is not None:
            try:
                self.on_reset(self.topic, self.partition, reason)
            except Exception:  # the policy's failure must not stop the flow; it is logged and visible
                log.exception("reset policy failed for %s[%d]", self.topic, self.partition)

    def _end(self) -> int | None:
        """The partition's end as the last fetch answered it (None before any answer)."""
        assert self.consumer is not None
        end = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)[1]
        return end if end >= 0 else None

    def _running_reset(self, consumer: Consumer, records: list[Message]) -> bool:
        """A reset seen while reading: the topic's id changed, or its end fell below the position held."""
        topic_id = self.topic_ids.current(self.topic)
        if self.next_offset is None and topic_id != self.topic_id:  # nothing read, nothing skipped
            self.topic_id = topic_id
            return False
        if self.topic_id and topic_id and topic_id != self.topic_id:
            self._reset("recreated", self._end(), f"topic id {self.topic_id} -> {topic_id}")
        elif (not records and (end := self._end()) is not None and end < (self.next_offset or 0)
              and not self._has_record(consumer, (self.next_offset or 0) - 1)):  # fmt: skip
            self._reset("truncated", end, "the partition ends below the offset held")
        else:
            return False
        self.topic_id = topic_id
        self._seek(consumer, None)
        return True

    def _schedule_retry(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._idle_until = datetime.now(timezone.utc) + timedelta(seconds=self._backoff)
        self._backoff = min(self._backoff * 2, 2.0)

    def _fetch(self) -> list[Message] | None:
        """What librdkafka has fetched so far (never waits); None after an out-of-range answer (a reset)."""
        assert self.consumer is not None
        records, self._fetch_error = [], None
        for m in self.consumer.consume(self.batch, timeout=0):
            err = m.error()
            if err is None:
                records.append(m)
            elif err.code() in OUT_OF_RANGE:
                self._reset("out_of_range", self._end(), f"the broker answered offset out of range ({err.str()})")
                self._seek(self.consumer, None)
                return None
            else:  # librdkafka retries by itself: counted here, logged by _judge once per change
                self._fetch_error = err
                metrics.SOURCE_FETCH_ERRORS.labels(self.topic, str(self.partition), err.name()).inc()
        return records

    def next_batch(self) -> list[Signal]:
        if self.consumer is None and not self._connect():
            return []
        assert self.consumer is not None
        records = self._fetch()
        if records is None or self._running_reset(self.consumer, records):
            return []  # what was fetched belongs to the old position: read from the start instead
        if records:
            self.next_offset = records[-1].offset() + 1
        end = self._end()
        lag = None
        if end is not None:
            lag = max(end - (self.next_offset if self.next_offset is not None else 0), 0)
            metrics.CONSUMER_LAG.labels(self.topic, str(self.partition)).set(lag)
        self._judge(bool(records), lag)
        # Asked again at once while records flow; after a short pause when nothing was queued.
        self._idle_until = None if records else datetime.now(timezone.utc) + timedelta(seconds=POLL_PAUSE_S)
        return self._signals(records, lag) + [
            RawRecord(self.topic, self.partition, r.offset(), r.key(), r.value(), _replayed(r.headers()))
            for r in records
        ]

    def _judge(self, records: bool, lag: int | None) -> None:
        """Log a partition that became stuck or failing, or recovered from it, once per change."""
        error = self._fetch_error.name() if self._fetch_error is not None else None  # its text may vary: not state
        stuck_changed, failing_changed = self._watch.observe(time.monotonic(), lag, records, error)
        if not (stuck_changed or failing_changed):
            return
        assert self.consumer is not None
        start, end = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
        where = f"{self.topic}[{self.partition}] at offset {self.next_offset} (partition offsets {start}..{end})"
        if stuck_changed and self._watch.stuck:
            log.warning("%s is stuck: behind its end and no record nor fetch error for %.0fs; the reorder "
                        "buffer waits for it", where, self._watch.bound_s)  # fmt: skip
        elif stuck_changed:
            log.warning("%s is no longer stuck (%s)", where, "records arrive" if records else
                        "fetches answer an error" if error else "caught up")  # fmt: skip
        if failing_changed and self._fetch_error is not None:  # failing starts or changes only on an error
            log.warning("%s: fetches fail (%s: %s); librdkafka retries", where, error, self._fetch_error.str())
        elif failing_changed:
            log.warning("%s: fetches work again", where)
        metrics.SOURCE_STUCK.labels(self.topic, str(self.partition)).set(int(self._watch.stuck))

    def _signals(self, records: list[Message], lag: int | None) -> list[Signal]:
        """PartitionReady once per start, PartitionIdle every idle timeout while at the end and quiet."""
        out: list[Signal] = []
        if not self._ready_sent and (records or lag == 0):
            out.append(PartitionReady(self.topic, self.partition))
            self._ready_sent = True
        now = time.monotonic()
        if records:
            self._delivered_at, self._idle_sent_at = now, None
        elif (lag == 0 and now - self._delivered_at >= self.idle_s
              and (self._idle_sent_at is None or now - self._idle_sent_at >= self.idle_s)):  # fmt: skip
            out.append(PartitionIdle(self.topic, self.partition, time.time()))
            self._idle_sent_at = now
        return out

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> State:
        # Also tell the consumer group, so kafka-consumer-groups and lag exporters see our progress.
        if self.consumer is not None and self.next_offset is not None:
            try:
                self.consumer.commit(offsets=[TopicPartition(self.topic, self.partition, self.next_offset)],
                                     asynchronous=True)  # fmt: skip
            except KafkaException as e:
                log.warning("committing %s[%d] to group %s failed: %s", self.topic, self.partition, self.group, e)
        return (self.next_offset, self.topic_id)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


class CaptureSource(FixedPartitionedSource[Signal, State]):
    """`topics` maps each capture topic to its partition count (known from config: the capture creates
    topics with it), so partitions can be listed before the topics exist. `idle_s`: see PartitionIdle.
    `batch` bounds what one partition hands over per poll: Bytewax has no backpressure, and with 2,000
    a backlog reached the core in batches of 12,000+ changes whose outputs took over 1 GiB at once.
    `on_reset`: the reset policy, called with topic, partition and reason when a reset is detected.
    `properties`: the user's librdkafka properties (TLS, SASL, tuning), see io/kafka_client.py.
    `stuck_after_s`: see StallWatch."""

    def __init__(self, bootstrap: str, topics: dict[str, int], group: str, batch: int = 1000,
                 idle_s: float = 2.0, on_reset: ResetHandler | None = None,
                 properties: Mapping[str, str] | None = None, stuck_after_s: float = 60.0) -> None:  # fmt: skip
        self.bootstrap, self.topics, self.group, self.batch, self.idle_s = bootstrap, topics, group, batch, idle_s
        self.on_reset, self.properties, self.stuck_after_s = on_reset, dict(properties or {}), stuck_after_s
        self._topic_ids: TopicIds | None = None  # one per process, built with its first partition

    def list_parts(self) -> list[str]:
        return [f"{t}#{p}" for t, n in sorted(self.topics.items()) for p in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: State) -> _PartitionReader:
        topic, _, partition = for_part.rpartition("#")
        if self._topic_ids is None:
            self._topic_ids = TopicIds(client_config(self.bootstrap, self.properties, client_id=f"{self.group}-admin"))
        return _PartitionReader(self.bootstrap, self.group, TopicPartition(topic, int(partition)), resume_state,
                                self.batch, self.idle_s, self.on_reset, self.properties, self._topic_ids,
                                self.stuck_after_s)  # fmt: skip
