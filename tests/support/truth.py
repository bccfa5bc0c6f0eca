"""The databases versus what the pipeline built (in dataflows.bench.truth: `tidemark chaos` checks with it too)."""

from dataflows.bench.truth import Workload, delete_some, differences, seed, trace_account

__all__ = ["Workload", "delete_some", "differences", "seed", "trace_account"]
