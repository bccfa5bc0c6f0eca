"""The customer side of the partitioned core: one small state per golden customer, keyed by its id.

A key applies the sequencer's steps for its customer in the order the sequencer sent them (one sender,
FIFO per key), with the serial core's own suffix (records.RecordKeeper). A step that involves other golden
customers runs at its coordinator, the step's golden id: each other customer lends its record at that
point of its own sequence and holds everything after it until the record comes back; the coordinator
holds the step, and everything after it, until every loan is in. So each record sees the same steps in
the same order as in the serial core, and each step sees the same records.

Hand-offs may arrive early, late, twice, or from a crashed run: they are kept by operation until needed
and dropped once the key has passed that operation.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from dataflows.core.golden import GoldenRecord
from dataflows.core.handoff import Lend, Loan, Message, OpId, Return, Work
from dataflows.core.inputs import Cause
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput, CoreStats, RecordKeeper, change_meta
from dataflows.core.state_bytes import pack, unpack

Send = tuple[str, Loan | Return]  # (key, hand-off)


@dataclass
class CustomerState:
    """Everything one golden customer's key holds."""

    gid: str
    record: GoldenRecord | None = None
    dirty: Cause | None = None  # the change that last changed the record, until the record is emitted
    done: OpId = (0, 0)  # the newest operation carried out here
    queued: OpId = (0, 0)  # the newest operation received from the sequencer
    queue: list[Work | Lend] = field(default_factory=list)  # held until their hand-offs are here
    lent: OpId | None = None  # the record is with this operation's coordinator
    inbox: dict[tuple[OpId, str], Loan | Return] = field(default_factory=dict)  # (op, lender or "")

    def dumps(self) -> bytes:
        # Packed (core/state_bytes.py): a key at rest is these bytes, 2.1 KB as a pickle and about
        # 0.3 KB packed (the memory benchmark's customers; 0.43 KB with names unlike theirs).
        return pack(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))


def loads(blob: bytes) -> CustomerState:
    state = pickle.loads(unpack(blob))  # noqa: S301 - our own snapshot
    assert isinstance(state, CustomerState)
    return state


class OrderViolation(RuntimeError):
    """The sequencer's messages for one key arrived out of order: the partitioned core's premise broke."""


class CustomerCore:
    """Applies messages to customer states; one per worker, shared by its keys."""

    def __init__(self, policy: Policy, stats: CoreStats | None = None) -> None:
        self.policy = policy
        self.stats = stats or CoreStats()

    def on_batch(self, state: CustomerState, items: list[Message]) -> tuple[CoreOutput, list[Send]]:
        """Take one key's messages in arrival order; returns its outputs and the hand-offs to send."""
        out, sends = CoreOutput(), []
        for item in items:
            if isinstance(item, Loan | Return):
                if item.op > state.done:  # else a redelivery, or a crashed run's
                    state.inbox[(item.op, item.lender if isinstance(item, Loan) else "")] = item
                continue
            if item.op <= state.queued:
                msg = f"customer {state.gid}: operation {item.op} after {state.queued}"
                raise OrderViolation(msg)
            state.queued = item.op
            state.queue.append(item)
        self._drain(state, out, sends)
        if state.record is not None and state.dirty is not None:
            out.customers.append((state.record.as_dict(), change_meta(state.dirty)))
            state.dirty = None
        state.inbox = {k: m for k, m in state.inbox.items() if m.op > state.done}
        return out, sends

    def _drain(self, state: CustomerState, out: CoreOutput, sends: list[Send]) -> None:
        while state.queue:
            item = state.queue[0]
            if isinstance(item, Lend):
                if state.lent != item.op:
                    sends.append((item.to, Loan(item.op, state.gid, state.record, state.dirty)))
                    state.record, state.dirty, state.lent = None, None, item.op
                back = state.inbox.pop((item.op, ""), None)
                if not isinstance(back, Return):
                    return  # parked until the record is back
                state.record, state.dirty, state.lent = back.record, back.dirty, None
                out.retired += back.retired
            else:
                if any((item.op, lender) not in state.inbox for lender in item.lenders):
                    return  # parked until every loan is here
                loans = [state.inbox.pop((item.op, lender)) for lender in item.lenders]
                sends += self._carry_out(state, item, loans, out)  # type: ignore[arg-type]
            state.queue.pop(0)
            state.done = item.op

    def _carry_out(self, state: CustomerState, work: Work, loans: list[Loan], out: CoreOutput) -> list[Send]:
        """Run one step on this key's record and the lent ones; give back what is left of each."""
        records: dict[str, GoldenRecord] = {}
        dirty: dict[str, Cause] = {}
        for gid, record, cause in [(state.gid, state.record, state.dirty),
                                   *((loan.lender, loan.record, loan.dirty) for loan in loans)]:  # fmt: skip
            if record is not None:
                records[gid] = record
            if cause is not None:
                dirty[gid] = cause
        mine = CoreOutput()
        try:
            RecordKeeper(self.policy, records, self.stats).apply(work.step, mine, dirty)
        except Exception as e:  # noqa: BLE001 - one record must never stop the pipeline
            self.stats.errors["apply_failed"] += 1
            mine.errors.append((work.step.cause, "apply_failed", f"{type(e).__name__}: {e}"))
        state.record = records.get(state.gid)
        state.dirty = dirty.get(state.gid) if state.record is not None else None
        retired, mine.retired = mine.retired, [r for r in mine.retired if r[1] not in work.lenders]
        out.extend(mine)
        return [(lender, Return(work.op, records.get(lender), dirty.get(lender) if lender in records else None,
                                tuple(r for r in retired if r[1] == lender)))
                for lender in work.lenders]  # fmt: skip
