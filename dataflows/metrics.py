"""Every Prometheus metric Tidemark exposes, in one place: `tidemark_<subsystem>_<name>_<unit>`.

Labels are bounded: source, table, op, topic, partition, stage, outcome, reason, rule, field, system,
decision, target, event_type. Never a key or a customer id. Each long-lived process serves them on its
own port (127.0.0.1 by default) with `serve()`.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

# -- capture processes -------------------------------------------------------------------------------
CAPTURE_CHANGES = Counter("tidemark_capture_changes_total", "Row changes captured and delivered to Kafka.",
                          ["source", "table", "op"])  # fmt: skip
CAPTURE_ENGINE_UP = Gauge("tidemark_capture_engine_up", "1 while the Debezium engine is running.", ["source"])
CAPTURE_NEWEST_COMMIT = Gauge("tidemark_capture_newest_commit_timestamp_seconds",
                              "Commit time of the newest change delivered (or of the newest heartbeat).", ["source"])  # fmt: skip
CAPTURE_SOURCE_LAG = Gauge("tidemark_capture_source_lag_seconds",
                           "Now minus the commit time of the newest change seen; heartbeats keep it honest when idle.",
                           ["source"])  # fmt: skip
CAPTURE_POSITION = Gauge("tidemark_capture_last_position", "Newest source position delivered "
                         "(PostgreSQL: LSN; MySQL family: binlog file index and position).", ["source", "part"])  # fmt: skip
CAPTURE_BATCH_SECONDS = Histogram("tidemark_capture_batch_delivery_seconds",
                                  "Time to deliver one Debezium batch to Kafka (until acknowledged).", ["source"])  # fmt: skip
CAPTURE_RESNAPSHOTS = Counter("tidemark_capture_resnapshots_total",
                              "Engine restarts without offsets, to take a new initial snapshot on request.", ["source"])  # fmt: skip
SLOT_RETAINED_WAL = Gauge("tidemark_postgres_slot_retained_wal_bytes",
                          "WAL a PostgreSQL replication slot keeps from being recycled.", ["source", "slot"])  # fmt: skip

# -- dataflow processes ------------------------------------------------------------------------------
CONSUMER_LAG = Gauge("tidemark_consumer_lag_messages", "End offset minus consumed position.", ["topic", "partition"])
SOURCE_RESETS = Counter("tidemark_source_resets_total",
                        "Capture partitions found recreated or truncated below the position the dataflow held "
                        "(reason: recreated, truncated, expired).", ["topic", "partition", "reason"])  # fmt: skip
SOURCE_STUCK = Gauge("tidemark_source_stuck", "1 while a capture partition is behind its end with no record nor "
                     "fetch error for longer than source_stuck_after_s (it holds the reorder buffer).",
                     ["topic", "partition"])  # fmt: skip
SOURCE_FETCH_ERRORS = Counter("tidemark_source_fetch_errors_total",
                              "Errors capture-partition fetches answered (librdkafka retries them), by error name.",
                              ["topic", "partition", "reason"])  # fmt: skip
RECORDS = Counter("tidemark_dataflow_records_total", "Records through each stage, by outcome.", ["stage", "outcome"])
DLQ_RECORDS = Counter("tidemark_dlq_records_total", "Dead letters written, by stage and error class.", ["stage", "reason"])
E2E_LATENCY = Histogram("tidemark_e2e_latency_seconds", "Source commit to output acknowledged by its target.",
                        ["target"], buckets=LATENCY_BUCKETS)  # fmt: skip
REORDER_DEPTH = Gauge("tidemark_reorder_buffer_depth", "Changes waiting in the reorder buffer.")
REORDER_WAIT = Histogram("tidemark_reorder_wait_seconds", "Wall-clock time a change waited in the reorder buffer.",
                         buckets=LATENCY_BUCKETS)  # fmt: skip
REORDER_LATE = Counter("tidemark_reorder_late_total", "Changes that arrived behind the watermark (merged by version).")
REORDER_OVERFLOW = Counter("tidemark_reorder_overflow_total", "Changes released early because a buffer bound was hit.")
DUPLICATES = Counter("tidemark_dedupe_suppressed_total", "Changes with no second effect.", ["reason"])
IDENTITY_MATCHES = Counter("tidemark_identity_matches_total", "Source customers linked, by identity rule.", ["rule"])
IDENTITY_CONFLICTS = Counter("tidemark_identity_conflicts_total", "Links refused: the records are provably different "
                             "companies (two records of a system of record, different tax ids, a steward's split).",
                             ["rule"])  # fmt: skip
IDENTITY_FINDINGS = Counter("tidemark_identity_invalid_identifiers_total", "Identifier values that link nothing "
                            "(placeholders, invalid tax ids), by rule.", ["rule"])  # fmt: skip
IDENTITY_MOVES = Counter("tidemark_identity_moves_total", "Source customers moved to another golden customer.")
GOVERNANCE = Counter("tidemark_governance_decisions_total", "Ownership decisions.", ["field", "system", "decision"])
OWNER_WRITES = Counter("tidemark_owner_writes_total", "Plain writes of a field by its owning system (kept as the "
                       "field's provenance in the golden record; no governance record).", ["field", "system"])
LIFECYCLE_EVENTS = Counter("tidemark_lifecycle_events_total", "Lifecycle events emitted.", ["event_type"])
SINK_WRITES = Counter("tidemark_sink_writes_total", "Records written to a target.", ["target"])
SINK_ERRORS = Counter("tidemark_sink_errors_total", "Failed writes to a target (the flow restarts and replays).",
                      ["target"])  # fmt: skip
GOLDEN_CUSTOMERS = Gauge("tidemark_golden_customers", "Golden customers held by the consistency core.")


def serve(port: int, host: str = "127.0.0.1") -> bool:
    """Serve /metrics of this process (a daemon thread). A taken port is logged, not fatal: the process's
    work matters more than its metrics, and Prometheus reports the target down."""
    try:
        start_http_server(port, addr=host)
    except OSError as e:
        log.error("metrics endpoint %s:%d unavailable (%s): this process runs without /metrics", host, port, e.strerror)
        return False
    return True
