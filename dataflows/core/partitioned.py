"""The partitioned core in one process: the sequencer and every customer key, messages delivered at once.

The simplest schedule of the partitioned core (the dataflow spreads the keys over workers; the property
tests play random schedules): used to measure it beside the serial core, and as its plain-Python form.
"""

from __future__ import annotations

from collections import deque

from dataflows.core.customer import CustomerCore, CustomerState
from dataflows.core.handoff import Message
from dataflows.core.inputs import CoreInput
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput
from dataflows.core.sequencer import Sequencer


class LocalPartitioned:
    """Same calls as ConsistencyCore's submit_batch/tick/flush; states per golden id in `states`."""

    def __init__(self, policy: Policy, run: int = 1) -> None:
        self.sequencer = Sequencer(policy, run)
        self.customers = CustomerCore(policy)
        self.states: dict[str, CustomerState] = {}

    def submit_batch(self, changes: list[CoreInput], now: float) -> CoreOutput:
        return self._deliver(self.sequencer.submit_batch(changes, now))

    def tick(self, now: float) -> CoreOutput:
        return self._deliver(self.sequencer.tick(now))

    def flush(self, now: float | None = None) -> CoreOutput:
        return self._deliver(self.sequencer.flush(now))

    def _deliver(self, out: CoreOutput) -> CoreOutput:
        """Each key's messages as one batch, in the order sent; hand-offs until none is left."""
        pending: deque[tuple[str, Message]] = deque(self.sequencer.take())
        while pending:
            batches: dict[str, list[Message]] = {}
            while pending:
                key, message = pending.popleft()
                batches.setdefault(key, []).append(message)
            for key, messages in batches.items():
                state = self.states.get(key) or self.states.setdefault(key, CustomerState(key))
                mine, sends = self.customers.on_batch(state, messages)
                out.extend(mine)
                pending.extend(sends)
        return out
