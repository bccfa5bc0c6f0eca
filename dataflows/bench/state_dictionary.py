"""How the preset dictionaries of packed customer states (dataflows/core/state_dictionary_v*.bin) were made,
from typical customer states of the benchmark workload.

    python -m dataflows.bench.state_dictionary v2 OUT

A dictionary is frozen once released (snapshots were packed against it): never write over one; a better
one is a new file under a new marker in core/state_bytes.py.
- v1 (deflate): two states of median size, raw. Deflate finds matches nearest the end of a dictionary
  cheapest, so the most typical state goes last.
- v2 (zstd): trained by zstd on the states of 2,000 customers (4 KB: larger ones packed no smaller). It
  holds what every state repeats (class paths, field, table and source names) and zstd's entropy tables:
  on states whose names and digits were replaced by others (out of sample), 428 bytes a state, against
  734 for v1, and a sixth of the CPU (README, "Figures of 2026-12-01, afternoon"). Rerunning v1 today
  gives other bytes (states pickle differently since); the file is frozen, not remade.
"""

from __future__ import annotations

import pickle
import statistics
import sys
from pathlib import Path

import zstandard

from dataflows.bench.core_bench import mappers_and_policy
from dataflows.bench.memory_bench import FlowCore
from dataflows.bench.workload import generate
from dataflows.ingest.decode import decode
from dataflows.settings import Settings

V2_CUSTOMERS = 2_000
V2_BYTES = 4096


def customer_states(customers: int) -> list[bytes]:
    """The pickles of the customer states after creations and updates of `customers` customers."""
    mappers, policy = mappers_and_policy()
    core = FlowCore(policy, None, Settings().topic_partitions)
    envelopes = list(generate(4 * customers, customers))
    core.feed([mappers[e.source].map(decode(e.key, e.value, source=e.source, dialect=e.dialect)) for e in envelopes])
    core.flush()
    return [pickle.dumps(logic.state, pickle.HIGHEST_PROTOCOL) for logic in core.logics.values() if logic.state]


def v1() -> bytes:
    states = customer_states(500)
    median = statistics.median(map(len, states))
    return b"".join(sorted(states, key=lambda s: abs(len(s) - median))[:2][::-1])


def v2() -> bytes:
    return zstandard.train_dictionary(V2_BYTES, customer_states(V2_CUSTOMERS)).as_bytes()


def main(argv: list[str]) -> None:
    version, out = argv
    Path(out).write_bytes({"v1": v1, "v2": v2}[version]())


if __name__ == "__main__":
    main(sys.argv[1:])
