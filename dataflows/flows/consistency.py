"""The Tidemark dataflow: capture topics in, consistency core, governed writes out.

    capture topics ─> decode+map ─┬─> core (reorder, dedupe, identity, ownership, lifecycle) ─> route ─┬─> Kafka outputs
                                  └─> dead letters ───────────────────────────────────────────────────┤─> dead_letters table
                                                                                                       ├─> customer_360
                                                                                                       └─> CRM write-back

Decode and map run on every worker; the core is one keyed step (its reorder watermark and identity
index span all customers); the sinks run on every worker.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from dataflows import metrics
from dataflows.config.connectors import ConnectorConfig, capture_topics
from dataflows.core.core import ConsistencyCore, CoreOutput
from dataflows.core.inputs import CoreInput, Heartbeat, SourceSilent, StreamIdle, StreamReady
from dataflows.ingest.decode import DecodeError, decode, heartbeat_time
from dataflows.core.change import CanonicalChange
from dataflows.ingest.mapping import MappingError, SourceMapper
from dataflows.core.policy import Policy
from dataflows.io.kafka_source import CaptureSource, PartitionIdle, PartitionReady, RawRecord, Signal
from dataflows.io.sinks import KafkaOutputSink, WriterSink
from dataflows.memory import return_free_memory
from dataflows.outputs import KafkaOut, dead_letter_out, route
from dataflows.stewardship import STEWARDSHIP_TOPIC, StewardRecordError, parse_command
from dataflows.targets.crm_writeback import CrmWriter
from dataflows.targets.customer_360 import Customer360Writer
from dataflows.targets.dead_letters import DeadLetterWriter, dead_letter_row


@dataclass(frozen=True)
class FlowConfig:
    bootstrap: str
    connectors: dict[str, ConnectorConfig]
    policy: Policy
    partitions: int  # of the capture topics (unless a connector sets its own) and the output topics
    group: str
    ops_conninfo: str
    crm: dict[str, Any]  # host, port, user, password, database
    max_record_bytes: int = 1024 * 1024
    on_reset: Callable[[str, int, str], None] | None = None  # the reset policy (see io/kafka_source.py)
    kafka_properties: dict[str, str] = field(default_factory=dict)  # librdkafka properties (io/kafka_client.py)
    stuck_after_s: float = 60.0  # see io/kafka_source.py, StallWatch


class Decoder:
    """Raw capture record -> canonical change, or a dead letter. Never raises for bad input."""

    def __init__(self, connectors: dict[str, ConnectorConfig], max_record_bytes: int) -> None:
        self.by_prefix = {c.topic_prefix: c for c in connectors.values()}
        self.heartbeats = {c.heartbeat_topic: c.name for c in connectors.values() if c.heartbeat_topic}
        self.mappers = {c.name: SourceMapper(c) for c in connectors.values()}
        self.max_record_bytes = max_record_bytes

    def __call__(self, raw: Signal) -> CoreInput | KafkaOut | None:
        if raw.topic == STEWARDSHIP_TOPIC:
            return self._steward(raw)
        if isinstance(raw, PartitionReady):
            return StreamReady((raw.topic, raw.partition))
        if isinstance(raw, PartitionIdle):
            source = self.heartbeats.get(raw.topic)
            if source:
                return SourceSilent(source, raw.judged_at)
            return StreamIdle((raw.topic, raw.partition), raw.judged_at)
        if raw.topic in self.heartbeats:
            return Heartbeat(self.heartbeats[raw.topic], heartbeat_time(raw.value))
        result = self._decode(raw)
        outcome = "change" if isinstance(result, CanonicalChange) else "tombstone" if result is None else "dead_letter"
        metrics.RECORDS.labels("decode", outcome).inc()
        if isinstance(result, KafkaOut):
            headers = dict(result.headers)
            metrics.DLQ_RECORDS.labels(headers["stage"].decode(), headers["error-class"].decode()).inc()
        return result

    def _decode(self, raw: RawRecord) -> CanonicalChange | KafkaOut | None:
        origin = (raw.topic, raw.partition, raw.offset, raw.key, raw.value)
        config = self.by_prefix.get(raw.topic.split(".", 1)[0])
        source = config.name if config else None
        if config is None:
            return dead_letter_out("decode", "unknown_topic", f"no connector file declares topic {raw.topic}", None, origin)
        stage = "decode"
        try:
            record = decode(raw.key, raw.value, source=config.name, dialect=config.dialect)
            if record is None:
                return None  # tombstone: the delete before it said everything
            stage = "map"
            change = self.mappers[config.name].map(record)
        except (DecodeError, MappingError) as e:
            return dead_letter_out(stage, e.error_class, e.reason, source, origin)
        except Exception as e:  # noqa: BLE001 - no value of one record may stop the flow
            error_class = "invalid_value" if isinstance(e, ValueError | ArithmeticError | TypeError) else "unexpected_error"
            return dead_letter_out(stage, error_class, f"{type(e).__name__}: {e}", source, origin)
        received = len(raw.value or b"") + len(raw.key or b"")
        if received > self.max_record_bytes and (kept := kept_bytes(change)) > self.max_record_bytes:
            # The limit is on what Tidemark keeps: wide unmapped columns alone never dead-letter a row.
            reason = (f"mapped row of about {kept} bytes (record {received}) exceeds the {self.max_record_bytes}-byte "
                      "limit (TIDEMARK_MAX_RECORD_BYTES)")  # fmt: skip
            return dead_letter_out("map", "oversized", reason, source, origin)
        return replace(change, origin=origin)

    def _steward(self, raw: Signal) -> CoreInput | KafkaOut | None:
        if isinstance(raw, PartitionReady):
            return StreamReady((raw.topic, raw.partition))
        if isinstance(raw, PartitionIdle):
            return StreamIdle((raw.topic, raw.partition), raw.judged_at)
        origin = (raw.topic, raw.partition, raw.offset, raw.key, raw.value)
        try:
            return parse_command(raw.value, origin)
        except StewardRecordError as e:
            return dead_letter_out("decode", "invalid_steward_command", str(e), "steward", origin)


def kept_bytes(change: CanonicalChange) -> int:
    """About how many bytes of a change Tidemark keeps (its mapped row), without serializing it."""
    return sum(len(v) if isinstance(v, str) else 16 for v in change.image.values()) + 16 * len(change.image)


class CoreMetrics:
    """Publishes the core's cumulative statistics as Prometheus counters (by difference, per batch)."""

    def __init__(self) -> None:
        self.seen: dict[Any, float] = {}

    def _inc(self, counter: Any, key: Any, total: float) -> None:
        delta = total - self.seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self.seen[key] = total

    def publish(self, core: ConsistencyCore) -> None:
        s, m, r, i = core.stats, core.marks.stats, core.reorder.stats, core.identity.stats
        self._inc(metrics.RECORDS.labels("core", "in"), "in", s.changes_in)
        self._inc(metrics.RECORDS.labels("core", "applied"), "applied", s.applied)
        self._inc(metrics.DUPLICATES.labels("duplicate"), "dup", m.duplicates)
        self._inc(metrics.DUPLICATES.labels("stale"), "stale", m.stale - m.stale_snapshots)
        self._inc(metrics.DUPLICATES.labels("stale_snapshot"), "stale_snap", m.stale_snapshots)
        self._inc(metrics.DUPLICATES.labels("echo"), "echo", s.echoes)
        self._inc(metrics.REORDER_LATE, "late", r.late)
        self._inc(metrics.REORDER_OVERFLOW, "overflow", r.overflow)
        for rule, n in i.matches.items():
            self._inc(metrics.IDENTITY_MATCHES.labels(rule), ("rule", rule), n)
        for rule, n in i.conflicts.items():
            self._inc(metrics.IDENTITY_CONFLICTS.labels(rule), ("conflict", rule), n)
        for rule, n in i.findings.items():
            self._inc(metrics.IDENTITY_FINDINGS.labels(rule), ("finding", rule), n)
        self._inc(metrics.IDENTITY_MOVES, "moved", i.moved)
        for event_type, n in s.events.items():
            self._inc(metrics.LIFECYCLE_EVENTS.labels(event_type), ("event", event_type), n)
        for (field, system, decision), n in s.governance.items():
            self._inc(metrics.GOVERNANCE.labels(field, system, decision), ("gov", field, system, decision), n)
        for error_class, n in s.errors.items():
            self._inc(metrics.DLQ_RECORDS.labels("apply", error_class), ("err", error_class), n)
        while r.waits:
            metrics.REORDER_WAIT.observe(r.waits.popleft())
        metrics.REORDER_DEPTH.set(len(core.reorder))
        metrics.GOLDEN_CUSTOMERS.set(len(core.records))


