"""The partitioned core on Bytewax: a sequencer on one key, customers keyed by golden id on every worker.

    decoded changes ─> key "seq" ─> sequence (reorder, dedupe, identity) ─┬─> dead letters, late changes
                                                                           └─> Work/Lend by golden id ─┐
    hand-off topic (tidemark.internal.handoff.v1) ─> Loan/Return by golden id ──────────────────────────┤
                                                                                                        v
                               customer (one state per golden id: apply, governance, lifecycle) ─> typed outputs ─> targets
                                                                  └─> Loan/Return ─> hand-off topic

Bytewax dataflows have no loops, so a record that moves between two keys of the customer step (a merge,
a move, a split) goes out through the Kafka sink and comes back through a source whose offsets are in the
snapshot; customer.py makes that hand-off safe to receive early, late, twice or from a crashed run.
Each key's state is its serialized CustomerState: Bytewax snapshots only the keys an epoch touched, so a
snapshot costs in proportion to the customers changed, and a key at rest holds bytes (and, for the
WARM_CUSTOMERS keys used last, its objects too, so a customer that changes again is not decoded again).
"""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from dataflows import metrics
from dataflows.core.customer import CustomerCore, CustomerState, loads
from dataflows.core.handoff import Loan, Message, Return
from dataflows.core.inputs import CoreInput
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput
from dataflows.core.sequencer import Sequencer, restore
from dataflows.flows.checkpoints import MIN_BASE_EVERY, CheckpointFiles
from dataflows.flows.core_logic import PUBLISH_EVERY_S, CoreLogic, CoreMetrics
from dataflows.io.kafka_source import CaptureSource, RawRecord, Signal
from dataflows.io.kafka_client import partition_for
from dataflows.core.outputs import HandOff, Output
from dataflows.outputs import HANDOFF_TOPIC, emit
from dataflows.settings import WARM_CUSTOMERS

Keyed = tuple[str, Message]
LIVE, DEAD = b"L", b"-"
JOURNALED = b"J"  # the sequencer's snapshot names its newest checkpoint file (flows/checkpoints.py)


class SequencerLogic(CoreLogic):
    """The sequencer as the single-key step; its messages go on keyed by golden id.

    With `files`, its snapshot is incremental: each epoch's checkpoint (a delta, a base now and then) goes to
    those files and the key's snapshot is JOURNALED + the checkpoint's generation. Without, it is the
    pickled sequencer, whole."""

    def __init__(self, policy: Policy, streams: list[tuple[str, int]], resume: bytes | None,
                 files: CheckpointFiles | None = None) -> None:  # fmt: skip
        self.files, self.gen, self.base_bytes = files, 0, 0
        self.deltas: list[tuple[int, int]] = []  # (generation, size) of the deltas after the newest base
        if resume and resume[:1] == JOURNALED:
            if files is None:
                msg = "the sequencer's snapshot names checkpoint files, and no directory was given"
                raise ValueError(msg)
            self.gen = int(resume[1:])
            chain = files.chain(self.gen)
            core = restore(chain)
            self.base_bytes = len(chain[0])
            self.deltas = [(self.gen - len(chain) + 1 + i, len(blob)) for i, blob in enumerate(chain) if i]
        else:
            core = pickle.loads(resume) if resume else Sequencer(policy, time.time_ns())  # noqa: S301 - ours
        # A new run: its operations never match the hand-offs a crashed run left on the topic.
        core.restart(time.time_ns())
        super().__init__(core, policy, streams)

    def on_batch(self, values: list[list[CoreInput]]) -> tuple[list[Any], bool]:  # type: ignore[override]
        """`values`: whole upstream batches, each sent to this key as one item (see customer_step)."""
        return super().on_batch([item for batch in values for item in batch])

    def _emit(self, out: CoreOutput) -> tuple[list[Any], bool]:
        self.metrics.publish_prefix(self.core)
        return [*emit(out), *(("customer", sent) for sent in self.core.take())], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if self.files is None:
            return super().snapshot()
        full = self.gen == 0
        blob = self.core.checkpoint(full)
        if full:
            self.files.clear()
        self.gen += 1
        self.files.write(self.gen, blob, full)
        if full:
            self.base_bytes, self.deltas = len(blob), []
        else:
            self.deltas.append((self.gen, len(blob)))
        self._compact()
        return JOURNALED + str(self.gen).encode()

    def _compact(self) -> None:
        """A new base, merged beside the flow, once the deltas since the last one outweigh it: a resume
        reads at most about twice the state, and no snapshot pays for the whole of it."""
        assert self.files is not None
        adopted = self.files.adopt()
        if adopted is not None:
            self.base_bytes = adopted[1]
            self.deltas = [(g, n) for g, n in self.deltas if g > adopted[0]]
        if len(self.deltas) >= MIN_BASE_EVERY and sum(n for _, n in self.deltas) >= self.base_bytes:
            self.files.compact_beside(self.gen)


