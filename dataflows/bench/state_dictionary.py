"""How dataflows/core/state_dictionary_v1.bin was made: typical customer states of the benchmark workload.

    python -m dataflows.bench.state_dictionary OUT

A dictionary is frozen once released (snapshots were packed against it): never write over v1; a better
one is a new file under a new marker in core/state_bytes.py. Deflate finds matches nearest the end of a
dictionary cheapest, so the most typical state goes last.
"""

from __future__ import annotations

import pickle
import statistics
import sys
from pathlib import Path

from dataflows.bench.core_bench import mappers_and_policy
from dataflows.bench.memory_bench import FlowCore
from dataflows.bench.workload import generate
from dataflows.ingest.decode import decode
from dataflows.settings import Settings

CUSTOMERS = 500
SAMPLES = 2


def typical_states(customers: int = CUSTOMERS, samples: int = SAMPLES) -> list[bytes]:
    """The pickles of `samples` customer states of median size, after creations and updates."""
    mappers, policy = mappers_and_policy()
    core = FlowCore(policy, None, Settings().topic_partitions)
    envelopes = list(generate(4 * customers, customers))
    core.feed([mappers[e.source].map(decode(e.key, e.value, source=e.source, dialect=e.dialect)) for e in envelopes])
    core.flush()
    states = [pickle.dumps(logic.state, pickle.HIGHEST_PROTOCOL) for logic in core.logics.values() if logic.state]
    median = statistics.median(map(len, states))
    return sorted(states, key=lambda s: abs(len(s) - median))[:samples][::-1]


def main(argv: list[str]) -> None:
    Path(argv[0]).write_bytes(b"".join(typical_states()))


if __name__ == "__main__":
    main(sys.argv[1:])
