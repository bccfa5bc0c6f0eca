"""The messages of the partitioned core (see sequencer.py and customer.py).

The sequencer sends Work and Lend, each keyed by a golden id, in its own order; a step that touches
several golden customers (a merge, a move, a split) is carried out by one of them, the coordinator, which
borrows the others' records (Loan) and gives back what the step left of each (Return). Loans and returns
travel between keys of one step, which a dataflow without loops carries through a topic of its own.

Every message names its operation: (run, n), where n counts the sequencer's steps and run tells the
sequencer's runs apart (a run restored from a snapshot repeats the numbers of the one that crashed, and
that run's hand-offs may still be on the topic: they never match the new run's).
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflows.core.golden import GoldenRecord
from dataflows.core.inputs import Cause
from dataflows.core.pickled import pickled_fast
from dataflows.core.records import Step

OpId = tuple[int, int]  # (run, n)


@pickled_fast
@dataclass(frozen=True, slots=True)
class Work:
    """Carry out `step` (keyed by its golden id), once every lender's record is here."""

    op: OpId
    step: Step
    lenders: tuple[str, ...] = ()


@pickled_fast
@dataclass(frozen=True, slots=True)
class Lend:
    """Send this customer's record to the coordinator `to`, and hold everything after it until it is back."""

    op: OpId
    to: str


@pickled_fast
@dataclass(frozen=True, slots=True)
class Loan:
    """A lender's record (None: it has none) and the change that last changed it, if not yet emitted."""

    op: OpId
    lender: str
    record: GoldenRecord | None
    dirty: Cause | None


@pickled_fast
@dataclass(frozen=True, slots=True)
class Return:
    """What the step left of a lender's record (None: merged away), and the ids retired into it."""

    op: OpId
    record: GoldenRecord | None
    dirty: Cause | None
    retired: tuple[tuple[str, str], ...] = ()


Message = Work | Lend | Loan | Return
