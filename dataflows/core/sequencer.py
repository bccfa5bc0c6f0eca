"""The sequencer of the partitioned core: the serial core's cross-customer prefix, on one key.

It is the serial ConsistencyCore (reorder, dedupe, source customers, identity, stewardship) on exactly the
serial core's input, with the per-customer suffix replaced by a message to the golden customer the step
is about: so it releases the same changes in the same order and takes the same identity decisions. It holds
no golden records; its outputs are the prefix's own (dead letters, late changes) and the messages.
"""

from __future__ import annotations

from dataclasses import replace

from dataflows.core.core import ConsistencyCore
from dataflows.core.handoff import Lend, Message, OpId, Work
from dataflows.core.inputs import Cause
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput, Step, step_clusters


class Sequencer(ConsistencyCore):
    """Use as the serial core; after each call, take() the messages, each keyed by a golden id."""

    def __init__(self, policy: Policy, run: int) -> None:
        super().__init__(policy)
        self.run = run
        self.n = 0
        self.outbox: list[tuple[str, Message]] = []

    def restart(self, run: int) -> None:
        """Call when restored from a snapshot: this run's operations must not match the crashed run's."""
        self.run = run
        self.outbox = []

    def take(self) -> list[tuple[str, Message]]:
        sent, self.outbox = self.outbox, []
        return sent

    def _apply(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        self.n += 1
        op: OpId = (self.run, self.n)
        resolution = step.resolution
        # Only a regrouping reads identity's clusters; the common step carries none.
        clusters = step_clusters(resolution, self.identity.clusters) if resolution.regrouped else {}
        step = replace(step, clusters=clusters)
        coordinator = resolution.golden_id
        lenders = tuple(sorted(step.involved() - {coordinator}))
        self.outbox += [(lender, Lend(op, coordinator)) for lender in lenders]
        self.outbox.append((coordinator, Work(op, step, lenders)))
