"""The sequencer of the partitioned core: the serial core's cross-customer prefix, on one key.

It is the serial ConsistencyCore (reorder, dedupe, source customers, identity, stewardship) on exactly the
serial core's input, with the per-customer suffix replaced by a message to the golden customer the step
is about: so it releases the same changes in the same order and takes the same identity decisions. It holds
no golden records; its outputs are the prefix's own (dead letters, late changes) and the messages.

Its state grows with the source customers and rows (identity index, dedupe marks, ...): those structures are
journaled (core/journal.py), so a checkpoint carries what changed since the last one, and a full one (a
base) only when asked. restore() puts a base and the checkpoints after it back together.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping

from dataflows.core.core import ConsistencyCore
from dataflows.core.handoff import Lend, Message, OpId, Work
from dataflows.core.identity import Cluster, Resolution
from dataflows.core.inputs import Cause
from dataflows.core.journal import Journal, Tracked, TrackedDict, TrackedSet, apply, dumps_around, loads_around
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput, Step, step_clusters


class Sequencer(ConsistencyCore):
    """Use as the serial core; after each call, take() the messages, each keyed by a golden id."""

    def __init__(self, policy: Policy, run: int) -> None:
        super().__init__(policy)
        self.run = run
        self.n = 0
        self.outbox: list[tuple[str, Message]] = []
        self.journal = self._track()

    def _track(self) -> Journal:
        """Swap the structures that grow with customers and rows for journaled ones (empty at this point)."""
        identity, tracked = self.identity, []
        places = [(identity, a, TrackedDict) for a in ("ref_cluster", "clusters", "index", "ref_keys", "targets",
                                                        "linked_by", "joined", "apart", "retired", "found", "_ref_sig")]
        places += [(identity, "seen", TrackedSet), (identity, "reported", TrackedSet), (self.marks, "_marks", TrackedDict),
                   (self, "via_index", TrackedDict), (self, "steward_applied", TrackedSet),
                   (self.snapshots, "live", TrackedDict), (self.snapshots, "_seen", TrackedSet)]  # fmt: skip
        for owner, attr, kind in places:
            container = kind(f"{type(owner).__name__}.{attr}", getattr(owner, attr))
            setattr(owner, attr, container)
            tracked.append(container)
        return Journal(tracked)

    def checkpoint(self, full: bool = False) -> bytes:
        """The state since the last checkpoint (full: all of it): the bounded parts whole, and the entries of
        the journaled structures changed since (full: every entry). Call at an epoch's end, after take()."""
        part = self.journal.base() if full else self.journal.delta()
        kinds = {name: isinstance(c, TrackedSet) for name, c in self.journal.containers.items()}
        return pickle.dumps((dumps_around(self, self.journal), full, kinds, part), protocol=pickle.HIGHEST_PROTOCOL)

    def restart(self, run: int) -> None:
        """Call when restored from a snapshot: this run's operations must not match the crashed run's."""
        self.run = run
        self.outbox = []

    def take(self) -> list[tuple[str, Message]]:
        sent, self.outbox = self.outbox, []
        return sent

    def _carried_clusters(self, resolution: Resolution) -> Mapping[str, Cluster]:
        """Only a regrouping reads identity's clusters, and only those it involves; the common step carries none."""
        return step_clusters(resolution, self.identity.clusters) if resolution.regrouped else {}

    def _apply(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        self.n += 1
        op: OpId = (self.run, self.n)
        coordinator = step.resolution.golden_id
        lenders = tuple(sorted(step.involved() - {coordinator}))
        self.outbox += [(lender, Lend(op, coordinator)) for lender in lenders]
        self.outbox.append((coordinator, Work(op, step, lenders)))


def _replay(chain: Iterable[bytes]) -> tuple[bytes, dict[str, bool], dict[str, Tracked]]:
    """The bounded part of the last checkpoint of `chain`, and the journaled structures as of it."""
    containers: dict[str, Tracked] | None = None
    light, kinds = b"", {}
    for blob in chain:
        light, full, kinds, part = pickle.loads(blob)  # noqa: S301 - our own snapshot
        if containers is None:
            if not full:
                msg = "a checkpoint chain starts with a full checkpoint"
                raise ValueError(msg)
            containers = {name: (TrackedSet if is_set else TrackedDict)(name) for name, is_set in kinds.items()}
        apply(containers, part)
    if containers is None:
        msg = "no checkpoint to restore"
        raise ValueError(msg)
    return light, kinds, containers


def restore(chain: Iterable[bytes]) -> Sequencer:
    """The sequencer as of the last checkpoint of `chain`: a full checkpoint, then each later one in order.
    Call restart() on it before use."""
    light, _, containers = _replay(chain)
    sequencer = loads_around(light, containers)
    assert isinstance(sequencer, Sequencer)
    sequencer.journal.track()  # the next checkpoint may be a delta on this chain
    return sequencer


def merge(chain: Iterable[bytes]) -> bytes:
    """A full checkpoint equal to `chain` (a full checkpoint and later ones): compaction without the
    sequencer, from its checkpoints alone, so it can run beside it (flows/checkpoints.py)."""
    light, kinds, containers = _replay(chain)
    part = Journal(containers.values()).base()
    return pickle.dumps((light, True, kinds, part), protocol=pickle.HIGHEST_PROTOCOL)