class CoreLogic(StatefulBatchLogic[CoreInput, tuple[str, Any], bytes]):
    """The consistency core as one Bytewax stateful step; its snapshot is the pickled core."""

    def __init__(self, policy: Policy, streams: list[tuple[str, int]], resume: bytes | None) -> None:
        self.core: ConsistencyCore = pickle.loads(resume) if resume else ConsistencyCore(policy)  # noqa: S301 - ours
        self.core.expect(streams, time.time())  # every partition is read again from the snapshot's offsets
        self.idle_s = policy.reorder.idle_timeout_ms / 1000
        self.metrics = CoreMetrics()

    def _emit(self, out: CoreOutput) -> tuple[list[tuple[str, Any]], bool]:
        self.metrics.publish(self.core)
        return route(out), StatefulBatchLogic.RETAIN

    def on_batch(self, values: list[CoreInput]) -> tuple[list[tuple[str, Any]], bool]:
        return self._emit(self.core.submit_batch(values, time.time()))

    def on_notify(self) -> tuple[list[tuple[str, Any]], bool]:
        return self._emit(self.core.tick(time.time()))

    def on_eof(self) -> tuple[list[tuple[str, Any]], bool]:
        return self._emit(self.core.flush(time.time()))

    def notify_at(self) -> datetime | None:
        if not len(self.core.reorder):
            return None
        return datetime.now(timezone.utc) + timedelta(seconds=self.idle_s / 2)

    def snapshot(self) -> bytes:
        state = pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)
        return_free_memory()  # the pickle and a backlog's batches leave much freed heap resident
        return state


