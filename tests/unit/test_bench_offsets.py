"""The chaos run's audit of the broker's offsets: end offset against what a fresh reader got."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflows.bench.chaos import ChaosSummary
from dataflows.bench.topics import audit


@given(st.sets(st.integers(0, 500)), st.integers(0, 600), st.none() | st.integers(0, 600))
def test_audit_counts_holes_and_places_the_end(offsets: set[int], end: int, fetch_end: int | None) -> None:
    p = audit("t", 0, (end, fetch_end), offsets)
    assert p.read + p.missing == p.next_readable  # every offset below it was read or is missing
    assert p.missing == len(set(range(p.next_readable)) - offsets)
    assert p.end_past_readable == (end > p.next_readable)
    assert p.end_below_readable == (end < p.next_readable)
    assert not (p.end_past_readable and p.end_below_readable)
    assert p.fetch_end_past_readable == (fetch_end is not None and fetch_end > p.next_readable)


def test_the_summary_names_a_partition_a_consumer_cannot_drain() -> None:
    offsets = [audit("hb", 0, (343, 343), set(range(133))), audit("c", 1, (2, 5), {0, 1, 2, 4}),
               audit("q", 0, (7, 7), set(range(7)))]  # fmt: skip
    lines = ChaosSummary(seed=4, offsets=offsets).offset_lines()
    assert lines[0].endswith("past the last readable record in 1; ListOffsets end past it in 1, below it in 1; "
                             "1 offsets missing in 1")  # fmt: skip
    assert "    hb[0]: fetch high watermark 343, ListOffsets end 343, read 133 up to 133, missing 0" in lines
    assert "    c[1]: fetch high watermark 5, ListOffsets end 2, read 4 up to 5, missing 1" in lines
    assert len(lines) == 3  # a partition in order is not listed
