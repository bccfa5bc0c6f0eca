"""Batching of the SQL targets: one row per key, the newest version; statements for many rows."""

from __future__ import annotations

from dataflows.targets import crm_writeback, customer_360
from dataflows.targets.sql import multi_row, newest_per_key


def test_newest_per_key_keeps_the_highest_version_and_the_later_of_equals() -> None:
    rows = [("a", 5, "x"), ("b", 1, "y"), ("a", 3, "z"), ("a", 5, "w"), ("b", 2, "v")]
    assert newest_per_key(rows, 0, 1) == [("a", 5, "w"), ("b", 2, "v")]


def test_statements_for_many_rows_repeat_the_row_group() -> None:
    assert multi_row("INSERT INTO t VALUES (%s, %s) ON CONFLICT", "(%s, %s)", 3, ", ") == (
        "INSERT INTO t VALUES (%s, %s), (%s, %s), (%s, %s) ON CONFLICT")
    assert customer_360.BATCH_UPSERT.count("%s") == 1  # the whole batch is one jsonb parameter
    assert crm_writeback.update_rows(3).count(" UNION ALL SELECT ") == 2
