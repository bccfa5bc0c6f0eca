"""The chaos run's pure parts: a seed gives one reproducible fault schedule over every component, and the
summary counts what users read (faults, lost, wrong, duplicates) correctly."""

from __future__ import annotations

from collections import Counter
from itertools import islice

from hypothesis import given
from hypothesis import strategies as st

from dataflows.bench.chaos import DOWN_S, PAUSE_S, ChaosSummary, fault_schedule, supervised
from dataflows.bench.reference import Comparison

COMPONENTS = ["capture-crm", "capture-erp", "dataflow-0", "kafka", "kafka-store", "erp", "crm"]


@given(st.integers(min_value=0, max_value=2**32))
def test_a_seed_gives_one_schedule_within_bounds(seed: int) -> None:
    first = list(islice(fault_schedule(seed, COMPONENTS), 50))
    assert first == list(islice(fault_schedule(seed, COMPONENTS), 50))
    assert [f.number for f in first] == list(range(1, 51))
    assert all(f.component in COMPONENTS for f in first)
    assert all(PAUSE_S[0] <= f.pause_s <= PAUSE_S[1] and DOWN_S[0] <= f.down_s <= DOWN_S[1] for f in first)


def test_every_component_is_hit_and_seeds_differ() -> None:
    faults = list(islice(fault_schedule(7, COMPONENTS), 200))
    counts = Counter(f.component for f in faults)
    assert set(counts) == set(COMPONENTS)
    assert min(counts.values()) >= 10  # uniform: 200 faults over 7 components, about 29 each
    assert [f.component for f in faults] != [f.component for f in islice(fault_schedule(8, COMPONENTS), 200)]


def test_only_captures_and_dataflow_processes_are_left_to_the_supervisor() -> None:
    assert [c for c in COMPONENTS if supervised(c)] == ["capture-crm", "capture-erp", "dataflow-0"]


def test_summary_counts_faults_and_judges_lost_and_wrong() -> None:
    summary = ChaosSummary(seed=5, faults=Counter({"kafka": 3, "erp": 2}), cycle_s=[4.0, 1.0, 9.0])
    assert summary.fault_count == 5 and summary.ok
    text = "\n".join(summary.lines())
    assert "5 faults injected: erp 2, kafka 3" in text and "median 4.0 s, max 9.0 s" in text
    assert "lost 0, wrong 0, duplicates 0" in text
    summary.lost = ["ERP customer 800001 missing from customer_360"]
    assert not summary.ok and "lost: ERP customer 800001" in "\n".join(summary.lines())
    summary.lost, summary.wrong, summary.wrong_detail = [], 2, "2 customer_360 rows differ"
    assert not summary.ok and "wrong: 2 customer_360 rows differ" in "\n".join(summary.lines())


def test_comparison_counts_duplicates_and_wrong_results() -> None:
    result = Comparison(events=10, copies=14, distinct=11, rows_differ=[("c1", ("a",), ("b",))], writebacks_differ=1,
                        missing_events=[], extra_events=[{"event_id": "x"}])  # fmt: skip
    assert result.duplicates == 3  # 14 copies of 11 distinct ids on the topic
    assert result.wrong == 3  # one row, one write-back, one event the fault-free run does not emit
    assert Comparison(events=4, copies=4, distinct=4).wrong == 0