class WarmStates:
    """The decoded states of the customer keys a process used last, kept up to `capacity` keys.

    A key at rest holds bytes; decoding them again on its next batch was a tenth of a 1-process dataflow's
    CPU (py-spy, 60,000 changes over 12,000 customers), and customers that change tend to change again.
    A key is here only while its state equals its last snapshot, so dropping its objects loses nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._at_rest: OrderedDict[CustomerLogic, None] = OrderedDict()

    def using(self, logic: CustomerLogic) -> None:
        """`logic` is about to change its state: not to be dropped until its next snapshot."""
        self._at_rest.pop(logic, None)

    def rested(self, logic: CustomerLogic) -> None:
        """`logic` has just snapshotted: keep its objects, dropping those of the keys unused longest."""
        self._at_rest[logic] = None
        while len(self._at_rest) > self.capacity:
            oldest, _ = self._at_rest.popitem(last=False)
            oldest.state = None


class CustomerLogic(StatefulBatchLogic[Keyed, Output, bytes]):
    """One golden customer's key. At rest it holds its serialized state, and its objects too while it is
    among the `warm` keys; a batch decodes the bytes when the objects are gone."""

    def __init__(self, customers: CustomerCore, counters: CoreMetrics, resume: bytes | None,
                 kafka_key: str = "", warm: WarmStates | None = None) -> None:  # fmt: skip
        self.customers = customers
        self.counters = counters
        self.kafka_key = kafka_key  # every hand-off on one partition (see first_partition_key)
        self.warm = warm if warm is not None else WarmStates(0)
        # A snapshot starts with LIVE when the key holds a golden record: counted without decoding it.
        self.blob = resume[1:] if resume else None
        self.live = bool(resume) and resume[:1] == LIVE
        if self.live:
            metrics.GOLDEN_CUSTOMERS.inc()
        self.state: CustomerState | None = None

    def on_batch(self, values: list[Keyed]) -> tuple[list[Output], bool]:
        self.warm.using(self)
        if self.state is None:
            self.state = loads(self.blob) if self.blob else CustomerState(values[0][0])
        out, sends = self.customers.on_batch(self.state, [message for _, message in values])
        self.counters.publish_records(self.customers.stats, every_s=PUBLISH_EVERY_S)
        if self.live != (self.state.record is not None):
            self.live = not self.live
            metrics.GOLDEN_CUSTOMERS.inc(1 if self.live else -1)
        hand_offs = [HandOff(self.kafka_key, pickle.dumps((to, m), pickle.HIGHEST_PROTOCOL)) for to, m in sends]
        return [*emit(out), *hand_offs], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        self.counters.catch_up(self.customers.stats)
        if self.state is not None:
            self.blob = self.state.dumps()
            self.warm.rested(self)
        return (LIVE if self.live else DEAD) + (self.blob or b"")


def snapshot_epoch(logics: Iterable[CustomerLogic]) -> int:
    """What the dataflow writes for the customer keys an epoch touched: each one's snapshot (bytes
    returned). The seam `tidemark bench` times per 1,000 changed customers."""
    return sum(len(logic.snapshot()) for logic in logics)


def first_partition_key(partitions: int) -> str:
    """A Kafka key the sink puts on partition 0. Hand-offs are rare and matched by operation, not by
    order, so one partition serves: one reader instead of one per partition, each polling while empty."""
    return next(key for i in range(10_000) if partition_for((key := f"handoff-{i}").encode(), partitions) == 0)


def _hand_off(raw: Signal) -> Keyed | None:
    if not isinstance(raw, RawRecord) or raw.value is None:
        return None  # the reader's stream signals: the hand-off topic holds no watermark
    key, message = pickle.loads(raw.value)  # noqa: S301 - written by this dataflow's customer step
    return (key, message) if isinstance(message, Loan | Return) else None


def customer_step(decoded: Stream[CoreInput], policy: Policy, streams: list[tuple[str, int]], bootstrap: str,
                  partitions: int, group: str, idle_s: float,
                  properties: dict[str, str], checkpoints: Path | None = None,
                  warm_customers: int = WARM_CUSTOMERS) -> Stream[Output]:  # fmt: skip
    """Wire sequencer, customer step and hand-off loop; returns the stream of typed outputs.
    `checkpoints`: the directory of the sequencer's incremental snapshots (else it is snapshotted whole);
    `warm_customers`: see WarmStates."""
    # Every input goes to the one key as one item per upstream batch: Bytewax pickles each item that moves
    # between workers, and a batch pickled whole costs less than half as much per change as its changes
    # pickled apart (shared memo; `bench core` measures the exchange).
    keyed = op.flat_map_batch("one_sequencer", decoded, lambda batch: [("seq", batch)] if batch else [])
    files = CheckpointFiles(checkpoints) if checkpoints is not None else None
    sequenced = op.stateful_batch("sequence", keyed, lambda resume: SequencerLogic(policy, streams, resume, files))
    items = op.map("unkey_sequence", sequenced, lambda kv: kv[1])
    # The sequencer's ("customer", message) pairs go on to the customer step; the rest are typed outputs.
    work = op.filter_map("to_customers", items, lambda item: item[1] if isinstance(item, tuple) else None)
    raw = op.input("handoff", decoded.flow(), CaptureSource(bootstrap, {HANDOFF_TOPIC: 1}, group, idle_s=idle_s,
                                                                 properties=properties))
    back = op.filter_map("decode_handoff", raw, _hand_off)
    inbound = op.map("with_key", op.merge("customer_inbound", work, back), lambda kv: (kv[0], kv))
    # Per process (one worker each), for its keys.
    customers, counters, warm = CustomerCore(policy), CoreMetrics(), WarmStates(warm_customers)
    key = first_partition_key(partitions)
    results = op.stateful_batch("customer", inbound,
                                lambda resume: CustomerLogic(customers, counters, resume, key, warm))
    own = op.filter("not_customer", items, lambda item: not isinstance(item, tuple))
    return op.merge("core_results", own, op.map("unkey_customer", results, lambda kv: kv[1]))
