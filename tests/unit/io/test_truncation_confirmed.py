"""A partition is judged truncated only when, for the whole window, no record at the held position came
and the end offset stayed below it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflows.io.kafka_source import truncation_confirmed

HELD = 412
# One probe per second: (a record at or past the held position came, the end offset the broker answered).
probes = st.lists(st.tuples(st.booleans(), st.one_of(st.none(), st.integers(0, 2 * HELD))), min_size=1, max_size=30)


def judge(answers: list[tuple[bool, int | None]], window_s: float) -> tuple[bool, int]:
    calls = []
    now = [0.0]

    def probe() -> tuple[bool, int | None]:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(answer)
        now[0] += 1.0
        return answer

    return truncation_confirmed(probe, HELD, window_s, clock=lambda: now[0]), len(calls)


@given(probes, st.integers(1, 20))
def test_truncated_exactly_when_nothing_refuted_it_within_the_window(answers: list[tuple[bool, int | None]], window: int) -> None:
    truncated, calls = judge(answers, float(window))
    seen = [answers[min(i, len(answers) - 1)] for i in range(calls)]
    refuted = any(found or (end is not None and end >= HELD) for found, end in seen)
    assert truncated == (not refuted)
    if truncated:
        assert calls >= window  # the end below the position stood for the whole window


def test_the_local_brokers_end_of_zero_after_a_store_restart_is_not_a_truncation() -> None:
    # Chaos, seed 2026: end 0 and nothing served for a few seconds, then the records are there again.
    truncated, _ = judge([(False, 0)] * 4 + [(False, None)] * 2 + [(True, 420)], window_s=10.0)
    assert not truncated


def test_a_broker_that_lost_the_partition_is_a_truncation() -> None:
    truncated, calls = judge([(False, 0)], window_s=10.0)
    assert truncated and calls >= 10
