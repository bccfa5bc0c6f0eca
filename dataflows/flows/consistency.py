"""The Tidemark dataflow: capture topics in, consistency core, governed writes out.

    capture topics ─> decode+map ─┬─> core (reorder, dedupe, identity, ownership, lifecycle) ─> outputs ┬─> Kafka outputs
                                  └─> dead letters ───────────────────────────────────────────────────┤─> dead_letters table
                                                                                                       ├─> customer_360
                                                                                                       └─> CRM write-back

Decode and map run on every worker; the core's cross-customer part (reorder watermark, dedupe, identity)
is one keyed step, its per-customer part is keyed by golden customer over every worker (flows/partitioned.py;
`partitioned=False`: the whole core as one key); the sinks run on every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows import metrics
from dataflows.config.connectors import ConnectorConfig, capture_topics
from dataflows.core.inputs import CoreInput, Heartbeat, SourceSilent, StreamIdle, StreamReady
from dataflows.ingest.decode import DecodeError, decode
from dataflows.ingest.heartbeats import read_heartbeat
from dataflows.core.change import CanonicalChange
from dataflows.ingest.mapping import MappingError, SourceMapper
from dataflows.core.policy import Policy
from dataflows.flows.core_logic import CoreLogic
from dataflows.flows.partitioned import customer_step
from dataflows.io.kafka_source import CaptureSource, PartitionIdle, PartitionReady, RawRecord, Signal
from dataflows.io.sinks import KafkaOutputSink, WriterSink
from dataflows.core.outputs import DeadLetter
from dataflows.outputs import KAFKA, Destination, dead_letter_out
from dataflows.settings import WARM_CUSTOMERS
from dataflows.stewardship import STEWARDSHIP_TOPIC, StewardRecordError, parse_command
from dataflows.targets import crm_writeback, customer_360, dead_letters
from dataflows.targets.crm_writeback import CrmWriter
from dataflows.targets.customer_360 import Customer360Writer
from dataflows.targets.dead_letters import DeadLetterWriter


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
    # The core partitioned by golden customer over every worker (flows/partitioned.py), or one serial key.
    partitioned: bool = True
    stuck_after_s: float = 60.0  # see io/kafka_source.py, StallWatch
    checkpoints: Path | None = None  # the sequencer's incremental snapshots (flows/checkpoints.py); None: whole
    warm_customers: int = WARM_CUSTOMERS  # decoded customer states kept per process (flows/partitioned.py)


class Decoder:
    """Raw capture record -> canonical change, or a dead letter. Never raises for bad input."""

    def __init__(self, connectors: dict[str, ConnectorConfig], max_record_bytes: int) -> None:
        self.by_prefix = {c.topic_prefix: c for c in connectors.values()}
        self.heartbeats = {c.heartbeat_topic: c.name for c in connectors.values() if c.heartbeat_topic}
        self.mappers = {c.name: SourceMapper(c) for c in connectors.values()}
        self.max_record_bytes = max_record_bytes
        # Resolved once: a labelled child's lookup costs a lock and a tuple per record.
        self.counted = {o: metrics.RECORDS.labels("decode", o) for o in ("change", "tombstone", "dead_letter")}

    def __call__(self, raw: Signal) -> CoreInput | DeadLetter | None:
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
            return Heartbeat(self.heartbeats[raw.topic], *read_heartbeat(raw.value))
        result = self._decode(raw)
        outcome = "change" if isinstance(result, CanonicalChange) else "tombstone" if result is None else "dead_letter"
        self.counted[outcome].inc()
        if isinstance(result, DeadLetter):
            metrics.DLQ_RECORDS.labels(result.stage, result.error_class).inc()
        return result

    def _decode(self, raw: RawRecord) -> CanonicalChange | DeadLetter | None:
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
            change = self.mappers[config.name].map(record, origin, raw.replay)
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
        return change

    def _steward(self, raw: Signal) -> CoreInput | DeadLetter | None:
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


def _to(flow_outputs: Any, step: str, destination: Destination[Any]) -> Any:
    """The records of one destination (each destination takes only the output types it knows)."""
    return op.flat_map(step, flow_outputs, destination.records)


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
    branches = op.branch("split_errors", decoded, lambda x: not isinstance(x, DeadLetter))
    policy = config.policy
    # Not the stewardship topic: it is mostly empty, and an empty partition's end is not known to kafka-python
    # until it holds a record, so waiting for it would hold every start. A decision read late is applied late.
    streams = [(topic, p) for topic, n in topics.items() for p in range(n)]
    if config.partitioned:
        routed = customer_step(branches.trues, policy, streams, config.bootstrap, config.partitions, config.group,
                               idle_s, config.kafka_properties, config.checkpoints, config.warm_customers)  # fmt: skip
    else:
        keyed = op.key_on("one_core", branches.trues, lambda _c: "core")
        results = op.stateful_batch("core", keyed, lambda resume: CoreLogic.serial(policy, streams, resume))
        routed = op.map("unkey", results, lambda kv: kv[1])
    outputs = op.merge("outputs", routed, branches.falses)
    op.output("kafka", _to(outputs, "to_kafka", KAFKA),
              KafkaOutputSink(config.bootstrap, config.partitions, config.kafka_properties))  # fmt: skip
    op.output("dead_letters", _to(outputs, "to_dead_letters", dead_letters.DESTINATION),
              WriterSink("dead_letters", lambda: DeadLetterWriter(config.ops_conninfo)))  # fmt: skip
    op.output("customer_360", _to(outputs, "to_c360", customer_360.DESTINATION),
              WriterSink("customer_360", lambda: Customer360Writer(config.ops_conninfo)))  # fmt: skip
    op.output("crm_writeback", _to(outputs, "to_crm", crm_writeback.DESTINATION),
              WriterSink("crm_writeback", lambda: CrmWriter(**config.crm)))  # fmt: skip
    return flow
