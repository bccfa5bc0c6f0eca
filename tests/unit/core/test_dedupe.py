from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.dedupe import HighWaterMarks, Verdict


def test_replay_duplicate_and_stale_snapshot() -> None:
    marks = HighWaterMarks()
    assert marks.check("erp", "t", "1", (10, 1), False) is Verdict.NEW
    assert marks.check("erp", "t", "1", (10, 1), False) is Verdict.DUPLICATE
    assert marks.check("erp", "t", "1", (5, 1), True) is Verdict.STALE  # snapshot read behind the stream
    assert marks.check("erp", "t", "2", (5, 1), True) is Verdict.NEW  # other row
    assert marks.stats.duplicates == 1 and marks.stats.stale_snapshots == 1


def test_pk_update_delete_and_create_share_a_position_but_not_a_row() -> None:
    marks = HighWaterMarks()
    assert marks.check("erp", "inv", "30", (99, 0), False) is Verdict.NEW
    assert marks.check("erp", "inv", "31", (99, 1), False) is Verdict.NEW


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50)), max_size=300))
def test_memory_is_one_mark_per_row_and_only_the_max_is_new(events: list[tuple[str, int]]) -> None:
    marks = HighWaterMarks()
    best: dict[str, int] = {}
    for row, pos in events:
        verdict = marks.check("s", "t", row, (pos,), False)
        assert (verdict is Verdict.NEW) == (pos > best.get(row, -1))
        best[row] = max(best.get(row, -1), pos)
    assert len(marks) == len(best)
