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


class _FakeStack:
    """start_dataflow counts starts; `exits` says, per start, what `exited` reports (None: it runs)."""

    def __init__(self, exits: list[str | None]) -> None:
        self.exits, self.starts = exits, 0

    def dataflow_names(self) -> list[str]:
        return ["dataflow-0", "dataflow-1"]

    def dataflow_metrics_url(self, i: int) -> str:
        return f"http://127.0.0.1:1/{i}"

    def start_dataflow(self, echo: object) -> None:
        self.starts += 1


def _fake(monkeypatch: pytest.MonkeyPatch, exits: list[str | None]) -> _FakeStack:
    from dataflows.bench import dataflow_bench

    stack = _FakeStack(exits)
    monkeypatch.setattr(dataflow_bench, "exited", lambda s: s.exits[s.starts - 1])
    monkeypatch.setattr(dataflow_bench, "sample", lambda urls: Sample(0.0, 0, drained=False))
    return stack


def test_a_cluster_that_panics_at_its_start_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataflows.bench.dataflow_bench import start_cluster

    stack = _fake(monkeypatch, ["dataflow-0 exited: PanicException: Send thread panic: Any { .. }", None])
    start_cluster(stack)  # type: ignore[arg-type]
    assert stack.starts == 2


def test_any_other_exit_or_a_panic_every_time_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataflows.bench.dataflow_bench import start_cluster

    with pytest.raises(RuntimeError, match="KeyError"):
        start_cluster(_fake(monkeypatch, ["dataflow-1 exited: KeyError: 'x'"]))  # type: ignore[arg-type]
    panic = "dataflow-0 exited: Send thread panic"
    with pytest.raises(RuntimeError, match="Send thread panic"):
        start_cluster(_fake(monkeypatch, [panic, panic, panic]))  # type: ignore[arg-type]
