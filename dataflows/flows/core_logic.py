"""The consistency core (serial, or the partitioned core's sequencer) as a single-key Bytewax step, and the
Prometheus counters of its statistics."""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflows import metrics
from dataflows.core.core import ConsistencyCore
from dataflows.core.inputs import CoreInput
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput, CoreStats
from dataflows.memory import return_free_memory
from dataflows.core.outputs import Output
from dataflows.outputs import emit

PUBLISH_EVERY_S = 0.5  # a customer step publishes its counters at most this often, not per key batch


class CoreMetrics:
    """Publishes the core's cumulative statistics as Prometheus counters (by difference, per batch)."""

    def __init__(self) -> None:
        self.seen: dict[Any, float] = {}
        self.published = 0.0
        self.held_back = False  # publish_records skipped a call: the counters are behind the stats

    def _inc(self, counter: Any, key: Any, total: float) -> None:
        delta = total - self.seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self.seen[key] = total

    def publish(self, core: ConsistencyCore) -> None:
        self.publish_prefix(core)
        self.publish_records(core.stats)
        metrics.GOLDEN_CUSTOMERS.set(len(core.records))

    def publish_prefix(self, core: ConsistencyCore) -> None:
        """Reorder, dedupe and identity: the cross-customer part."""
        s, m, r, i = core.stats, core.marks.stats, core.reorder.stats, core.identity.stats
        self._inc(metrics.RECORDS.labels("core", "in"), "in", s.changes_in)
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
        for error_class, n in s.errors.items():
            self._inc(metrics.DLQ_RECORDS.labels("apply", error_class), ("err", error_class), n)
        while r.waits:
            metrics.REORDER_WAIT.observe(r.waits.popleft())
        metrics.REORDER_DEPTH.set(len(core.reorder))

    def catch_up(self, s: CoreStats) -> None:
        """Publish what `publish_records` held back. Called at every epoch's end: without it, the counts of
        the last batches before traffic stops were never published (lifecycle events, applied changes)."""
        if self.held_back:
            self.publish_records(s)

    def publish_records(self, s: CoreStats, every_s: float = 0.0) -> None:
        """What was applied to golden records: applied changes, lifecycle events, governance decisions."""
        if every_s and time.monotonic() - self.published < every_s:
            self.held_back = True
            return
        self.published, self.held_back = time.monotonic(), False
        self._inc(metrics.RECORDS.labels("core", "applied"), "applied", s.applied)
        for event_type, n in s.events.items():
            self._inc(metrics.LIFECYCLE_EVENTS.labels(event_type), ("event", event_type), n)
        for (field, system, decision), n in s.governance.items():
            self._inc(metrics.GOVERNANCE.labels(field, system, decision), ("gov", field, system, decision), n)
        for error_class, n in s.errors.items():
            self._inc(metrics.DLQ_RECORDS.labels("apply", error_class), ("rec_err", error_class), n)
        for (field, system), n in s.owner_writes.items():
            self._inc(metrics.OWNER_WRITES.labels(field, system), ("owner", field, system), n)


class CoreLogic(StatefulBatchLogic[CoreInput, Any, bytes]):
    """A core as one Bytewax stateful step; its snapshot is the pickled core."""

    def __init__(self, core: ConsistencyCore, policy: Policy, streams: list[tuple[str, int]]) -> None:
        self.core = core
        self.core.expect(streams, time.time())  # every partition is read again from the snapshot's offsets
        self.idle_s = policy.reorder.idle_timeout_ms / 1000
        self.metrics = CoreMetrics()

    @classmethod
    def serial(cls, policy: Policy, streams: list[tuple[str, int]], resume: bytes | None) -> CoreLogic:
        core = pickle.loads(resume) if resume else ConsistencyCore(policy)  # noqa: S301 - ours
        return cls(core, policy, streams)

    def _emit(self, out: CoreOutput) -> tuple[list[Output], bool]:
        self.metrics.publish(self.core)
        return emit(out), StatefulBatchLogic.RETAIN

    def on_batch(self, values: list[CoreInput]) -> tuple[list[Output], bool]:
        return self._emit(self.core.submit_batch(values, time.time()))

    def on_notify(self) -> tuple[list[Output], bool]:
        return self._emit(self.core.tick(time.time()))

    def on_eof(self) -> tuple[list[Output], bool]:
        return self._emit(self.core.flush(time.time()))

    def notify_at(self) -> datetime | None:
        if not len(self.core.reorder):
            return None
        return datetime.now(timezone.utc) + timedelta(seconds=self.idle_s / 2)

    def snapshot(self) -> bytes:
        state = pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)
        return_free_memory()  # the pickle and a backlog's batches leave much freed heap resident
        return state
