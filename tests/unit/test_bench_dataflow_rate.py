"""The dataflow benchmark's rate from sampled counters of acknowledged writes."""

from __future__ import annotations

import math

import pytest

from dataflows.bench.dataflow_bench import Sample, acknowledged_rate


def samples(points: list[tuple[float, int]]) -> list[Sample]:
    return [Sample(at, acked, drained=False) for at, acked in points]


def test_writes_acknowledged_in_one_burst_count_from_the_first_read_to_the_burst() -> None:
    # The core releases a whole batch's outputs at once: a middle window of the writes has no width.
    run = samples([(0.0, 0), (4.0, 0), (8.0, 0), (10.0, 5000), (13.0, 5000)])
    assert math.isclose(acknowledged_rate(run, changes=2000), 2000 / 10.0)


def test_the_final_idle_flush_is_left_out() -> None:
    # Steady writes for 9 s, then the last 10% only after the input has been idle for a while.
    run = samples([(float(t), 1000 * t) for t in range(10)] + [(12.0, 9500), (15.0, 10_000)])
    assert math.isclose(acknowledged_rate(run, changes=4000), 0.9 * 4000 / 9.0)


def test_a_run_too_short_to_time_is_refused() -> None:
    with pytest.raises(RuntimeError, match="more changes"):
        acknowledged_rate(samples([(0.0, 100), (1.0, 100)]), changes=10)