def _target(name: str) -> Any:
    return lambda item: item[1] if item[0] == name else None


def build_flow(config: FlowConfig) -> Dataflow:
    """The dataflow, wired from config; no I/O happens until Bytewax runs it."""
    topics = capture_topics(config.connectors, config.partitions)
    flow = Dataflow("tidemark")
    idle_s = config.policy.reorder.idle_timeout_ms / 1000
    inputs = {**topics, STEWARDSHIP_TOPIC: 1}
    raw = op.input("capture", flow, CaptureSource(config.bootstrap, inputs, config.group, idle_s=idle_s,
                                                     on_reset=config.on_reset, properties=config.kafka_properties,
                                                     stuck_after_s=config.stuck_after_s))
    decoded = op.filter_map("decode_map", raw, Decoder(config.connectors, config.max_record_bytes))
    branches = op.branch("split_errors", decoded, lambda x: not isinstance(x, KafkaOut))
    keyed = op.key_on("one_core", branches.trues, lambda _c: "core")
    policy = config.policy
    # Not the stewardship topic: it is mostly empty, and an empty partition's end is not known to kafka-python
    # until it holds a record, so waiting for it would hold every start. A decision read late is applied late.
    streams = [(topic, p) for topic, n in topics.items() for p in range(n)]
    results = op.stateful_batch("core", keyed, lambda resume: CoreLogic(policy, streams, resume))
    routed = op.map("unkey", results, lambda kv: kv[1])
    kafka_out = op.merge("kafka_records", op.filter_map("to_kafka", routed, _target("kafka")), branches.falses)
    op.output("kafka", kafka_out, KafkaOutputSink(config.bootstrap, config.partitions, config.kafka_properties))
    op.output("dead_letters", op.filter_map("to_dead_letters", kafka_out, dead_letter_row),
              WriterSink("dead_letters", lambda: DeadLetterWriter(config.ops_conninfo)))  # fmt: skip
    op.output("customer_360", op.filter_map("to_c360", routed, _target("customer_360")),
              WriterSink("customer_360", lambda: Customer360Writer(config.ops_conninfo)))  # fmt: skip
    op.output("crm_writeback", op.filter_map("to_crm", routed, _target("crm")),
              WriterSink("crm_writeback", lambda: CrmWriter(**config.crm)))  # fmt: skip
    return flow
